"""Text frames: what the user typed or said, the finished user turn, the Thinker's plan."""

from __future__ import annotations

from dataclasses import dataclass

from anima.core.frames.base import DataFrame, UninterruptibleFrame
from anima.core.plan import ActionPlan


@dataclass
class UserTextFrame(UninterruptibleFrame, DataFrame):
    """Text the user typed (live client) - content for the next user turn."""

    text: str


@dataclass
class UserTranscriptFrame(UninterruptibleFrame, DataFrame):
    """Speech recognition output (or the script's text for a scripted user turn)."""

    text: str
    final: bool = True


@dataclass
class UserTurnFrame(UninterruptibleFrame, DataFrame):
    """A finished user turn, ready for the Thinker. ``end_pts_ns``: end of the user's speech.

    ``cut_by_agent``: why the agent cut the user off mid-turn ("patience", "urgent: ...", "scripted"),
    "" when the user finished; ``text`` is then what was heard before the cut.
    """

    text: str
    end_pts_ns: int
    cut_by_agent: str = ""


@dataclass
class ThinkerPlanFrame(DataFrame):
    """The Thinker's plan for one agent turn (interruptible: a barge-in discards it)."""

    plan: ActionPlan
    turn_id: int
    user_end_pts_ns: int = -1  # end of the user speech this replies to (for reply latency)
