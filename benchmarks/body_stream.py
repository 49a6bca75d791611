"""Body stream benchmark: FloodDiffusion (shipped) against chunk diffusion and autoregressive baselines.

    python benchmarks/body_stream.py [--threads 1] [--quick]

Measures on this CPU, for each method with the same VAE and data:
- per-step latency (median, p95) of one denoising step (CFG: conditional + null in one batch);
- generation speed in frames per second over a long stream, and the real-time factor (/ 20 fps);
- cold-start latency (stream start to the first frame) and first-frame latency after a prompt
  (wall time from pushing a prompt, right after a commit, to the first new frame whose denoising
  saw it), plus the media delay until the first frame denoised *entirely* under the new prompt;
- quality on the test split (``anima.body.training.evaluate``): FID and R-precision with our evaluator,
  Peak Jerk / Area Under Jerk over prompt transitions, foot skating; VAE reconstruction MPJPE.

FloodDiffusion comes from the shipped weights (``anima/assets/weights/body``); the baselines and
the evaluator from ``out/body/{chunk,ar,evaluator}`` (train them with ``anima body train``).
Prints one markdown table and writes ``benchmarks/results/body_stream.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anima.body.cli import add_sampler_arguments  # noqa: E402
from anima.body.data.dataset import load_dataset  # noqa: E402
from anima.body.model.streaming import FRAMES_PER_TOKEN, MotionStream  # noqa: E402
from anima.body.paths import OUT, WEIGHTS  # noqa: E402
from anima.body.text import GESTURE_PROMPTS, TextEncoder  # noqa: E402
from anima.body.training.evaluate import evaluate_methods  # noqa: E402
from anima.body.training.evaluator import load_evaluator  # noqa: E402
from anima.body.training.train import load_vae  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "body_stream.json"
FPS = 20


def step_latency(stream: MotionStream, steps: int) -> dict[str, float]:
    stream.reset()
    stream.push_prompt(GESTURE_PROMPTS["bow"])
    for _ in range(30):  # past the cold start
        stream.step()
    times, frames = [], 0
    start = time.perf_counter()
    for i in range(steps):
        if i % 40 == 0:  # keep prompts changing, as a session does
            stream.push_prompt(GESTURE_PROMPTS[("bow", "bye", "guide", "walk")[(i // 40) % 4]])
        t = time.perf_counter()
        frames += len(stream.step())
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    ms = np.array(times) * 1000
    return {"step_ms_median": float(np.median(ms)), "step_ms_p95": float(np.percentile(ms, 95)),
            "frames_per_s": frames / wall, "realtime_factor": frames / wall / FPS, "steps": steps}


def prompt_latency(stream: MotionStream, trials: int) -> dict[str, float]:
    cold, first, full_delay = [], [], []
    for n in range(trials):
        stream.seed = n
        stream.reset()
        t = time.perf_counter()
        stream.push_prompt(GESTURE_PROMPTS["bow"])
        while not len(stream.step()):
            pass
        cold.append(time.perf_counter() - t)
        for _ in range(12):  # into the stream
            stream.step()
        while not len(stream.step()):  # align on a commit, the fair moment for every method
            pass
        tokens_out = stream.committed_tokens
        # The first token that never saw the old prompt is the first one not yet in flight.
        fresh = max(stream.latents) + 1 if stream.latents else tokens_out
        full_delay.append((fresh - tokens_out) * FRAMES_PER_TOKEN / FPS)
        t = time.perf_counter()
        stream.push_prompt(GESTURE_PROMPTS["bye" if n % 2 else "guide"])
        while not len(stream.step()):
            pass
        first.append(time.perf_counter() - t)
    return {"cold_start_ms": float(np.median(cold) * 1000), "first_frame_after_prompt_ms": float(np.median(first) * 1000),
            "full_response_media_s": float(np.median(full_delay))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--weights", type=Path, default=WEIGHTS, help="shipped weights (vae/, flood/)")
    p.add_argument("--baselines", type=Path, default=OUT, help="folder with chunk/, ar/, evaluator/")
    p.add_argument("--quick", action="store_true", help="fewer steps and samples (a smoke run)")
    p.add_argument("--json", type=Path, default=RESULTS)
    add_sampler_arguments(p)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = load_dataset(progress=False)
    encoder = TextEncoder(data.embeddings)
    vae_dir = args.weights / "vae"
    paths = {"flood": args.weights / "flood", "chunk": args.baselines / "chunk", "ar": args.baselines / "ar"}
    streams = {}
    for name, directory in paths.items():
        if (directory / "config.json").is_file():
            streams[name] = MotionStream.load(directory, vae_dir, encoder=encoder, guidance_floor=args.guidance_floor,
                                              level_power=args.level_power)
        else:
            print(f"note: {directory} missing; {name} skipped (train it with `anima body train`)", file=sys.stderr)
    steps = 100 if args.quick else 400
    speed = {name: {**step_latency(s, steps), **prompt_latency(s, 3 if args.quick else 10)} for name, s in streams.items()}

    quality = {}
    evaluator_dir = args.baselines / "evaluator"
    if (evaluator_dir / "config.json").is_file():
        def maker(stream: MotionStream):
            def make(seed: int) -> MotionStream:
                stream.seed = seed
                stream.reset()
                return stream
            return make

        quality = evaluate_methods({n: maker(s) for n, s in streams.items()}, data, load_vae(vae_dir),
                                   load_evaluator(evaluator_dir), per_clip=1 if args.quick else 6,
                                   num_streams=2 if args.quick else 16, progress=False)
    else:
        print(f"note: {evaluator_dir} missing; quality metrics skipped", file=sys.stderr)

    names = {"flood": "FloodDiffusion (shipped)", "chunk": "chunk diffusion (PRIMAL-like)", "ar": "autoregressive (MotionStreamer-like)"}
    rows = ["| method | step ms (median / p95) | frames/s (x real time) | cold start ms | first frame after prompt ms | "
            "full response (media s) | FID (ours) | R@1 / R@2 / R@3 | Peak Jerk | AUJ | foot skating |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    if quality:
        r = quality["real"]
        rows.append(f"| real motion (test) | - | - | - | - | - | {r['fid']:.2f} (val vs test) | {r['r1']:.2f} / {r['r2']:.2f} / "
                    f"{r['r3']:.2f} | {r['peak_jerk']:.0f} | 0 | {r['foot_skating']:.3f} |")
    for name, s in speed.items():
        q = quality.get(name)
        qcols = (f"{q['fid']:.2f} | {q['r1']:.2f} / {q['r2']:.2f} / {q['r3']:.2f} | {q['peak_jerk']:.0f} | {q['auj']:.0f} | "
                 f"{q['foot_skating']:.3f}") if q else "- | - | - | - | -"
        rows.append(f"| {names[name]} | {s['step_ms_median']:.1f} / {s['step_ms_p95']:.1f} | {s['frames_per_s']:.0f} "
                    f"({s['realtime_factor']:.1f}x) | {s['cold_start_ms']:.0f} | {s['first_frame_after_prompt_ms']:.1f} | "
                    f"{s['full_response_media_s']:.1f} | {qcols} |")
    table = "\n".join(rows)
    footer = ""
    if quality:
        v = quality["vae"]
        footer = (f"\nVAE reconstruction MPJPE (test, {v['clips']} clips): {v['mpjpe_root_relative_mm']:.0f} mm root-relative, "
                  f"{v['mpjpe_mm']:.0f} mm global (root trajectory integrated over whole clips).")
    print(table + footer)
    floor = next(iter(streams.values())).guidance_floor if streams else None
    powers = {name: s.schedule.power for name, s in streams.items()}
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                          "torch": torch.__version__}, "guidance_floor": floor, "level_power": powers, "speed": speed,
              "quality": {k: v for k, v in quality.items() if k != "real_transition_curve"}, "table": table + footer}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
