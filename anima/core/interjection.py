"""The agent cuts in: while the user holds the floor, a policy may decide the agent speaks now.

Duplex goes both ways: a user who rambles past the character's patience, says something the
character knows to be false, or names something urgent to it, gets cut off the way a person would
do it. The turn-taking stage asks an ``Interjector`` on every tick of a user turn (with the partial
transcript so far and how long the user has held the floor); a reason back ends the user's turn
there, marked as cut by the agent, and the agent answers over the user's last words.

This module holds the interface and the policies that need nothing but the turn itself: the
patience budget and urgent words. A conversation file's script (``agent_interrupts_s``) is the
scripted user's (``ScriptedUser.interjector()``, keyed on its clips); the persona's budgets come
from the Thinker (``anima.thinker.interjector``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Interjector(Protocol):
    """Decides, during a user turn, whether the agent should cut in now."""

    def consider(self, partial: str, floor_s: float) -> str | None:
        """``partial``: the transcript so far; ``floor_s``: seconds since the user took the floor.

        Returns the reason to cut in (``"patience"``, ``"urgent: squid"``, ...) or None.
        """
        ...

    def reset(self) -> None:
        """A new user turn begins."""
        ...


_WORD = re.compile(r"[a-z']+")


@dataclass
class PatienceInterjector:
    """Cut in when the user has held the floor past ``patience_s``, or names one of ``urgent`` words.

    ``patience_s`` <= 0 or inf disables the budget. Urgent words are matched as whole lower-case words
    (or word sequences).
    """

    patience_s: float = float("inf")
    urgent: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.patience_s != self.patience_s:  # NaN
            raise ValueError("PatienceInterjector: patience_s must be a number of seconds, got NaN")
        self._urgent = [tuple(_WORD.findall(w.lower())) for w in self.urgent if _WORD.findall(w.lower())]

    def consider(self, partial: str, floor_s: float) -> str | None:
        words = _WORD.findall(partial.lower())
        for phrase in self._urgent:
            n = len(phrase)
            if any(tuple(words[i:i + n]) == phrase for i in range(len(words) - n + 1)):
                return "urgent: " + " ".join(phrase)
        if 0 < self.patience_s < float("inf") and floor_s >= self.patience_s:
            return "patience"
        return None

    def reset(self) -> None:
        pass


@dataclass
class AnyInterjector:
    """The first reason any of ``policies`` gives."""

    policies: Sequence[Interjector]

    def consider(self, partial: str, floor_s: float) -> str | None:
        for policy in self.policies:
            reason = policy.consider(partial, floor_s)
            if reason:
                return reason
        return None

    def reset(self) -> None:
        for policy in self.policies:
            policy.reset()
