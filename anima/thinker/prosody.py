"""Prosody of one user turn from its audio: pitch, intensity, jitter, speaking rate (numpy + scipy).

    p = prosody(samples, 24000)          # Prosody, or None when the turn holds no voiced speech
    base = Baseline.of([p1, p2, ...])    # the speaker's own session medians
    rel = base.relative(p)               # pitch_st, range_st, loudness_db, jitter, rate_ratio

The reward decomposition (``anima.thinker.reward``) reads a turn's prosody relative to the same
speaker's session baseline, so a deep voice and a high voice, a close microphone and a far one, all
read "usual" at their own level. Runtime code: no torch, no librosa, no training code.

Pitch: YIN (de Cheveigné and Kawahara 2002) on 40 ms windows every 10 ms at 16 kHz, 70-500 Hz,
cumulative-mean-normalised difference below 0.15 = voiced, parabolic interpolation of the lag.
Intensity: energy mean over the speech frames (frames within 35 dB of the turn's loudest and above
-60 dBFS), in dB full scale. Jitter: the mean absolute difference of consecutive voiced frames'
periods over the mean period, within voiced runs (a 10 ms frame-level stand-in for the cycle-to-cycle
perturbation; a steady voice reads ~0.01, a rough or shaky one 0.03+). Speaking rate: syllable
nuclei (intensity peaks >= 3 dB prominent, >= 100 ms apart, in voiced frames) per second of speech.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import find_peaks, resample_poly

RATE = 16000  # analysis sample rate (the 24 kHz live audio is resampled 2:3)
HOP = 160  # 10 ms
FMIN, FMAX = 70.0, 500.0
YIN_THRESHOLD = 0.15
SPEECH_FLOOR_DB = -35.0  # speech frames: within this of the turn's loudest frame ...
ABSOLUTE_FLOOR_DB = -60.0  # ... and above this (dBFS)
MIN_VOICED_S = 0.15  # less voiced speech than this: no prosody for the turn


@dataclass(frozen=True)
class Prosody:
    """One turn's prosody in absolute units (features only: the audio is never kept)."""

    f0_median_hz: float  # median F0 of the voiced frames
    f0_range_st: float  # 10th-90th percentile F0 spread, semitones
    intensity_db: float  # energy mean over speech frames, dBFS
    jitter: float  # relative period perturbation between consecutive voiced frames
    rate_syl_s: float  # syllable nuclei per second of speech
    speech_s: float  # seconds of speech (frames above the floors)
    voiced_fraction: float  # voiced frames / speech frames

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def yin(x: np.ndarray, sample_rate: int = RATE) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float at ``sample_rate`` -> (f0 Hz (T,), voiced (T,) bool), one frame per 10 ms."""
    hop = int(round(sample_rate * 0.01))
    lag_max = int(np.ceil(sample_rate / FMIN))
    lag_min = int(np.floor(sample_rate / FMAX))
    width = 2 * lag_max  # frame: lag_max samples correlated against lag_max further lags
    n = (len(x) - width) // hop + 1
    if n <= 0:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    idx = np.arange(width)[None, :] + hop * np.arange(n)[:, None]
    frames = x[idx].astype(np.float64)  # (T, W)
    frames -= frames.mean(axis=1, keepdims=True)
    size = 2 * width
    spec_head = np.fft.rfft(frames[:, :lag_max], size)  # (T, F)
    spec_full = np.fft.rfft(frames, size)
    r = np.fft.irfft(np.conj(spec_head) * spec_full, size)[:, : lag_max + 1]  # (T, L+1): sum_j x[j] x[j + tau]
    sq = np.concatenate([np.zeros((n, 1)), np.cumsum(frames**2, axis=1)], axis=1)  # (T, W + 1)
    taus = np.arange(lag_max + 1)
    energy_tau = sq[:, taus + lag_max] - sq[:, taus]  # (T, L+1): sum_j x[j + tau]^2
    d = np.maximum(energy_tau[:, :1] + energy_tau - 2 * r, 0.0)  # (T, L+1) difference function
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)  # cumulative-mean-normalised
    f0 = np.zeros(n, np.float32)
    voiced = np.zeros(n, bool)
    band = cmnd[:, lag_min : lag_max + 1]
    below = band < YIN_THRESHOLD
    for t in np.flatnonzero(below.any(axis=1)):
        tau = lag_min + int(np.argmax(below[t]))
        while tau + 1 <= lag_max and cmnd[t, tau + 1] < cmnd[t, tau]:  # walk down to the dip's minimum
            tau += 1
        a, b, c = cmnd[t, tau - 1], cmnd[t, tau], cmnd[t, min(tau + 1, lag_max)]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) > 1e-12 else 0.0
        f0[t] = sample_rate / (tau + float(np.clip(shift, -1, 1)))
        voiced[t] = True
    return f0, voiced


def _frame_db(x: np.ndarray, n: int, hop: int, width: int) -> np.ndarray:
    """(T,) frame energy in dBFS, frames aligned with ``yin``'s."""
    idx = np.arange(width)[None, :] + hop * np.arange(n)[:, None]
    return 10 * np.log10(np.mean(x[idx].astype(np.float64) ** 2, axis=1) + 1e-12)


