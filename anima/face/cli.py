"""``anima face ...``: the UniLS corpus, training, experiment, importer, export and dialogue video.

    anima face build-corpus [--out out/face_corpus] [--minutes 50]
    anima face train {quantizer,stage1,stage2,onestage} --out DIR [...]
    anima face experiment --model two-stage=DIR --model one-stage=DIR [--out out/face/experiment.json]
    anima face import SRC --out out/real_corpus [--expression-map map.npy]
    anima face export CHECKPOINT [--out anima/assets/weights/face/unils]
    anima face animate --wav a.wav b.wav -o pair.mp4 | --corpus out/face_corpus --index 0 -o dialogue.mp4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _build(args: argparse.Namespace) -> int:
    from anima.face.data.corpus import build_corpus

    if not Path(args.novel).is_dir():
        return _error(f"{args.novel}: no such novel folder (chapter .txt files)")
    if args.minutes <= 0:
        return _error(f"--minutes must be positive, got {args.minutes}")
    out = build_corpus(args.out, args.minutes, args.seed, args.novel, progress=not args.quiet)
    print(f"wrote {out}")
    return 0


def _train(kind: str):
    def run(args: argparse.Namespace) -> int:
        from anima.checkpoint import CheckpointError
        from anima.face.training.train import run_command

        try:
            return run_command(kind, args)
        except (FileNotFoundError, KeyError, ValueError, CheckpointError) as exc:
            return _error(str(exc))

    return run


def _experiment(args: argparse.Namespace) -> int:
    from anima.face.training.experiment import run_cli

    if not args.model:
        return _error("give at least one --model NAME=DIR")
    try:
        return run_cli(args)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        return _error(str(exc))


def _import(args: argparse.Namespace) -> int:
    from anima.face.data.importer import FaceImportError, import_corpus

    try:
        manifest = import_corpus(args.src, args.out, args.expression_map, args.seed)
    except (FaceImportError, FileNotFoundError, ValueError) as exc:
        return _error(str(exc))
    print(f"wrote {args.out}: " + ", ".join(f"{k} {len(v)}" for k, v in manifest["splits"].items()) + " sessions")
    return 0


def _export(args: argparse.Namespace) -> int:
    from anima.face.training.export import export_weights

    try:
        out = export_weights(args.checkpoint, args.out, args.corpus, args.styles, args.temperature, args.top_k)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        return _error(str(exc))
    print(f"wrote {out}")
    return 0


def _animate(args: argparse.Namespace) -> int:
    from anima.render.face_dialogue import run_cli

    try:
        return run_cli(args)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        return _error(str(exc))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``anima face ...`` to the top-level parser."""
    from anima.face.data.corpus import DEFAULT_NOVEL
    from anima.face.training.options import add_arguments

    face = subparsers.add_parser("face", help="UniLS face model: corpus, training, experiment, import, export",
                                 description="The learned speaking-and-listening face (UniLS). See docs/unils.md.")
    sub = face.add_subparsers(dest="face_command", required=True)

    p = sub.add_parser("build-corpus", help="synthesise the two-voice dialogue corpus with procedural faces")
    p.add_argument("--out", type=Path, default=Path("out/face_corpus"))
    p.add_argument("--minutes", type=float, default=50.0, help="minutes of dialogue (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--novel", type=Path, default=DEFAULT_NOVEL, help="folder of chapter .txt files for the scripts")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_build)

    train = sub.add_parser("train", help="train the quantiser, stage 1, stage 2 or the one-stage baseline")
    add_arguments(train.add_subparsers(dest="train_command", required=True), _train)

    p = sub.add_parser("experiment", help="one-stage vs two-stage on held-out dialogues (metric tables)")
    p.add_argument("--corpus", type=Path, default=Path("out/face_corpus"))
    p.add_argument("--split", default="test")
    p.add_argument("--model", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--temperature", default="1.0", help="sampling temperature(s), comma-separated")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("out/face/experiment.json"))
    p.set_defaults(func=_experiment)

    p = sub.add_parser("import", help="import tracked FLAME/ARKit parameters + audio as a corpus",
                       description="Import real data. Layout: SRC/<session>/{a.npz, a.wav, b.npz, b.wav}; "
                                   "see anima/face/data/importer.py or docs/unils.md for the arrays.")
    p.add_argument("src", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--expression-map", type=Path, default=None, help="(N, 52) .npy map from FLAME expression to ARKit")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_import)

    p = sub.add_parser("export", help="copy a trained stage-2 checkpoint (+ style clips) into the shipped weights")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=None, help="default: anima/assets/weights/face/unils")
    p.add_argument("--corpus", type=Path, default=Path("out/face_corpus"), help="style clips come from its val split")
    p.add_argument("--styles", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.set_defaults(func=_export)

    p = sub.add_parser("animate", help="animate both faces of a dialogue and render an MP4")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--corpus", type=Path, default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--wav", type=Path, nargs=2, default=None, metavar=("A_WAV", "B_WAV"))
    p.add_argument("--styles", nargs=2, default=None)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_animate)
