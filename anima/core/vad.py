"""Streaming voice activity detectors: ``SileroVAD`` (learned, the default) and ``EnergyVAD`` (no weights).

Both take audio chunks with their media time and return ``VadEvent``s; ``make_vad(kind)`` builds
either. Speech starts after ``min_speech_s`` of consecutive speech frames (the onset is stamped at
the first of them) and ends after ``min_silence_s`` of non-speech frames (stamped at the end of the
last speech frame); ``Hangover`` holds that logic for both. Measured side by side in
docs/benchmarks.md "Ears: VAD and resampler".

EnergyVAD: each 20 ms frame is voiced when its level is well above the noise floor (the quietest frame of the
last 1.5 s: minimum statistics, so a steady noise of any level is learnt within 1.5 s) and above an
absolute floor, and most of its energy lies in the speech band (100 Hz - 8 kHz, which keeps fricative onsets such as "s").

SileroVAD: silero-vad's network (``anima.core.vad_silero``) gives each 32 ms window a speech
probability. Input at 24 kHz is brought to 16 kHz by the zero-phase ``StreamingResampler``, so window ``i``
covers exactly media time ``[i, i + 1) * 32 ms`` after the stream's first chunk. A window is speech
above ``threshold`` and stays speech until the probability falls below ``threshold - release``
(silero's own hysteresis, 0.15).

A window quieter than ``floor_db`` (dBFS, as ``EnergyVAD``'s absolute floor) is never speech: the
model itself ignores level and hears a distant radio or far-off chatter as speech. With
``gate_db`` set (the default), a window also has to be ``gate_db`` louder than the noise floor (the quietest
window of the last ``floor_window_s``, minimum statistics as in ``EnergyVAD``): the model calls
background talkers speech at any level, the gate keeps only speech that stands out of the
background, i.e. the user near the microphone.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from anima.core.audio import StreamingResampler
from anima.core.frames import NS_PER_S, SAMPLE_RATE
from anima.core.vad_silero import (  # numpy only; onnxruntime loads with the model
    CONTEXT,
    MODEL_RATE,
    WINDOW,
    SileroModel,
    silero_model,
)


@dataclass(frozen=True)
class VadEvent:
    kind: str  # "start" or "end"
    pts_ns: int


class Hangover:
    """Per-frame speech decisions -> start/end events, with the min_speech / min_silence hangovers."""

    def __init__(self, min_speech_frames: int, min_silence_frames: int) -> None:
        self.min_speech_frames, self.min_silence_frames = min_speech_frames, min_silence_frames
        self.speaking = False
        self._voiced_run = 0
        self._silent_run = 0
        self._run_start_ns = 0
        self._last_voiced_end_ns = 0

    def step(self, voiced: bool, start_ns: int, frame_ns: int) -> VadEvent | None:
        """One frame ``[start_ns, start_ns + frame_ns)``; returns the event it completes, if any."""
        if voiced:
            if self._voiced_run == 0:
                self._run_start_ns = start_ns
            self._voiced_run += 1
            self._silent_run = 0
            self._last_voiced_end_ns = start_ns + frame_ns
            if not self.speaking and self._voiced_run >= self.min_speech_frames:
                self.speaking = True
                return VadEvent("start", self._run_start_ns)
        else:
            self._voiced_run = 0
            self._silent_run += 1
            if self.speaking and self._silent_run >= self.min_silence_frames:
                self.speaking = False
                return VadEvent("end", self._last_voiced_end_ns)
        return None


class EnergyVAD:
    """Streaming speech detector; feed it audio chunks with their media time."""

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        frame_s: float = 0.02,
        min_speech_s: float = 0.04,
        min_silence_s: float = 0.2,
        floor_db: float = -50.0,
        snr_db: float = 9.0,
        band_ratio: float = 0.6,
        floor_window_s: float = 1.5,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_len = int(round(sample_rate * frame_s))
        self.frame_ns = int(round(frame_s * NS_PER_S))
        self.min_speech_frames = max(1, int(round(min_speech_s / frame_s)))
        self.min_silence_frames = max(1, int(round(min_silence_s / frame_s)))
        self.floor_db, self.snr_db, self.band_ratio = floor_db, snr_db, band_ratio
        freqs = np.fft.rfftfreq(self.frame_len, 1 / sample_rate)
        self._band = (freqs >= 100) & (freqs <= 8000)
        self._window = np.hanning(self.frame_len).astype(np.float32)
        self._floor_frames = max(2, int(round(floor_window_s / frame_s)))
        self.reset()

    @property
    def speaking(self) -> bool:
        return self._hangover.speaking

    def reset(self) -> None:
        self._hangover = Hangover(self.min_speech_frames, self.min_silence_frames)
        self.noise_db = -70.0
        self._levels: deque[float] = deque(maxlen=self._floor_frames)
        self._pending = np.zeros(0, dtype=np.float32)
        self._pending_pts_ns = 0

    def is_voiced(self, frame: np.ndarray) -> bool:
        """Decide one frame; also updates the noise floor on unvoiced frames."""
        level_db = 10 * np.log10(float(np.mean(frame * frame)) + 1e-12)
        spectrum = np.abs(np.fft.rfft(frame * self._window)) ** 2
        in_band = float(spectrum[self._band].sum()) / (float(spectrum.sum()) + 1e-12)
        self._levels.append(level_db)
        # Minimum statistics: speech always has gaps, so the quietest recent frame is the noise.
        self.noise_db = min(self._levels)
        return level_db > self.floor_db and level_db > self.noise_db + self.snr_db and in_band > self.band_ratio

    def process(self, samples: np.ndarray, pts_ns: int) -> list[VadEvent]:
        """Feed a chunk that starts at media time ``pts_ns``; returns start/end events."""
        samples = np.nan_to_num(np.asarray(samples, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if self._pending.size == 0:
            self._pending_pts_ns = pts_ns
        self._pending = np.concatenate([self._pending, samples])
        events: list[VadEvent] = []
        n_frames = self._pending.size // self.frame_len
        for i in range(n_frames):
            frame = self._pending[i * self.frame_len : (i + 1) * self.frame_len]
            start_ns = self._pending_pts_ns + i * self.frame_ns
            event = self._hangover.step(self.is_voiced(frame), start_ns, self.frame_ns)
            if event is not None:
                events.append(event)
        consumed = n_frames * self.frame_len
        self._pending = self._pending[consumed:]
        self._pending_pts_ns += n_frames * self.frame_ns
        return events


class SileroVAD:
    """Streaming speech detector on silero-vad; feed it audio chunks with their media time.

    Event times count samples from the first chunk's ``pts_ns``; a chunk whose ``pts_ns`` is more
    than 1 ms off that count (a gap or resync in the stream) moves the count to it. Same interface as ``EnergyVAD``: ``process`` returns ``VadEvent``s and
    ``speaking`` says whether the user is speaking now.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        threshold: float = 0.5,
        release: float = 0.15,
        floor_db: float | None = -50.0,
        gate_db: float | None = 3.0,
        floor_window_s: float = 1.5,
        min_speech_s: float = 0.04,
        min_silence_s: float = 0.2,
        model: SileroModel | None = None,
    ) -> None:
        if not 0.0 <= release < threshold < 1.0:
            raise ValueError(f"need 0 <= release < threshold < 1, got threshold={threshold}, release={release}")
        self.sample_rate = int(sample_rate)
        self.threshold, self.neg_threshold = threshold, threshold - release
        self.floor_db, self.gate_db = floor_db, gate_db
        self._floor_windows = max(2, int(round(floor_window_s * MODEL_RATE / WINDOW)))
        self.frame_ns = WINDOW * NS_PER_S // MODEL_RATE
        self.min_speech_frames = max(1, int(round(min_speech_s * MODEL_RATE / WINDOW)))
        self.min_silence_frames = max(1, int(round(min_silence_s * MODEL_RATE / WINDOW)))
        self.model = model or silero_model()
        self.reset()

    @property
    def speaking(self) -> bool:
        return self._hangover.speaking

    def reset(self) -> None:
        self._hangover = Hangover(self.min_speech_frames, self.min_silence_frames)
        self.probability = 0.0  # last window's speech probability
        self._resampler: Any = StreamingResampler(self.sample_rate, MODEL_RATE) if self.sample_rate != MODEL_RATE else None
        self._state = self.model.new_state()
        self._pending = np.zeros(CONTEXT, dtype=np.float32)  # context + samples not yet decided
        self._origin_ns: int | None = None
        self._n_in = 0  # input samples received
        self._window_index = 0
        self._in_speech = False  # hysteresis state of the per-window decision
        self._levels: deque[float] = deque(maxlen=self._floor_windows)

    def process(self, samples: np.ndarray, pts_ns: int) -> list[VadEvent]:
        """Feed a chunk that starts at media time ``pts_ns``; returns start/end events.

        Args:
            samples: Mono audio at ``sample_rate``, float in [-1, 1]. # (N,) float32/float64
            pts_ns: Media time of the chunk's first sample.
        """
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"SileroVAD.process expects a 1-D mono array, got shape {x.shape}")
        if x.dtype.kind != "f":
            raise ValueError(f"SileroVAD.process expects float samples in [-1, 1], got dtype {x.dtype}")
        if not np.isfinite(x).all():
            raise ValueError(f"SileroVAD.process got {int((~np.isfinite(x)).sum())} NaN/inf samples")
        if self._origin_ns is None:
            self._origin_ns = int(pts_ns)
        expected_ns = self._origin_ns + self._n_in * NS_PER_S // self.sample_rate
        if abs(int(pts_ns) - expected_ns) > NS_PER_S // 1000:  # a gap or resync in the stream: follow it
            self._origin_ns += int(pts_ns) - expected_ns
        self._n_in += x.size
        x16 = self._resampler.process(x) if self._resampler is not None else x.astype(np.float32)
        self._pending = np.concatenate([self._pending, x16.astype(np.float32)])
        events: list[VadEvent] = []
        n = (self._pending.size - CONTEXT) // WINDOW
        for i in range(n):
            window = self._pending[i * WINDOW : i * WINDOW + CONTEXT + WINDOW]  # (576,)
            self.probability, self._state = self.model.step(window, self._state)
            start_ns = self._origin_ns + self._window_index * self.frame_ns
            self._window_index += 1
            self._in_speech = self.probability >= (self.neg_threshold if self._in_speech else self.threshold)
            level_db = 10 * np.log10(float(np.mean(window[CONTEXT:] ** 2)) + 1e-12)
            self._levels.append(level_db)
            speech = self._in_speech
            if self.floor_db is not None:
                speech = speech and level_db > self.floor_db
            if self.gate_db is not None:
                speech = speech and level_db > min(self._levels) + self.gate_db
            event = self._hangover.step(speech, start_ns, self.frame_ns)
            if event is not None:
                events.append(event)
        self._pending = self._pending[n * WINDOW :]
        return events


VAD_KINDS = ("silero", "energy")
VAD = EnergyVAD | SileroVAD  # either detector: process(samples, pts_ns) -> events, .speaking, .reset()
DEFAULT_VAD = "silero"


def make_vad(kind: str = DEFAULT_VAD, **kwargs: Any) -> EnergyVAD | SileroVAD:
    """A fresh streaming detector: ``"silero"`` (learned) or ``"energy"``.

    Both have ``process(samples, pts_ns) -> list[VadEvent]``, ``.speaking`` and the same
    ``min_speech_s`` / ``min_silence_s`` hangovers; keyword arguments go to the constructor.
    See docs/benchmarks.md "Ears: VAD and resampler" for how they compare.
    """
    if kind == "energy":
        return EnergyVAD(**kwargs)
    if kind == "silero":
        return SileroVAD(**kwargs)
    raise ValueError(f"unknown VAD kind {kind!r}; choose one of {', '.join(VAD_KINDS)}")
