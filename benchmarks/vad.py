"""Measure the energy-and-spectrum voice activity detector (anima/core/vad.py).

    python benchmarks/vad.py [--json benchmarks/results/vad.json]

Real speech from espeak-ng (several voices and sentences) embedded in noise at several SNRs
(white room noise, and low-frequency hum + high-frequency hiss), fed in 40 ms chunks as the live
server does. Reports onset error (detected start - true start), end error, missed utterances,
false starts on noise-only audio per minute, and the cost per second of audio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = ["Wait, what was that noise?", "Where are we going, Captain?", "Stop.", "Tell me about the library please.",
             "Can we go up to the surface now?", "No, no, that is not what I meant at all."]
VOICES = ["en-us+f3", "en-gb+m3", "en-us", "en-gb-x-rp+f2"]


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / 24000
    if kind == "white":
        return rng.standard_normal(n)
    hum = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 100 * t)
    from scipy.signal import butter, sosfilt

    hiss = sosfilt(butter(6, 5000, "highpass", fs=24000, output="sos"), rng.standard_normal(n))
    return hum + 2 * hiss


def main() -> None:
    from anima.core.frames import NS_PER_S
    from anima.core.vad import EnergyVAD
    from anima.talker.espeak import EspeakTTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "vad.json")
    args = ap.parse_args()
    tts, rng = EspeakTTS(), np.random.default_rng(0)
    clips = [tts.synthesize(s, voice=v).samples for s in SENTENCES for v in VOICES]
    rows = []
    for kind in ("white", "hum+hiss"):
        for snr_db in (30, 20, 10):
            onset, end, missed, cost, audio_s = [], [], 0, 0.0, 0.0
            for clip in clips:
                speech_rms = np.sqrt(np.mean(clip[np.abs(clip) > 0.01] ** 2))
                lead = int(rng.uniform(0.5, 1.5) * 24000)
                signal = np.zeros(lead + clip.size + 24000, np.float32)
                signal[lead : lead + clip.size] = clip
                nz = noise(kind, signal.size, rng)
                signal += (nz / np.sqrt(np.mean(nz**2)) * speech_rms * 10 ** (-snr_db / 20)).astype(np.float32)
                voiced = np.flatnonzero(np.abs(clip) > 0.01)
                true_on, true_off = (lead + voiced[0]) / 24000, (lead + voiced[-1]) / 24000
                vad, events = EnergyVAD(), []
                t0 = time.perf_counter()
                for i in range(0, signal.size, 960):
                    events += vad.process(signal[i : i + 960], i * NS_PER_S // 24000)
                cost += time.perf_counter() - t0
                audio_s += signal.size / 24000
                starts = [e.pts_ns / NS_PER_S for e in events if e.kind == "start"]
                ends = [e.pts_ns / NS_PER_S for e in events if e.kind == "end"]
                if not starts or not ends:
                    missed += 1
                    continue
                onset.append(starts[0] - true_on)
                end.append(ends[-1] - true_off)
            # False starts on noise alone (1 minute).
            nz = noise(kind, 60 * 24000, rng)
            level = np.sqrt(np.mean(np.concatenate(clips) ** 2)) * 10 ** (-snr_db / 20)
            nz = (nz / np.sqrt(np.mean(nz**2)) * level).astype(np.float32)
            vad, false_starts = EnergyVAD(), 0
            for i in range(0, nz.size, 960):
                false_starts += sum(e.kind == "start" for e in vad.process(nz[i : i + 960], i * NS_PER_S // 24000))
            rows.append({"noise": kind, "snr_db": snr_db, "utterances": len(clips), "missed": missed,
                         "onset_ms_median": 1000 * float(np.median(onset)) if onset else None,
                         "onset_ms_p95": 1000 * float(np.percentile(np.abs(onset), 95)) if onset else None,
                         "end_ms_median": 1000 * float(np.median(end)) if end else None,
                         "false_starts_per_min": false_starts, "cost_ms_per_s": 1000 * cost / audio_s})
    print(f"{'noise':9} {'SNR dB':>6} {'missed':>7} {'onset ms (med)':>15} {'|onset| p95':>12} {'end ms (med)':>13} {'false/min':>9} {'ms per s':>8}")
    for r in rows:
        fmt = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
        print(f"{r['noise']:9} {r['snr_db']:6d} {r['missed']:4d}/{r['utterances']:<2d} {fmt(r['onset_ms_median']):>15} {fmt(r['onset_ms_p95']):>12} "
              f"{fmt(r['end_ms_median']):>13} {r['false_starts_per_min']:9d} {r['cost_ms_per_s']:8.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
