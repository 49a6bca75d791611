"""Pitch for the tokenizer's pitch loss: classical F0 targets and a differentiable estimate.

Targets: librosa's YIN on the recording (precomputed once per utterance and cached). Generated
side: YIN's argmin is not differentiable, so ``soft_f0`` takes the normalised autocorrelation of
each frame and a soft-argmax over the lags of 60-500 Hz (expected lag under a sharp softmax). The
two estimators can disagree (octave jumps, noisy frames), so the loss only counts frames that are
voiced and where the soft estimate *of the recording itself* agrees with YIN to within a semitone:
there the soft estimator demonstrably reads the pitch, and the generator is pulled toward it.

Both use the same frames: 50 Hz (hop 480), frame t centred on the middle of samples
[480 t, 480 (t + 1)), 1024 samples long. Pitch is compared in octaves (log2 Hz).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 24000
HOP = 480
WINDOW = 1024
FMIN, FMAX = 60.0, 500.0


def _frame_pad(n: int) -> tuple[int, int, int]:
    """(left pad, right pad, number of frames) so frame t is centred on 480 t + 240."""
    left = WINDOW // 2 - HOP // 2
    frames = n // HOP
    return left, WINDOW, frames


def yin_f0(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N,) float -> F0 in Hz per 50 Hz frame, (N // 480,) float32 (every frame gets a value)."""
    import librosa

    left, right, frames = _frame_pad(len(wav))
    if frames == 0:
        return np.zeros(0, np.float32)
    x = np.pad(wav.astype(np.float32), (left, right))
    f0 = librosa.yin(x, fmin=FMIN, fmax=FMAX, sr=sample_rate, frame_length=WINDOW, hop_length=HOP, center=False)
    return f0[:frames].astype(np.float32)


def soft_f0(wav: torch.Tensor, temperature: float = 0.02, sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable F0: wav (B, N) -> (f0 Hz (B, N // 480), periodicity in [-1, 1] (B, N // 480)).

    Periodicity is the normalised autocorrelation at the best lag (near 1 for a clean voiced frame).
    """
    left, right, frames = _frame_pad(wav.shape[-1])
    x = F.pad(wav, (left, right)).unfold(-1, WINDOW, HOP)[:, :frames]  # (B, T, W)
    x = (x - x.mean(-1, keepdim=True)) * torch.hann_window(WINDOW, device=wav.device)
    spec = torch.fft.rfft(x, n=2 * WINDOW)
    ac = torch.fft.irfft(spec.abs().pow(2), n=2 * WINDOW)[..., :WINDOW]  # (B, T, W)
    ac = ac / (ac[..., :1] + 1e-6)
    lo, hi = int(sample_rate / FMAX), int(sample_rate / FMIN)
    lags = torch.arange(lo, hi + 1, device=wav.device, dtype=wav.dtype)
    band = ac[..., lo:hi + 1]  # (B, T, L)
    weights = torch.softmax(band / temperature, -1)
    lag = (weights * lags).sum(-1)
    return sample_rate / lag, band.max(-1).values


def voiced_mask(wav: np.ndarray, f0: np.ndarray, floor_db: float = -35.0) -> np.ndarray:
    """Frames loud enough (within ``floor_db`` of the utterance's loudest frame) with a YIN F0 inside the range."""
    frames = len(f0)
    if frames == 0:
        return np.zeros(0, bool)
    rms = np.sqrt(np.mean(wav[: frames * HOP].reshape(frames, HOP).astype(np.float64) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms / rms.max())
    return (db > floor_db) & (f0 > FMIN * 1.05) & (f0 < FMAX * 0.95)


def pitch_loss(generated: torch.Tensor, reference: torch.Tensor, target_f0: torch.Tensor, voiced: torch.Tensor,
               tolerance_octaves: float = 1 / 12) -> torch.Tensor:
    """Mean squared log2-F0 error (octaves^2) of the generated audio against the YIN targets.

    generated, reference: (B, N) audio; target_f0, voiced: (B, N // 480). Counts the voiced frames
    where the soft estimate of the reference agrees with YIN (see module docstring); 0 if none.
    """
    pred, _ = soft_f0(generated)
    with torch.no_grad():
        ref, periodicity = soft_f0(reference)
        target = torch.log2(target_f0.clamp(min=1.0))
        mask = voiced & ((torch.log2(ref) - target).abs() < tolerance_octaves) & (periodicity > 0.5)
    if not mask.any():
        return generated.new_zeros(())
    return (torch.log2(pred) - target).pow(2)[mask].mean()
