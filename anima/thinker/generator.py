"""The generator responder: the offline Thinker, with the reply to a question written by a language model.

    thinker = StoryThinker.create("ned", story_time=20, responder="out/thinker/grpo/hf")

``EmbeddedResponder`` routes every turn (greetings, frame-breaking, taboos, "that has not happened
yet" at the story time) and voices one retrieved sentence as the answer. Here the routing stays,
and where it would answer a question from the world (``answer``, ``uncertain`` and ``own_line``
replies; a "I do not know" stays the rules': it is how the gate keeps the future unsaid), the facts
its retrieval found, in the character's own voice, go into the generator's prompt (``anima.thinker.model.responder_lm``) and the model writes the reply. Gated or
flat retrieval is the thinker's ``gate``: the four conditions of ``anima eval thinker --condition``
are these two switches. The model is any Hugging Face causal LM folder (the small one trained by
``anima.thinker.training.train_responder`` then ``grpo``, or a real chat model).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from anima.thinker.embedded import EmbeddedResponder, Reply
from anima.thinker.intent import Intent, focus_words
from anima.thinker.memory import ShortTermMemory
from anima.thinker.retrieval import Hit, Retrieved

WRITTEN = {"answer", "uncertain", "own_line"}  # reply kinds the generator writes
_MODELS: dict[str, tuple] = {}  # one loaded model per folder per process
_LOCK = threading.Lock()


def _load(path: str) -> tuple:
    from anima.thinker.model.responder_lm import load_responder

    with _LOCK:
        if path not in _MODELS:
            _MODELS[path] = load_responder(path)
        return _MODELS[path]


def voiced_facts(embedded: EmbeddedResponder, hits: list[Hit], focus: list[str], k: int) -> list[str]:
    """The first ``k`` distinct ``hits`` the character can say, in its own voice (``speak_fact``): the
    generator's prompt facts, at run time and in training."""
    out: list[str] = []
    for hit in hits:
        said = embedded.speak_fact(hit, focus)
        if said and said not in out:
            out.append(said)
        if len(out) >= k:
            break
    return out


class GeneratorResponder:
    """``EmbeddedResponder``'s routing; a language model writes the answers (see the module docstring)."""

    def __init__(self, embedded: EmbeddedResponder, model_path: str | Path, max_new_tokens: int = 64) -> None:
        self.embedded, self.persona = embedded, embedded.persona
        self.model_path = str(Path(model_path).resolve())
        self.max_new_tokens = max_new_tokens
        self.model, self.tokenizer = _load(self.model_path)
        self._lock = threading.Lock()  # generation is not re-entrant on one model

    def facts(self, intent: Intent, retrieved: Retrieved | None, reply: Reply, k: int = 3) -> list[str]:
        """Up to ``k`` facts for the prompt: what the routing used first, then the best retrieved, voiced by the character."""
        hits = [*reply.used, *(retrieved.descriptions if retrieved else []), *(retrieved.facts if retrieved else [])]
        return voiced_facts(self.embedded, hits, focus_words(intent.text, self.persona), k)

    def respond(self, intent: Intent, story_time: int, memory: ShortTermMemory, user_id: str, gate: bool = True,
                retrieved: Retrieved | None = None) -> Reply:
        from anima.thinker.model.responder_lm import format_prompt, generate

        reply = self.embedded.respond(intent, story_time, memory, user_id, gate, retrieved)
        if reply.kind not in WRITTEN or not intent.text:
            return reply
        facts = self.facts(intent, reply.retrieved, reply)
        prompt = format_prompt(self.persona.name, story_time, facts, intent.text)
        with self._lock:
            speech = generate(self.model, self.tokenizer, prompt, self.max_new_tokens)
        if not speech.strip():
            return reply
        plan = dataclasses.replace(reply.plan, speech=speech)
        return dataclasses.replace(reply, plan=plan)
