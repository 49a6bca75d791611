"""``anima body ...``: build the mocap dataset, import a BVH, train the body models, evaluate them.

    anima body build-dataset [--mocap DIR] [--out DIR]
    anima body import FILE.bvh [-o FILE.npz]          # -> 20 fps HumanML3D-263 features + joints
    anima body train {vae,dit,chunk,ar,evaluator} [--steps N] [--out DIR] [--set key=value]
    anima body eval [--methods flood chunk ar] [--json out/body/eval.json]
    anima body export [--vae out/body/vae] [--flood out/body/flood] [--to anima/assets/weights/body]
    anima body render-stream [-o out/body/stream.mp4] [--prompts bow bye ...] [--every 3 4]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from anima.body.paths import DEFAULT_MOCAP, DEFAULT_OUT, OUT, WEIGHTS


def add_sampler_arguments(p: argparse.ArgumentParser) -> None:
    """Sampler overrides for every method of an evaluation (``anima body eval``, the benchmark)."""
    p.add_argument("--guidance-floor", type=float, default=None,
                   help="no guidance at noise levels <= this, for every method (default: each checkpoint's, 0.5; "
                        "0 = guidance at every level)")
    p.add_argument("--level-power", type=float, default=None,
                   help="inference level spacing for every method (default: each checkpoint's own; 1 = uniform)")


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _build(args: argparse.Namespace) -> int:
    from anima.body.data.dataset import build_dataset

    if not Path(args.mocap).is_dir():
        return _error(f"{args.mocap}: no such mocap folder")
    data = build_dataset(args.mocap, args.out, progress=not args.quiet)
    counts = {s: len(data.split(s)) for s in ("train", "val", "test")}
    print(f"wrote {args.out}: {len(data.clips)} clips, {data.num_frames} frames at 20 fps "
          f"({data.num_frames / 20 / 60:.1f} min); split {counts}")
    return 0


def _import(args: argparse.Namespace) -> int:
    import numpy as np

    from anima.body.data.bvh import BVHError, read_bvh
    from anima.body.data.humanml3d import canonicalize, extract_features, uniform_skeleton
    from anima.body.data.rigs import RigError, detect_rig, to_humanml_joints
    from anima.body.skeleton import BODY_FPS, resample_joints

    try:
        bvh = read_bvh(args.bvh)
        rig = detect_rig(bvh)
        joints = uniform_skeleton(resample_joints(to_humanml_joints(bvh, rig), bvh.fps, BODY_FPS))
        if len(joints) < 2:
            raise ValueError(f"{args.bvh}: too short: {bvh.num_frames} frame(s) at {bvh.fps:.1f} fps is under 2 frames at 20 fps")
        features = extract_features(joints)
    except (BVHError, RigError, ValueError) as exc:
        return _error(str(exc))
    out = args.output or Path(args.bvh).with_suffix(".npz")
    np.savez(out, features=features.astype(np.float32), joints=canonicalize(joints)[:-1].astype(np.float32))
    print(f"{args.bvh}: rig {rig.name}, {bvh.num_frames} frames at {bvh.fps:.1f} fps -> {len(features)} frames "
          f"at 20 fps; wrote {out} (features (T, 263), joints (T, 22, 3) metres, Y up)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from anima.body.training.train import run

    try:
        return run(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return _error(str(exc))


def _eval(args: argparse.Namespace) -> int:
    import torch

    from anima.body.data.dataset import load_dataset
    from anima.body.model.streaming import MotionStream
    from anima.body.text import TextEncoder
    from anima.body.training.evaluate import evaluate_methods, write_report
    from anima.body.training.evaluator import load_evaluator
    from anima.body.training.train import load_vae

    torch.set_num_threads(max(1, args.threads))
    try:
        data = load_dataset(args.data, args.mocap, progress=not args.quiet)
        vae = load_vae(args.vae)
        evaluator = load_evaluator(args.evaluator)
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc))
    encoder = TextEncoder(data.embeddings)
    streams = {}
    for name in args.methods:
        directory = Path(args.checkpoints) / name
        if not (directory / "config.json").is_file():
            return _error(f"{directory}: no checkpoint (train it with `anima body train {'dit' if name == 'flood' else name}`)")
        base = MotionStream.load(directory, args.vae, encoder=encoder, guidance_floor=args.guidance_floor,
                                 level_power=args.level_power)

        def make(seed: int, base: MotionStream = base) -> MotionStream:
            base.seed = seed
            base.reset()
            return base

        streams[name] = make
    report = evaluate_methods(streams, data, vae, evaluator, per_clip=args.per_clip, num_streams=args.streams,
                              progress=not args.quiet)
    write_report(report, args.json)
    print(format_table(report))
    print(f"wrote {args.json}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import shutil

    for name, src in (("vae", args.vae), ("flood", args.flood)):
        needed = ["config.json", "model.safetensors"] + (["feature_stats.npz"] if name == "vae" else [])
        missing = [f for f in needed if not (Path(src) / f).is_file()]
        if missing:
            return _error(f"{src}: missing {', '.join(missing)}")
        dst = Path(args.to) / name
        dst.mkdir(parents=True, exist_ok=True)
        for f in needed:  # the optimizer state stays behind: the shipped files are for inference
            shutil.copyfile(Path(src) / f, dst / f)
        print(f"exported {src} -> {dst} ({sum((dst / f).stat().st_size for f in needed) / 1e6:.1f} MB)")
    return 0


def _render(args: argparse.Namespace) -> int:
    from anima.render.body_preview import run

    return run(args)


def format_table(report: dict) -> str:
    rows = ["| method | FID (ours) | R@1 | R@2 | R@3 | Peak Jerk | AUJ | foot skating |", "|---|---|---|---|---|---|---|---|"]
    for name in ["real"] + [k for k in report if k not in ("vae", "real", "real_transition_curve")]:
        r = report[name]
        rows.append(f"| {name} | {r['fid']:.3f} | {r['r1']:.3f} | {r['r2']:.3f} | {r['r3']:.3f} | "
                    f"{r['peak_jerk']:.1f} | {r['auj']:.1f} | {r['foot_skating']:.3f} |")
    v = report["vae"]
    rows.append(f"\nVAE reconstruction (test, {v['clips']} clips): MPJPE {v['mpjpe_mm']:.1f} mm global, "
                f"{v['mpjpe_root_relative_mm']:.1f} mm root-relative")
    return "\n".join(rows)


def register(subparsers) -> None:
    body = subparsers.add_parser("body", help="body motion: dataset, BVH import, training, evaluation",
                                 description="Body Animator tools: mocap dataset, BVH import, training and evaluation.")
    sub = body.add_subparsers(dest="body_command", required=True)

    p = sub.add_parser("build-dataset", help="convert the mocap BVHs to the cached HumanML3D-263 dataset")
    p.add_argument("--mocap", type=Path, default=DEFAULT_MOCAP, help=f"mocap folder (default {DEFAULT_MOCAP})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"cache folder (default {DEFAULT_OUT})")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_build)

    p = sub.add_parser("import", help="convert your own BVH to 20 fps HumanML3D-263 features")
    p.add_argument("bvh", type=Path, help="BVH file")
    p.add_argument("-o", "--output", type=Path, default=None, help="output .npz (default: next to the BVH)")
    p.set_defaults(func=_import)

    from anima.body.training.options import add_train_arguments

    p = sub.add_parser("train", help="train vae, dit (FloodDiffusion), chunk, ar or evaluator")
    add_train_arguments(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate the VAE, FloodDiffusion and the baselines on the test split")
    p.add_argument("--methods", nargs="+", default=["flood", "chunk", "ar"])
    p.add_argument("--checkpoints", type=Path, default=OUT, help="folder holding flood/, chunk/, ar/ (default out/body)")
    p.add_argument("--vae", type=Path, default=OUT / "vae")
    p.add_argument("--evaluator", type=Path, default=OUT / "evaluator")
    p.add_argument("--data", type=Path, default=DEFAULT_OUT)
    p.add_argument("--mocap", type=Path, default=DEFAULT_MOCAP)
    p.add_argument("--json", type=Path, default=OUT / "eval.json")
    p.add_argument("--per-clip", type=int, default=6, help="text-to-motion windows per test clip")
    p.add_argument("--streams", type=int, default=16, help="transition streams per method")
    add_sampler_arguments(p)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_eval)

    p = sub.add_parser("export", help="copy trained VAE + FloodDiffusion weights (no optimizer state) to the shipped folder")
    p.add_argument("--vae", type=Path, default=OUT / "vae")
    p.add_argument("--flood", type=Path, default=OUT / "flood")
    p.add_argument("--to", type=Path, default=WEIGHTS)
    p.set_defaults(func=_export)

    from anima.render.body_preview import add_arguments as render_arguments

    p = sub.add_parser("render-stream", help="render a FloodDiffusion stream with prompts changing every few seconds")
    render_arguments(p)
    p.set_defaults(func=_render)


def main(argv: list[str] | None = None) -> int:  # python -m anima.body.cli ...
    parser = argparse.ArgumentParser(prog="anima")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
