"""The Talker interface every TTS backend implements."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