def prosody(samples: np.ndarray, sample_rate: int) -> Prosody | None:
    """One turn's prosody, or None when it has under ``MIN_VOICED_S`` of voiced speech (silence,
    noise, a whisper). Raises ValueError on an empty or non-finite input or a bad sample rate."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if not isinstance(sample_rate, int) or sample_rate < 8000:
        raise ValueError(f"prosody: sample_rate must be an integer >= 8000 Hz, got {sample_rate!r}")
    if not np.all(np.isfinite(x)):
        raise ValueError("prosody: the audio holds NaN or infinite samples")
    if sample_rate != RATE:
        g = np.gcd(RATE, sample_rate)
        x = resample_poly(x, RATE // g, sample_rate // g)
    f0, voiced = yin(x, RATE)
    if len(f0) == 0:
        return None
    db = _frame_db(x, len(f0), HOP, 2 * int(np.ceil(RATE / FMIN)))
    speech = (db > db.max() + SPEECH_FLOOR_DB) & (db > ABSOLUTE_FLOOR_DB)
    voiced &= speech
    if voiced.sum() * 0.01 < MIN_VOICED_S:
        return None
    st = 12 * np.log2(f0[voiced] / 100.0)
    st = st[np.abs(st - np.median(st)) < 7]  # octave errors out (a half-octave and more off the median)
    periods = np.where(voiced, 1.0 / np.maximum(f0, 1.0), np.nan)
    steps = np.abs(np.diff(periods))  # NaN across unvoiced frames: only within voiced runs
    jitter = float(np.nanmean(steps) / np.nanmean(periods)) if np.isfinite(steps).any() else 0.0
    speech_s = float(speech.sum() * 0.01)
    contour = np.where(voiced, db, db.min())
    peaks, _ = find_peaks(np.convolve(contour, np.ones(3) / 3, mode="same"), prominence=3.0, distance=10)
    return Prosody(
        f0_median_hz=float(100.0 * 2 ** (np.median(st) / 12)),
        f0_range_st=float(np.percentile(st, 90) - np.percentile(st, 10)),
        intensity_db=float(10 * np.log10(np.mean(10 ** (db[speech] / 10)))),
        jitter=jitter,
        rate_syl_s=float(len(peaks) / max(speech_s, 0.1)),
        speech_s=speech_s,
        voiced_fraction=float(voiced.sum() / max(speech.sum(), 1)),
    )


@dataclass(frozen=True)
class Baseline:
    """A speaker's usual: the medians of their turns' prosody in one session."""

    f0_hz: float
    range_st: float
    intensity_db: float
    jitter: float
    rate_syl_s: float

    @classmethod
    def of(cls, turns: list[Prosody | None]) -> Baseline | None:
        """The baseline of the voiced turns (None when no turn has prosody)."""
        voiced = [p for p in turns if p is not None]
        if not voiced:
            return None
        return cls(f0_hz=float(2 ** np.median([np.log2(p.f0_median_hz) for p in voiced])),
                   range_st=float(np.median([p.f0_range_st for p in voiced])),
                   intensity_db=float(np.median([p.intensity_db for p in voiced])),
                   jitter=float(np.median([p.jitter for p in voiced])),
                   rate_syl_s=float(np.median([p.rate_syl_s for p in voiced])))

    def relative(self, p: Prosody) -> dict[str, float]:
        """``p`` against this baseline: pitch and range in semitones, loudness in dB, jitter and
        rate as ratios (1 = usual)."""
        return {"pitch_st": round(12 * float(np.log2(p.f0_median_hz / self.f0_hz)), 3),
                "range_st": round(p.f0_range_st - self.range_st, 3),
                "loudness_db": round(p.intensity_db - self.intensity_db, 3),
                "jitter_ratio": round(p.jitter / max(self.jitter, 1e-4), 3),
                "rate_ratio": round(p.rate_syl_s / max(self.rate_syl_s, 0.1), 3)}
