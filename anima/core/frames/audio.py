"""Audio frames: the user's microphone, the agent's synthesised speech, and what was played."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from anima.core.frames.base import DataFrame, UninterruptibleFrame

SAMPLE_RATE = 24_000  # every audio stream inside anima is 24 kHz mono float32

SpeechEventKind = Literal["word", "phoneme", "sentence", "end"]


@dataclass(frozen=True)
class SpeechEvent:
    """A timed event in synthesised speech, relative to the start of its utterance.

    ``text`` is the word (kind "word"), the espeak phoneme mnemonic (kind "phoneme") or empty.
    ``char_start``/``char_len`` locate a word in the utterance text (0-based, characters).
    """

    kind: SpeechEventKind
    time_s: float
    text: str = ""
    char_start: int = -1
    char_len: int = 0


@dataclass
class UserAudioFrame(UninterruptibleFrame, DataFrame):
    """A chunk of the user's audio (microphone or script), 24 kHz mono float32. # (N,)"""

    samples: np.ndarray


@dataclass
class AgentAudioFrame(DataFrame):
    """A chunk of the agent's speech as produced by the Talker (not yet played).

    ``offset_s`` is where the chunk starts inside its utterance; ``events`` are the speech events
    whose ``time_s`` falls inside this chunk (utterance-relative times). ``final`` marks the last
    chunk of the utterance.
    """

    samples: np.ndarray  # (N,) float32 at 24 kHz
    turn_id: int
    offset_s: float
    events: tuple[SpeechEvent, ...] = ()
    text: str = ""
    final: bool = False


@dataclass
class PlayedAudioFrame(UninterruptibleFrame, DataFrame):
    """The agent audio played during one clock tick (silence when the agent is quiet).

    Emitted by the playout once per tick, so downstream stages (face, body, renderer, writer) see
    exactly what a listener heard, aligned to the media clock. ``scheduled_events`` are speech
    events newly scheduled in this tick, with the absolute media time (s) at which each will be
    heard: the lookahead lip sync and gesture beats need.
    """

    samples: np.ndarray  # (N,) float32
    turn_id: int | None = None
    scheduled_events: tuple[tuple[float, SpeechEvent], ...] = field(default=())
