"""Speech quality and intelligibility metrics comparing a reference with a reconstruction.

STOI (``pystoi``), PESQ narrow- and wide-band (``pesq``), phoneme and word error rates (Levenshtein),
pitch agreement (pYIN log-F0 RMSE in cents and voicing agreement) and a speaker-similarity helper
for any embedding function. Signals are (N,) float arrays; pairs must be aligned and of equal length
(``codecs.Codec.reconstruct`` returns them so). A metric that cannot score a clip (PESQ finds no
utterance, the clip is too short) raises ``MetricError`` naming why, so a run can record it and go on.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from anima.talker.training.codecs import check_audio, resample

GROSS_CENTS = 1200.0 * float(np.log2(1.2))  # a pitch error above 20 % counts as gross (~316 cents)


class MetricError(ValueError):
    """A metric could not score this clip (not a bug in the caller: record it and move on)."""


def _pair(reference: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, deg = check_audio(reference, "reference"), check_audio(degraded, "reconstruction")
    if ref.size != deg.size:
        raise ValueError(f"reference has {ref.size} samples, reconstruction {deg.size}: align them first")
    return ref, deg


def stoi(reference: np.ndarray, degraded: np.ndarray, rate: int) -> float:
    """Short-time objective intelligibility in [0, 1] (pystoi works at 10 kHz; we resample with soxr)."""
    from pystoi import stoi as _stoi

    ref, deg = _pair(reference, degraded)
    if not np.any(ref):
        raise MetricError("STOI: the reference is silent")
    ref, deg = resample(ref, rate, 10000), resample(deg, rate, 10000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(_stoi(ref, deg, 10000, extended=False))
    if value == 1e-5 or not np.isfinite(value):  # pystoi's "fewer than 30 frames of speech" answer
        raise MetricError(f"STOI: fewer than 30 speech frames in the reference ({ref.size / 10000:.2f} s)")
    return value


def _pesq(reference: np.ndarray, degraded: np.ndarray, rate: int, target: int, mode: str) -> float:
    from pesq import PesqError, pesq

    ref, deg = _pair(reference, degraded)
    ref, deg = resample(ref, rate, target), resample(deg, rate, target)
    if not np.any(ref) or not np.any(deg):
        raise MetricError(f"PESQ-{mode.upper()}: the {'reference' if not np.any(ref) else 'reconstruction'} is silent")
    try:
        return float(pesq(target, ref, deg, mode))
    except PesqError as e:
        raise MetricError(f"PESQ-{mode.upper()}: {type(e).__name__}: {e}") from e


def pesq_nb(reference: np.ndarray, degraded: np.ndarray, rate: int) -> float:
    """PESQ narrow-band (P.862, MOS-LQO about 1.0-4.5) at 8 kHz."""
    return _pesq(reference, degraded, rate, 8000, "nb")


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, rate: int) -> float:
    """PESQ wide-band (P.862.2, MOS-LQO about 1.0-4.6) at 16 kHz."""
    return _pesq(reference, degraded, rate, 16000, "wb")


def token_bitrate(num_codebooks: int, codebook_size: int, frame_rate: float) -> float:
    """Bit/s of a stream of ``num_codebooks`` indices of ``codebook_size`` entries per frame."""
    if num_codebooks < 1 or codebook_size < 2 or frame_rate <= 0:
        raise ValueError(f"bad token stream: {num_codebooks} codebooks of {codebook_size} at {frame_rate} Hz")
    return num_codebooks * float(np.log2(codebook_size)) * frame_rate


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance (substitutions + deletions + insertions) between two sequences."""
    prev = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        cur = [i] + [0] * len(hypothesis)
        for j, h in enumerate(hypothesis, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def error_rate(references: Sequence[Sequence], hypotheses: Sequence[Sequence]) -> float:
    """Corpus error rate: total edit distance / total reference length (PER on phoneme lists)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("the references are empty: an error rate needs at least one reference token")
    return sum(edit_distance(r, h) for r, h in zip(references, hypotheses, strict=True)) / total


def phoneme_error_rate(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """PER of one utterance: edit distance / number of reference phonemes."""
    return error_rate([list(reference)], [list(hypothesis)])


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w' ]+", " ", text.lower()).split()


def word_error_rate(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """WER over one text or a list of texts (lower-cased, punctuation dropped); jiwer if installed."""
    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    refs, hyps = [" ".join(_words(t)) for t in refs], [" ".join(_words(t)) for t in hyps]
    try:
        import jiwer
    except ImportError:
        return error_rate([r.split() for r in refs], [h.split() for h in hyps])
    if not any(refs):
        raise ValueError("the references are empty: an error rate needs at least one reference word")
    return float(jiwer.wer(refs, hyps))


def f0_track(samples: np.ndarray, rate: int, fmin: float = 60.0, fmax: float = 500.0) -> tuple[np.ndarray, np.ndarray]:
    """pYIN pitch at 16 kHz, 10 ms hop: (f0 Hz (F,) with NaN where unvoiced, voiced flags (F,) bool)."""
    import librosa

    x = resample(check_audio(samples), rate, 16000)
    f0, voiced, _ = librosa.pyin(x, fmin=fmin, fmax=fmax, sr=16000, frame_length=1024, hop_length=160)
    return f0, voiced.astype(bool)


def compare_f0(reference: tuple[np.ndarray, np.ndarray], degraded: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Pitch kept by the reconstruction, from two ``f0_track`` results: ``f0_rmse_cents`` (log-F0
    RMSE over frames voiced in both), ``f0_gross_error`` (fraction of those off by more than 20 %:
    octave jumps, which dominate the RMSE when they occur) and ``voicing_agreement`` (fraction of
    frames with the same voiced/unvoiced decision)."""
    (f_ref, v_ref), (f_deg, v_deg) = reference, degraded
    n = min(f_ref.size, f_deg.size)
    f_ref, v_ref, f_deg, v_deg = f_ref[:n], v_ref[:n], f_deg[:n], v_deg[:n]
    both = v_ref & v_deg & np.isfinite(f_ref) & np.isfinite(f_deg)
    if not both.any():
        raise MetricError("F0: no frame is voiced in both the reference and the reconstruction")
    cents = 1200.0 * np.log2(f_deg[both] / f_ref[both])
    return {"f0_rmse_cents": float(np.sqrt(np.mean(cents**2))),
            "f0_gross_error": float(np.mean(np.abs(cents) > GROSS_CENTS)),
            "voicing_agreement": float(np.mean(v_ref == v_deg))}


def f0_agreement(reference: np.ndarray, degraded: np.ndarray, rate: int) -> dict[str, float]:
    """``compare_f0`` of the two signals' pYIN tracks (useful for prosody and emotion checks)."""
    ref, deg = _pair(reference, degraded)
    return compare_f0(f0_track(ref, rate), f0_track(deg, rate))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"embeddings of different sizes: {a.size} and {b.size}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0 or not (np.isfinite(na) and np.isfinite(nb)):
        raise MetricError("speaker similarity: an embedding is zero or not finite")
    return float(a @ b / (na * nb))


def speaker_similarity(embed_fn: Callable[[np.ndarray], np.ndarray], a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of ``embed_fn(a)`` and ``embed_fn(b)``: any speaker encoder (wav -> vector)."""
    a, b = check_audio(a, "first clip"), check_audio(b, "second clip")
    return cosine(np.asarray(embed_fn(a)), np.asarray(embed_fn(b)))


def mean_ci95(values: Sequence[float]) -> dict[str, float]:
    """Mean, 95 % confidence half-width (Student t) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    if v.size == 1:
        return {"mean": float(v[0]), "ci95": float("nan"), "n": 1}
    from scipy.stats import t

    half = float(t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return {"mean": float(v.mean()), "ci95": half, "n": int(v.size)}
