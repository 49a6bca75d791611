"""The Talker interface every TTS backend implements."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from anima.core.frames import SpeechEvent


@dataclass
class SpeechChunk:
    """A piece of streamed speech. ``offset_s``: start of the chunk within the utterance.

    ``events`` are the speech events whose ``time_s`` (utterance-relative) fall inside the chunk;
    the last chunk of an utterance has ``final`` set and carries the "end" event.
    """

    samples: np.ndarray  # (N,) float32, 24 kHz
    offset_s: float
    events: tuple[SpeechEvent, ...] = ()
    final: bool = False


CHUNK_SAMPLES = 960  # 40 ms at 24 kHz per streamed chunk


class ChunkCutter:
    """Cuts a growing stream of samples into ``CHUNK_SAMPLES`` chunks, each with the events timed inside it.

    Backends ``add`` audio (already at ``sample_rate``) and events (utterance time, any order) as
    they come; ``ready()`` yields every full chunk while holding back at least one sample, so the
    ``final()`` chunk is never empty. An event timed before the chunk it reaches us in is moved to
    that chunk's start; the final chunk carries everything left and the "end" event.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sr = sample_rate
        self.audio = np.zeros(0, np.float32)  # samples not yet sent, starting at `emitted`
        self.pending: list[SpeechEvent] = []  # events not yet sent, sorted by time (stable)
        self.emitted = 0  # samples already sent

    def add(self, samples: np.ndarray, events: Iterable[SpeechEvent] = ()) -> None:
        self.audio = np.concatenate([self.audio, samples.astype(np.float32, copy=False)])
        for e in events:
            bisect.insort_right(self.pending, e, key=lambda e: e.time_s)

    def _take(self, start: float, end: float, final: bool) -> tuple[SpeechEvent, ...]:
        pending = self.pending
        n = len(pending) if final else bisect.bisect_left(pending, end, key=lambda e: e.time_s)
        taken, self.pending = pending[:n], pending[n:]
        out = []
        for e in taken:  # clamped into [start, end)
            t = min(max(e.time_s, start), max(start, end - 1.0 / self.sr))
            out.append(e if t == e.time_s else SpeechEvent(e.kind, t, e.text, e.char_start, e.char_len))
        return tuple(out)

    def ready(self) -> Iterator[SpeechChunk]:
        """Every full chunk available now (at least one sample stays behind for the final chunk)."""
        while self.audio.size > CHUNK_SAMPLES:
            start, end = self.emitted / self.sr, (self.emitted + CHUNK_SAMPLES) / self.sr
            chunk = SpeechChunk(self.audio[:CHUNK_SAMPLES], start, self._take(start, end, False))
            self.audio, self.emitted = self.audio[CHUNK_SAMPLES:], self.emitted + CHUNK_SAMPLES
            yield chunk

    def final(self) -> SpeechChunk:
        """The rest of the audio, every event left, and the "end" event."""
        start, end = self.emitted / self.sr, (self.emitted + self.audio.size) / self.sr
        return SpeechChunk(self.audio, start, self._take(start, end, True) + (SpeechEvent("end", end),), final=True)


class TTS(Protocol):
    """A streaming text-to-speech backend at 24 kHz."""

    sample_rate: int

    def stream(
        self, text: str, *, voice: str | None = None, emotion: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[SpeechChunk]:
        """Yield the utterance chunk by chunk as it is synthesised; stop early when ``cancel`` is set.

        ``emotion`` is the plan's emotion (one of ``anima.core.plan.EMOTIONS``); a backend that cannot
        colour its voice ignores it.
        """
        ...
