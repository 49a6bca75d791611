"""Voice activity detection from energy and spectrum, streaming, no model weights.

Each 20 ms frame is voiced when its level is well above the noise floor (the quietest frame of the
last 1.5 s: minimum statistics, so a steady noise of any level is learnt within 1.5 s) and above an
absolute floor, and most of its energy lies in the speech band (100 Hz - 8 kHz, which keeps fricative onsets such as "s"). Speech starts after
``min_speech_s`` of consecutive voiced frames (the onset is stamped at the first of them) and ends
after ``min_silence_s`` of unvoiced frames (stamped at the end of the last voiced frame).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from anima.core.frames import NS_PER_S, SAMPLE_RATE


@dataclass(frozen=True)
class VadEvent:
    kind: str  # "start" or "end"
    pts_ns: int


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

    def reset(self) -> None:
        self.speaking = False
        self.noise_db = -70.0
        self._levels: deque[float] = deque(maxlen=self._floor_frames)
        self._pending = np.zeros(0, dtype=np.float32)
        self._pending_pts_ns = 0
        self._voiced_run = 0
        self._silent_run = 0
        self._run_start_ns = 0
        self._last_voiced_end_ns = 0

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
            if self.is_voiced(frame):
                if self._voiced_run == 0:
                    self._run_start_ns = start_ns
                self._voiced_run += 1
                self._silent_run = 0
                self._last_voiced_end_ns = start_ns + self.frame_ns
                if not self.speaking and self._voiced_run >= self.min_speech_frames:
                    self.speaking = True
                    events.append(VadEvent("start", self._run_start_ns))
            else:
                self._voiced_run = 0
                self._silent_run += 1
                if self.speaking and self._silent_run >= self.min_silence_frames:
                    self.speaking = False
                    events.append(VadEvent("end", self._last_voiced_end_ns))
        consumed = n_frames * self.frame_len
        self._pending = self._pending[consumed:]
        self._pending_pts_ns += n_frames * self.frame_ns
        return events


VAD_KINDS = ("silero", "energy")
DEFAULT_VAD = "energy"


def make_vad(kind: str = DEFAULT_VAD, **kwargs: object) -> EnergyVAD:
    """A fresh streaming detector: ``"silero"`` (learned, anima.core.vad_silero) or ``"energy"`` (this module).

    Both have ``process(samples, pts_ns) -> list[VadEvent]``, ``.speaking`` and the same
    ``min_speech_s`` / ``min_silence_s`` hangovers; keyword arguments go to the constructor.
    See docs/benchmarks.md "Ears: VAD and resampler" for how they compare.
    """
    if kind == "energy":
        return EnergyVAD(**kwargs)  # type: ignore[arg-type]
    if kind == "silero":
        from anima.core.vad_silero import SileroVAD  # lazy: loads onnxruntime

        return SileroVAD(**kwargs)  # type: ignore[arg-type, return-value]
    raise ValueError(f"unknown VAD kind {kind!r}; choose one of {', '.join(VAD_KINDS)}")
