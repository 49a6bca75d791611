"""The character's own reasons to cut a visitor off: its patience and the words it cannot let pass.

``persona_interjector(persona)`` is the ``anima.core.interjection.Interjector`` the runtime asks on
every tick of a visitor's turn (``TurnTaking(interjector=...)``); the persona file's ``interrupts``
block sets it (Ned Land: 7 s, Conseil: 25 s). When it fires, the Thinker's context carries the
reason (``ThinkerContext.interjection``) and the reply opens with one of the persona's ``cut_in``
phrases. Not here yet: cutting in on a claim that contradicts the world at the story time.
"""

from __future__ import annotations

from anima.core.interjection import PatienceInterjector
from anima.thinker.persona import Persona


def persona_interjector(persona: Persona) -> PatienceInterjector:
    """The patience budget and urgent words of ``persona``."""
    return PatienceInterjector(patience_s=persona.interrupts.patience_s, urgent=persona.interrupts.urgent)


def cut_in_opener(persona: Persona, reason: str, turn: int = 0) -> str:
    """How ``persona`` opens a reply that cuts the visitor off (rotating through its phrases)."""
    phrases = persona.interrupts.cut_in or ("Forgive me,",)
    return phrases[turn % len(phrases)] if reason else ""
