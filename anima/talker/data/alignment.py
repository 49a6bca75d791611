"""Phoneme timings: from espeak's events, silence trimming, and DTW transfer onto other audio.

espeak reports when each phoneme starts; a phoneme ends where the next begins. Piper reports no
timings, so an espeak rendition of the same sentence (same phoneme symbols) is aligned to the Piper
audio by dynamic time warping on MFCCs and its phoneme boundaries are carried through the warping
path. Both clips are trimmed first so their ends coincide, which DTW assumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from anima.core.frames import SpeechEvent
from anima.talker.data.manifest import SILENCE

__all__ = ["Phone", "phonemes_from_events", "trim_silence", "dtw_transfer"]

Phone = tuple[str, float, float]  # (symbol, start_s, end_s)

TRIM_DB = 40.0  # frames this far below the loudest 10 ms frame are silence
TRIM_PAD_S = 0.05  # silence kept at each end after trimming
_HOP_S = 0.01


def phonemes_from_events(events: Iterable[SpeechEvent], duration_s: float) -> list[Phone]:
    """Phonemes from espeak "phoneme" events: each ends where the next starts, the last at the end."""
    starts = [(e.text, e.time_s) for e in events if e.kind == "phoneme"]
    out = []
    for i, (symbol, t) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else duration_s
        out.append((symbol, min(t, duration_s), max(min(end, duration_s), min(t, duration_s))))
    return out


def _active_span(samples: np.ndarray, sample_rate: int) -> tuple[int, int]:
    """First and one-past-last sample of the non-silent part, padded by ``TRIM_PAD_S``."""
    hop = int(sample_rate * _HOP_S)
    n = len(samples) // hop
    if n == 0:
        return 0, len(samples)
    rms = np.sqrt(np.mean(samples[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1) + 1e-12)
    level = 20 * np.log10(rms)
    active = np.flatnonzero(level > level.max() - TRIM_DB)
    pad = int(sample_rate * TRIM_PAD_S)
    return max(active[0] * hop - pad, 0), min((active[-1] + 1) * hop + pad, len(samples))


def trim_silence(samples: np.ndarray, phonemes: Sequence[Phone], sample_rate: int) -> tuple[np.ndarray, list[Phone]]:
    """Cut leading and trailing silence; shift and clip the timings to the kept part.

    Pauses (symbols starting with ``_``) that fall entirely outside the kept part are dropped.
    """
    a, b = _active_span(samples, sample_rate)
    t0, dur = a / sample_rate, (b - a) / sample_rate
    out = []
    for symbol, start, end in phonemes:
        s, e = min(max(start - t0, 0.0), dur), min(max(end - t0, 0.0), dur)
        if e <= s and symbol.startswith(SILENCE):
            continue
        out.append((symbol, round(s, 4), round(e, 4)))
    return samples[a:b], out


def _mfcc(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(13, T) MFCCs without c0 (loudness), mean/variance normalised per coefficient."""
    import librosa

    hop = int(sample_rate * _HOP_S)
    m = librosa.feature.mfcc(y=samples.astype(np.float32), sr=sample_rate, n_mfcc=14, n_fft=1024, hop_length=hop)[1:]
    return (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-6)


def dtw_transfer(src: np.ndarray, src_phonemes: Sequence[Phone], dst: np.ndarray, sample_rate: int) -> list[Phone]:
    """Carry ``src``'s phoneme timings onto ``dst`` (same words, other voice) by DTW on MFCCs.

    Both clips should already be trimmed. Returns the same symbols with times in ``dst``, monotonic
    and inside ``[0, len(dst) / sample_rate]``.
    """
    import librosa

    x, y = _mfcc(src, sample_rate), _mfcc(dst, sample_rate)  # (13, Tx), (13, Ty)
    _, path = librosa.sequence.dtw(X=x, Y=y, metric="euclidean", global_constraints=True, band_rad=0.25)
    path = path[::-1]  # (L, 2) pairs (src frame, dst frame), start to end
    src_frames = np.arange(x.shape[1])
    sums = np.bincount(path[:, 0], weights=path[:, 1], minlength=x.shape[1])
    counts = np.bincount(path[:, 0], minlength=x.shape[1])
    dst_of_src = sums / np.maximum(counts, 1)  # mean dst frame each src frame maps to

    def warp(t: float) -> float:
        return float(np.interp(t / _HOP_S, src_frames, dst_of_src)) * _HOP_S

    dur = len(dst) / sample_rate
    src_dur = len(src) / sample_rate
    times = np.array([warp(t) for _, s, e in src_phonemes for t in (s, e)])
    # The clip ends coincide: pin times at the source's ends to the destination's ends.
    ends = np.array([t for _, s, e in src_phonemes for t in (s, e)])
    times[ends <= 0.0] = 0.0
    times[ends >= src_dur - 1e-6] = dur
    times = np.clip(np.maximum.accumulate(times), 0.0, dur)
    return [(symbol, round(float(times[2 * i]), 4), round(float(times[2 * i + 1]), 4))
            for i, (symbol, _, _) in enumerate(src_phonemes)]
