"""The Thinker interface: a user utterance plus context in, an action plan out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from anima.core.history import Turn
from anima.core.plan import ActionPlan


@dataclass
class ThinkerContext:
    """What a thinker may use besides the utterance: the heard history and session state."""

    history: list[Turn] = field(default_factory=list)
    character: str | None = None
    story_time: int | None = None
    interjection: str = ""  # why the agent cut the user off mid-turn ("patience", "urgent: ..."), "" if it did not


class Thinker(Protocol):
    """Produces the plan for the agent's next turn. May block (LLM); the runtime runs it off-loop."""

    def respond(self, utterance: str, context: ThinkerContext) -> ActionPlan: ...
