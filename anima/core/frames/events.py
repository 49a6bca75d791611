"""System frames: interruptions, turn events and agent state. They jump queues and are never dropped."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from anima.core.frames.base import SystemFrame


class AgentState(enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass
class InterruptionFrame(SystemFrame):
    """The user barged in: everything interruptible downstream is flushed.

    ``onset_pts_ns`` is when the user's speech started (media time) - the reference for barge-in
    latency.
    """

    reason: str = "user barge-in"
    onset_pts_ns: int = 0


@dataclass
class UserStartedSpeakingFrame(SystemFrame):
    onset_pts_ns: int = 0


@dataclass
class UserStoppedSpeakingFrame(SystemFrame):
    end_pts_ns: int = 0


@dataclass
class AgentStartedSpeakingFrame(SystemFrame):
    turn_id: int = 0
    text: str = ""


@dataclass
class AgentStoppedSpeakingFrame(SystemFrame):
    """The agent's audio for ``turn_id`` stopped. ``heard_text`` is what the user actually heard."""

    turn_id: int = 0
    interrupted: bool = False
    heard_text: str = ""
    played_s: float = 0.0


@dataclass
class AgentStateFrame(SystemFrame):
    state: AgentState = AgentState.IDLE


@dataclass
class ErrorFrame(SystemFrame):
    """A stage failed. ``permanent`` errors end the session; others are logged and skipped."""

    message: str = ""
    stage: str = ""
    permanent: bool = False
