"""Compare the streaming resamplers: anima's StreamingResampler (anima/core/audio.py) vs python-soxr.

"anima" is the shipped filter (16 zero crossings, rolloff 0.94); "anima z32"/"z48" the same code
with a longer filter (zeros=32; zeros=48, rolloff 0.95); soxr at its four quality presets.

    python benchmarks/resample.py [--json benchmarks/results/resample.json]

For the rate pairs anima uses (espeak 22050 -> 24000, 16 kHz WAV/ASR <-> 24000, browser 48000 <-> 24000):

- SNR: 30 tones at random frequencies and phases below 0.9 (and 0.7) x the lower Nyquist frequency, resampled,
  against the exact band-limited reference (the same tones evaluated at the output times); 0.1 s
  trimmed at each end. Tests pass band flatness, phase (any delay shows up as error) and noise.
- spurious dB: worst level (-92.7 is this measurement's own floor: Blackman-window leakage) of anything but the tone itself (aliases, images), over tones swept
  from 50 Hz to the input Nyquist frequency; tones above the output Nyquist must vanish entirely
  (there the whole output counts). Relative to the tone's level, so -80 means 80 dB rejection.
- delay: where a click comes out, minus where it should (output samples). 0 = zero phase: event
  times stay valid across rates.
- latency: output held back while streaming in 20 ms chunks (ideal count so far minus produced,
  ms at the output rate; mean and max over a 2 s stream).
- chunk diff: max |difference| between one call on a 3 s signal and random 1-3000 sample chunks.
- x real time: 60 s of audio in 20 ms chunks, one thread.
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

PAIRS = [(22050, 24000), (16000, 24000), (24000, 16000), (48000, 24000), (24000, 48000)]


class Soxr:
    """python-soxr's ResampleStream behind the StreamingResampler interface (process / flush)."""

    def __init__(self, src: int, dst: int, quality: str) -> None:
        import soxr

        self.args = (src, dst, 1, "float32", quality)
        self.rs = soxr.ResampleStream(*self.args[:3], dtype="float32", quality=quality)

    def process(self, x: np.ndarray) -> np.ndarray:
        return self.rs.resample_chunk(np.asarray(x, np.float32))

    def flush(self) -> np.ndarray:
        return self.rs.resample_chunk(np.zeros(0, np.float32), last=True)


def makers() -> dict:
    from anima.core.audio import StreamingResampler

    return {"anima": StreamingResampler, "anima z32": lambda s, d: StreamingResampler(s, d, zeros=32),
            "anima z48": lambda s, d: StreamingResampler(s, d, zeros=48, rolloff=0.95), **{f"soxr {q}": (lambda s, d, q=q: Soxr(s, d, q)) for q in ("LQ", "MQ", "HQ", "VHQ")}}


def whole(make, x: np.ndarray, src: int, dst: int) -> np.ndarray:
    rs = make(src, dst)
    return np.concatenate([rs.process(x), rs.flush()])


def snr_db(make, src: int, dst: int, rng: np.random.Generator, band: float = 0.9) -> float:
    n = 2 * src
    f = rng.uniform(20, band * min(src, dst) / 2, 30)
    ph = rng.uniform(0, 2 * np.pi, 30)
    tone = lambda t: (np.sin(2 * np.pi * f[None, :] * t[:, None] + ph[None, :]).sum(1) / 30)  # noqa: E731
    y = whole(make, tone(np.arange(n) / src).astype(np.float32), src, dst)
    ref = tone(np.arange(y.size) / dst)
    trim = dst // 10
    err = y[trim:-trim] - ref[trim:-trim]
    return float(10 * np.log10(np.sum(ref[trim:-trim] ** 2) / np.sum(err**2)))


