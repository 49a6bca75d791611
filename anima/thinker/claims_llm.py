"""False claims about events, checked by a language model against the world at the story time.

    policy = LLMClaimInterjector(ChatClient(config), retriever, persona, story_time=lambda: thinker.story_time)
    turns = TurnTaking(interjector=AnyInterjector([patience, canon_claims, policy]))

The canon (``anima.thinker.claims``) checks claims with a closed set of alternatives; a claim about
an event ("you were the one who saved the captain") needs entailment against the world's sentences,
which only a language model does here. While the visitor speaks, each time the transcript has grown
by a few words the policy retrieves the facts the character knows at the story time (gated) and asks
the OpenAI-compatible slot, in a background thread, whether the words state something those facts
contradict; the runtime's tick never waits. The latest answer for the current turn is what
``consider`` reports: ``"false claim: <the character's correction>"``, the same reason the canon
gives, so the story thinker answers with the correction. A server that is down, slow or answers
badly means no cut-in (logged), never an error in the turn.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from anima.thinker.claims import FALSE_CLAIM
from anima.thinker.llm import ChatClient, LLMError
from anima.thinker.persona import Persona

log = logging.getLogger(__name__)

SYSTEM = ("You check what a visitor is saying to {name}, a character of a novel, against what {name} knows at "
          "chapter {t} of the story (the facts below). Answer only JSON: "
          '{{"contradicts": true or false, "correction": "..."}}. "contradicts" is true only if the visitor states '
          "as fact something the facts clearly contradict; a question, an opinion, a guess, or anything the facts "
          "do not cover is not a contradiction. The correction is one short sentence in {name}'s own voice, "
          "first person, saying what is true.")


def parse_verdict(text: str) -> str | None:
    """The correction if ``text`` (the model's reply) says the visitor contradicted the facts, else None."""
    match = re.search(r"\{.*\}", text or "", re.S)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("contradicts") is not True:
        return None
    correction = data.get("correction")
    if not isinstance(correction, str) or not correction.strip():
        return None
    return " ".join(correction.split())[:300]


class LLMClaimInterjector:
    """An ``anima.core.interjection.Interjector``: cut in when the language model finds a false claim."""

    def __init__(self, client: ChatClient, retriever, persona: Persona, story_time: Callable[[], int],
                 min_words: int = 6, every_words: int = 3, k_facts: int = 8) -> None:
        self.client, self.retriever, self.persona, self.story_time = client, retriever, persona, story_time
        self.min_words, self.every_words, self.k_facts = min_words, every_words, k_facts
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="claims-llm")
        self._lock = threading.Lock()
        self._turn = 0  # bumped by reset(): an answer for an earlier turn is dropped
        self._asked_words = 0
        self._busy = False
        self._correction: str | None = None

    def consider(self, partial: str, floor_s: float) -> str | None:
        with self._lock:
            if self._correction:
                return FALSE_CLAIM + self._correction
            words = len(partial.split())
            if self._busy or words < self.min_words or words < self._asked_words + self.every_words:
                return None
            self._busy, self._asked_words, turn = True, words, self._turn
        self._pool.submit(self._check, partial, turn)
        return None

    def reset(self) -> None:
        with self._lock:
            self._turn += 1
            self._asked_words, self._correction = 0, None

    def messages(self, partial: str, story_time: int) -> list[dict]:
        """The chat the slot gets: the rule, the gated facts, the visitor's words."""
        retrieved = self.retriever.retrieve(partial, story_time, k_facts=self.k_facts, speaker=self.persona.entity)
        facts = [h.text for h in [*retrieved.descriptions, *retrieved.facts] if h.origin != "session"][: self.k_facts]
        facts_text = "\n".join(f"- {f}" for f in facts) or "- (nothing relevant)"
        return [{"role": "system", "content": SYSTEM.format(name=self.persona.name, t=story_time)},
                {"role": "user", "content": f"Facts {self.persona.name} knows:\n{facts_text}\n\nVisitor: \"{partial}\""}]

    def _check(self, partial: str, turn: int) -> None:
        correction = None
        try:
            correction = parse_verdict(self.client.complete(self.messages(partial, int(self.story_time()))))
        except (LLMError, OSError, ValueError) as exc:
            log.info("claim check skipped: %s", exc)
        except Exception:  # never let a check take the turn down
            log.exception("claim check failed")
        with self._lock:
            self._busy = False
            if turn == self._turn and correction:
                self._correction = correction

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
