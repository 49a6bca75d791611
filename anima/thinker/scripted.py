"""The scripted thinker: replies come from a conversation file, in order.

It is the embedded default for rendering conversations and for tests: deterministic, instant, and
it exercises the same interface a story-aware or LLM thinker implements.
"""

from __future__ import annotations

from collections.abc import Sequence

from anima.core.plan import ActionPlan
from anima.thinker.base import ThinkerContext


class ScriptExhaustedError(RuntimeError):
    """The user spoke more turns than the script has replies for."""


class ScriptedThinker:
    """Returns the next scripted plan for each user turn, whatever the user said."""

    def __init__(self, replies: Sequence[ActionPlan]) -> None:
        self._replies = list(replies)
        self._next = 0

    def respond(self, utterance: str, context: ThinkerContext) -> ActionPlan:
        if self._next >= len(self._replies):
            raise ScriptExhaustedError(
                f"the script has {len(self._replies)} agent replies but the user took turn {self._next + 1}"
            )
        plan = self._replies[self._next]
        self._next += 1
        return plan