def spurious_db(make, src: int, dst: int) -> float:
    worst = -200.0
    n = src  # 1 s
    for f in np.linspace(50, 0.98 * src / 2, 60):
        x = (0.5 * np.sin(2 * np.pi * f * np.arange(n) / src)).astype(np.float32)
        y = whole(make, x, src, dst)[dst // 10 : -dst // 10]
        spec = np.abs(np.fft.rfft(y * np.blackman(y.size))) ** 2
        freqs = np.fft.rfftfreq(y.size, 1 / dst)
        ideal = 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(y.size) / dst)  # the tone's level at the output rate
        tone_power = np.sum(np.abs(np.fft.rfft(ideal * np.blackman(y.size))) ** 2)
        keep = np.abs(freqs - f) > 30 if f < 0.9 * dst / 2 else np.ones_like(freqs, bool)
        if f < 0.9 * dst / 2 or f > dst / 2 * 1.06:  # skip the transition band (0.9-1.06 x output Nyquist)
            worst = max(worst, float(10 * np.log10(spec[keep].sum() / tone_power + 1e-30)))
    return worst


def delay_samples(make, src: int, dst: int) -> float:
    x = np.zeros(src // 5, np.float32)
    at = src // 10
    x[at] = 1.0
    y = whole(make, x, src, dst).astype(np.float64)
    k = int(np.argmax(y))
    # Sub-sample peak by parabolic interpolation.
    a, b, c = y[k - 1], y[k], y[k + 1]
    peak = k + 0.5 * (a - c) / (a - 2 * b + c)
    return float(peak - at * dst / src)


def latency_ms(make, src: int, dst: int) -> tuple[float, float]:
    rs, chunk, fed, out, held = make(src, dst), src // 50, 0, 0, []
    x = np.random.default_rng(0).standard_normal(2 * src).astype(np.float32) * 0.1
    for i in range(0, x.size, chunk):
        fed += x[i : i + chunk].size
        out += rs.process(x[i : i + chunk]).size
        held.append((fed * dst / src - out) / dst * 1000)
    return float(np.mean(held)), float(np.max(held))


def chunk_diff(make, src: int, dst: int, rng: np.random.Generator) -> float:
    x = (rng.standard_normal(3 * src) * 0.2).astype(np.float32)
    ref = whole(make, x, src, dst)
    rs, parts, i = make(src, dst), [], 0
    while i < x.size:
        n = int(rng.integers(1, 3000))
        parts.append(rs.process(x[i : i + n]))
        i += n
    y = np.concatenate(parts + [rs.flush()])
    return float(np.max(np.abs(y - ref))) if y.size == ref.size else float("inf")


def speed_x(make, src: int, dst: int) -> float:
    x = (np.random.default_rng(1).standard_normal(60 * src) * 0.1).astype(np.float32)
    chunk, rs = src // 50, make(src, dst)
    t0 = time.process_time()
    for i in range(0, x.size, chunk):
        rs.process(x[i : i + chunk])
    rs.flush()
    return 60 / (time.process_time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "resample.json")
    args = ap.parse_args()
    rows = []
    print(f"{'resampler':9} {'pair':>12} {'SNR dB':>7} {'SNR<.7':>7} {'spurious dB':>11} {'delay smp':>9} {'lat mean ms':>11} {'lat max ms':>10} "
          f"{'chunk diff':>10} {'x realtime':>10}")
    for src, dst in PAIRS:
        for name, make in makers().items():
            lat_mean, lat_max = latency_ms(make, src, dst)
            r = {"resampler": name, "src": src, "dst": dst, "snr_db": snr_db(make, src, dst, np.random.default_rng(0)),
                 "snr_db_below_0.7_nyquist": snr_db(make, src, dst, np.random.default_rng(0), band=0.7),
                 "spurious_db": spurious_db(make, src, dst), "delay_samples": delay_samples(make, src, dst),
                 "latency_ms_mean": lat_mean, "latency_ms_max": lat_max,
                 "chunk_diff": chunk_diff(make, src, dst, np.random.default_rng(2)), "x_realtime": speed_x(make, src, dst)}
            rows.append(r)
            print(f"{name:9} {f'{src}>{dst}':>12} {r['snr_db']:7.1f} {r['snr_db_below_0.7_nyquist']:7.1f} {r['spurious_db']:11.1f} {r['delay_samples']:9.2f} "
                  f"{r['latency_ms_mean']:11.1f} {r['latency_ms_max']:10.1f} {r['chunk_diff']:10.1e} {r['x_realtime']:10.0f}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
