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
class PauseFrame(SystemFrame):
    """The user may be barging in (they started to make sound during the agent's turn): hold the output.

    Turn-taking sends it at the speech onset; the playout goes silent at once, keeping everything
    not yet played, and forwards it downstream with ``pts_ns`` = when the audio went silent (the
    face closes the mouth there). An ``InterruptionFrame`` (a real barge-in) or a ``ResumeFrame``
    (a cough, a noise, a backchannel: LiveKit Agents' false-interruption recovery) follows.
    """

    onset_pts_ns: int = 0


@dataclass
class ResumeFrame(SystemFrame):
    """Not a barge-in after all: the agent continues where it stopped.

    ``heard``: the user's words if the recogniser heard any (a backchannel such as "mm-hm"), "" for
    a noise. ``paused_s``: how long the agent was silent (the playout fills it in on the way down).
    """

    heard: str = ""
    onset_pts_ns: int = 0
    paused_s: float = 0.0


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
