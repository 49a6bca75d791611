"""The recogniser interface: a shared model, and one streaming state per user.

A ``Recognizer`` holds what every session may share (model files, dictionary, language model); a
``RecognizerStream`` is one user's utterance in progress. Streams take anima's internal audio
(24 kHz mono float32, ``anima.core.frames.SAMPLE_RATE``) in chunks of any size, report the partial
hypothesis whenever it changes, and give the final transcript at the end of the turn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from anima.core.frames import SAMPLE_RATE


class RecognizerStream(Protocol):
    def accept(self, samples: np.ndarray) -> str | None:
        """Feed 24 kHz mono float32 samples; returns the partial hypothesis if it changed, else None."""
        ...

    def finish(self) -> str:
        """End the utterance: the final transcript. The stream is then ready for the next utterance."""
        ...


class Recognizer(Protocol):
    def new_stream(self) -> RecognizerStream:
        """A fresh, independent stream (one per user or session)."""
        ...


def check_audio(samples: np.ndarray, where: str = "audio") -> np.ndarray:
    """Samples as 1-D float32, or a ValueError naming what was wrong."""
    a = np.asarray(samples)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise ValueError(f"{where}: expected mono samples (1-D), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{where}: expected float samples in [-1, 1], got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: samples contain NaN or infinity")
    return a.astype(np.float32, copy=False)


def to_internal_rate(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample a whole clip (any rate, mono float) to anima's 24 kHz."""
    import soxr

    samples = check_audio(samples)
    if not isinstance(sample_rate, int | np.integer) or sample_rate < 4000:
        raise ValueError(f"sample_rate must be an integer >= 4000 Hz, got {sample_rate!r}")
    if sample_rate == SAMPLE_RATE:
        return samples
    return soxr.resample(samples, int(sample_rate), SAMPLE_RATE).astype(np.float32)


def transcribe(recognizer: Recognizer, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    """The transcript of a whole clip (mono float, any sample rate), through a fresh stream."""
    stream = recognizer.new_stream()
    stream.accept(to_internal_rate(samples, sample_rate))
    return stream.finish()


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """A sound file as mono float32 samples (channels averaged) and its rate; ValueError names the problem."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable audio file ({exc})") from None
    if samples.shape[0] == 0:
        raise ValueError(f"{path}: the file holds no audio")
    return np.ascontiguousarray(samples.mean(axis=1)), int(rate)
