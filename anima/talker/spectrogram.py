"""Log-mel spectrograms of several recordings stacked in one PNG: to look at what a codec or the TTS did.

    anima talker spectrogram original.wav reconstructed.wav codec2.wav -o compare.png

Each row is one file (its name on the left), time runs right at the same scale for every row, low
frequencies at the bottom; 80 mel bands up to 12 kHz, 10 ms hop, 80 dB of range (librosa's mel filters,
Pillow for the image).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

SAMPLE_RATE = 24000
N_FFT, HOP, N_MELS = 1024, 240, 80
ROW_HEIGHT = 2 * N_MELS
LABEL_WIDTH = 220


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(N,) float at 24 kHz -> (80, frames) dB, 0 = the loudest cell."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError(f"spectrogram: expected mono audio, got shape {samples.shape}")
    padded = np.pad(samples, (N_FFT // 2, N_FFT // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP] * np.hanning(N_FFT)  # (T, n_fft)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # (T, 513)
    import librosa

    mel = power @ librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=12000.0).T  # (T, 80)
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    return (db - db.max()).T


def render(rows: Sequence[tuple[str, np.ndarray]], path: str | Path) -> Path:
    """Write the stacked spectrograms of (label, 24 kHz samples) rows as a PNG."""
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("spectrogram: nothing to draw")
    specs = [(label, log_mel(samples)) for label, samples in rows]
    width = LABEL_WIDTH + 2 * max(s.shape[1] for _, s in specs)
    image = Image.new("RGB", (width, ROW_HEIGHT * len(specs)), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for i, (label, spec) in enumerate(specs):
        level = np.clip((spec + 80.0) / 80.0, 0.0, 1.0)[::-1]  # (80, T), high frequencies on top
        rgb = (np.stack([level ** 0.6, level ** 1.5, 0.3 + 0.4 * level * (1 - level)], -1) * 255).astype(np.uint8)
        tile = Image.fromarray(rgb).resize((2 * spec.shape[1], ROW_HEIGHT), Image.NEAREST)
        image.paste(tile, (LABEL_WIDTH, i * ROW_HEIGHT))
        draw.text((6, i * ROW_HEIGHT + ROW_HEIGHT // 2 - 6), label[:34], fill=(230, 230, 230))
        draw.line([(0, (i + 1) * ROW_HEIGHT - 1), (width, (i + 1) * ROW_HEIGHT - 1)], fill=(90, 90, 90))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
