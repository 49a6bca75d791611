"""Per-call costs of the embedded defaults: the numbers tests must not assert (machines are noisy).

    python benchmarks/stage_costs.py [--repeats 5] [--json benchmarks/results/stage_costs.json]

- ProceduralBody: milliseconds per 20 fps frame, with a gesture and speech beats playing.
- ProceduralFace: milliseconds per 25 fps step, speaking (espeak phoneme events) while hearing the
  other party.
- EspeakTTS: time to the first streamed chunk of a ~40 s paragraph, against the whole synthesis
  (streaming must start playing long before the paragraph is ready).

Each is measured ``--repeats`` times on one thread; the table shows the median and the best.
Prints a markdown table and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anima.body.procedural import ProceduralBody  # noqa: E402
from anima.core.frames import SAMPLE_RATE  # noqa: E402
from anima.face.procedural import ProceduralFace  # noqa: E402
from anima.talker.espeak import EspeakTTS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "stage_costs.json"
BODY_FPS, VIDEO_FPS = 20, 25
SENTENCE = "Welcome aboard the Nautilus, professor. Mobilis in mobili: moving within the moving element."
PARAGRAPH = " ".join(["Streaming speech should start playing long before the whole paragraph is ready."] * 8)


def body_frame_ms(seconds: float = 10.0) -> float:
    body = ProceduralBody()
    body.push_prompt("bye", 0.0)
    body.push_beats([0.5, 1.0, 1.5, 2.0], [1.0] * 4)
    n = int(seconds * BODY_FPS)
    start = time.perf_counter()
    for _ in range(n):
        body.next_frame()
    return (time.perf_counter() - start) / n * 1e3


def face_step_ms(tts: EspeakTTS, seconds: float = 10.0) -> float:
    speech = tts.synthesize(SENTENCE)
    other = tts.synthesize(SENTENCE, voice="en-us+f3").samples
    tick = SAMPLE_RATE // VIDEO_FPS
    face = ProceduralFace()
    face.schedule_speech([(0.5 + ev.time_s, ev) for ev in speech.events])
    n = int(seconds * VIDEO_FPS)
    start = time.perf_counter()
    for k in range(n):
        own = speech.samples[k * tick : (k + 1) * tick]
        heard = other[k * tick : (k + 1) * tick]
        face.step(k / VIDEO_FPS, own, heard)
    return (time.perf_counter() - start) / n * 1e3


def espeak_first_chunk(tts: EspeakTTS) -> dict[str, float]:
    start = time.perf_counter()
    first_s, samples = None, 0
    for chunk in tts.stream(PARAGRAPH):
        if first_s is None:
            first_s = time.perf_counter() - start
        samples += chunk.samples.size
    total_s = time.perf_counter() - start
    return {"first_chunk_ms": first_s * 1e3, "total_ms": total_s * 1e3, "first_fraction": first_s / total_s,
            "audio_s": samples / SAMPLE_RATE}


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "best": min(values), "runs": values}


def repeat(fn: Callable[[], float], repeats: int) -> dict:
    return summary([fn() for _ in range(repeats)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    tts = EspeakTTS()
    list(tts.stream("Warm up."))
    espeak_runs = [espeak_first_chunk(tts) for _ in range(args.repeats)]
    results = {
        "body_frame_ms": repeat(body_frame_ms, args.repeats),
        "face_step_ms": repeat(lambda: face_step_ms(tts), args.repeats),
        "espeak_first_chunk_ms": summary([r["first_chunk_ms"] for r in espeak_runs]),
        "espeak_first_chunk_fraction": {**summary([r["first_fraction"] for r in espeak_runs]), "audio_s": espeak_runs[0]["audio_s"]},
    }

    cpu = platform.processor() or platform.machine()
    print(f"stage costs: {cpu}, {len(os.sched_getaffinity(0))} cores visible, 1 thread, {args.repeats} repeats\n")
    print("| quantity | median | best |")
    print("|---|---:|---:|")
    print(f"| ProceduralBody, ms per 20 fps frame (gesture + beats) | {results['body_frame_ms']['median']:.3f} | {results['body_frame_ms']['best']:.3f} |")
    print(f"| ProceduralFace, ms per 25 fps step (speaking + hearing) | {results['face_step_ms']['median']:.3f} | {results['face_step_ms']['best']:.3f} |")
    print(f"| EspeakTTS, first chunk of a {results['espeak_first_chunk_fraction']['audio_s']:.0f} s paragraph, ms | "
          f"{results['espeak_first_chunk_ms']['median']:.1f} | {results['espeak_first_chunk_ms']['best']:.1f} |")
    print(f"| EspeakTTS, first chunk / whole synthesis | {results['espeak_first_chunk_fraction']['median']:.3f} | "
          f"{results['espeak_first_chunk_fraction']['best']:.3f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cpu": cpu, "repeats": args.repeats, **results}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
