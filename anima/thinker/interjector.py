"""The character's own reasons to cut a visitor off: its patience, the words it cannot let pass, and
claims that contradict what it knows of its world.

``character_interjector(persona, canon, story_time)`` is the ``anima.core.interjection.Interjector``
the runtime asks on every tick of a visitor's turn (``TurnTaking(interjector=...)``): the persona
file's ``interrupts`` block sets the patience budget and urgent words (Ned Land: 7 s, Conseil: 25 s);
the world's canon (``anima.thinker.claims``) catches a false statement about the world at the story
time, and with a language model in the Thinker's slot, ``anima.thinker.claims_llm`` checks claims
about events against the facts known then. ``thinker_interjector(thinker)`` builds it for a live ``StoryThinker``, following its story time.
When it fires, the Thinker's context carries the reason (``ThinkerContext.interjection``) and the
reply opens with one of the persona's ``cut_in`` phrases; on a false claim the reply is the correction.
"""

from __future__ import annotations

from collections.abc import Callable

from anima.core.interjection import AnyInterjector, Interjector, PatienceInterjector
from anima.thinker.claims import FALSE_CLAIM, Canon, ClaimChecker, ClaimInterjector, canon_for_world
from anima.thinker.persona import Persona


def persona_interjector(persona: Persona) -> PatienceInterjector:
    """The patience budget and urgent words of ``persona``."""
    return PatienceInterjector(patience_s=persona.interrupts.patience_s, urgent=persona.interrupts.urgent)


def character_interjector(persona: Persona, canon: Canon | None = None,
                          story_time: Callable[[], int] | int | None = None) -> Interjector:
    """Patience and urgent words, then (with a ``canon`` and a story time) false claims about the world."""
    patience = persona_interjector(persona)
    if canon is None or story_time is None:
        return patience
    now = story_time if callable(story_time) else (lambda: int(story_time))
    claims = ClaimInterjector(ClaimChecker(canon), persona.key, now)
    return AnyInterjector([patience, claims])


def thinker_interjector(thinker) -> Interjector:
    """``character_interjector`` for a ``StoryThinker``: its persona, its world's canon, its current story time;
    with a language model in its slot, also claims about events checked by the model (``claims_llm``)."""
    world = getattr(thinker, "world", None)
    canon = canon_for_world(world.path) if world is not None else None
    policy = character_interjector(thinker.persona, canon, lambda: thinker.story_time)
    llm = getattr(thinker, "llm", None)
    if llm is None:
        return policy
    from anima.thinker.claims_llm import LLMClaimInterjector

    events = LLMClaimInterjector(llm.client, thinker.retriever, thinker.persona, lambda: thinker.story_time)
    return AnyInterjector([*(policy.policies if isinstance(policy, AnyInterjector) else [policy]), events])


def cut_in_opener(persona: Persona, reason: str, turn: int = 0) -> str:
    """How ``persona`` opens a reply that cuts the visitor off (rotating through its phrases)."""
    phrases = persona.interrupts.cut_in or ("Forgive me,",)
    return phrases[turn % len(phrases)] if reason else ""


def cut_in_reply(persona: Persona, reason: str, reply: str, turn: int = 0) -> str:
    """The speech of a reply that cut the visitor off: the opener, then the correction of a false claim
    (``reason`` from ``anima.thinker.claims``) or else the reply the Thinker would have given."""
    opener = cut_in_opener(persona, reason, turn)
    said = reason[len(FALSE_CLAIM):] if reason.startswith(FALSE_CLAIM) else reply
    return f"{opener} {said}".strip()
