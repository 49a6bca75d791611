"""Benchmark the streaming UniLS face: latency per 40 ms tick of output and real-time factor.

    python benchmarks/face_stream.py [--seconds 60] [--threads 1] [--json benchmarks/results/face_stream.json]

The shipped weights run as the runtime runs them (``UniLSFace.step`` once per 25 fps tick, both
parties' audio in, one 112-D frame out), on a dialogue of two espeak-ng voices (a tone pair if
espeak-ng is missing). Per-tick latency includes the log-mel features of both tracks, the model
(1-5 tokens per tick; at each 4 s window boundary the cache is rebuilt from the last window's 181
tokens) and the parameter conversion. RTF = compute seconds / media seconds. The procedural face
runs on the same audio for reference.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TICK = 960
FPS = 25


def dialogue_audio(seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Two tracks taking turns (about 3 s each, with pauses and a little overlap)."""
    n = int(seconds * FPS) * TICK
    tracks = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    try:
        from anima.talker.espeak import EspeakTTS

        if not EspeakTTS.is_available():
            raise RuntimeError("espeak-ng missing")
        lines = ["I have never seen anything like it in all my years at sea.", "Yes, I see. Go on.",
                 "The creature moved faster than any ship we had.", "Really? How fast?",
                 "Fast enough to leave the frigate far behind, Captain."]
        tts = [EspeakTTS("en-gb+m3"), EspeakTTS("en-us+f3")]
        t, k, i = 0.5, 0, 0
        while True:
            x = tts[k].synthesize(lines[i % len(lines)]).samples
            start = int(t * 24000)
            if start + x.size > n:
                break
            tracks[k][start:start + x.size] += x
            t += x.size / 24000 + 0.4
            k, i = 1 - k, i + 1
    except RuntimeError:
        t = np.arange(n) / 24000
        gate = (np.sin(2 * np.pi * t / 6.0) > 0).astype(np.float32)
        voice = 0.3 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
        tracks = [(voice * gate).astype(np.float32), (voice * (1 - gate)).astype(np.float32)]
    return tracks[0], tracks[1]


def run(face, own: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Step the face over both tracks; per-tick wall time in seconds."""
    n = own.size // TICK
    times = np.zeros(n)
    for f in range(n):
        a, b = own[f * TICK:(f + 1) * TICK], other[f * TICK:(f + 1) * TICK]
        start = time.perf_counter()
        face.step(f / FPS, a, b)
        times[f] = time.perf_counter() - start
    return times


def summary(times: np.ndarray) -> dict:
    ms = times * 1000.0
    boundary = ms[100::100] if ms.size > 100 else np.zeros(0)
    return {
        "ticks": int(ms.size),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "window_boundary_mean_ms": float(boundary.mean()) if boundary.size else float("nan"),
        "rtf": float(times.sum() / (ms.size / FPS)),
        "chunk_4s_compute_ms": float(ms[: (ms.size // 100) * 100].reshape(-1, 100).sum(1).mean()) if ms.size >= 100 else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Streaming UniLS face latency and real-time factor.")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "face_stream.json")
    args = parser.parse_args(argv)

    import torch

    from anima.face.procedural import ProceduralFace
    from anima.face.unils import UniLSFace

    torch.set_num_threads(args.threads)
    own, other = dialogue_audio(args.seconds)
    face = UniLSFace.load(args.weights, seed=0)
    run(face, own[: TICK * 50], other[: TICK * 50])  # warm-up
    face.reset()
    unils = summary(run(face, own, other))
    procedural = summary(run(ProceduralFace(seed=0), own, other))
    card = UniLSFace.card(args.weights)
    gen = card["config"]["generator"]
    n_params = sum(p.numel() for p in face.model.generator.parameters())
    result = {
        "machine": {"cpu_count": __import__("os").cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": args.threads, "platform": platform.platform()},
        "model": {"stage": card["config"].get("stage"), "layers": gen["n_layer"], "width": gen["n_embd"],
                  "generator_params": n_params, "lora_rank": gen["lora_rank"]},
        "media_s": own.size / 24000,
        "unils": unils,
        "procedural": procedural,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"face streaming, {result['media_s']:.0f} s of two-party audio, {args.threads} thread(s), "
          f"UniLS {n_params / 1e6:.2f} M params ({gen['n_layer']} layers x {gen['n_embd']})")
    print("| face | mean ms / 40 ms tick | p50 | p95 | p99 | max | window-boundary tick | RTF |")
    print("|---|---|---|---|---|---|---|---|")
    for name, s in (("UniLS (stage 2, streaming)", unils), ("procedural (reference)", procedural)):
        print(f"| {name} | {s['mean_ms']:.2f} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | {s['p99_ms']:.2f} | "
              f"{s['max_ms']:.2f} | {s['window_boundary_mean_ms']:.2f} | {s['rtf']:.3f} |")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
