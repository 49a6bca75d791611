"""The story thinker: a character of the novel, at a story time, with memory, behind the gate.

    thinker = StoryThinker.create(character="nemo", story_time=12)          # shipped world, offline
    plan = thinker.respond("Who are you?", ThinkerContext(history=[...]))

    # a live server: one memory per visitor (a random id the client keeps), never shared
    thinker = StoryThinker.create("nemo", visitor=visitor_id, retention=Retention(max_turns=500))
    thinker.forget()                         # the "forget me" button: this visitor's data deleted
    forget_visitor(visitor_id, world=None)   # the same without a live thinker

    # with a chat model (llama.cpp, vLLM, Ollama, OpenAI): set these, or pass llm=LLMConfig(...)
    ANIMA_LLM_URL=http://localhost:8080/v1 ANIMA_LLM_MODEL=qwen2.5 anima render ... --thinker story

Per turn: the heard history goes into the short-term memory; the utterance is read (intent); the
embedded responder (default) or the LLM responder answers from the gated retrieval; the turn, the
session state and anything the visitor said about themselves are written to the world database in
one transaction. A failure anywhere gives an in-character fallback line, never an exception into
the runtime. ``respond`` is thread-safe (one turn at a time per thinker).

Sessions write to the user copy of a shipped world (``World.open_memory``), never to the shipped
file; a world path of the caller's own is written as is.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from anima.core.plan import ActionPlan
from anima.thinker.base import ThinkerContext
from anima.thinker.embedded import EmbeddedResponder, Reply
from anima.thinker.generator import GeneratorResponder
from anima.thinker.intent import Intent, read_intent
from anima.thinker.interjector import cut_in_reply
from anima.thinker.llm import ChatClient, LLMConfig
from anima.thinker.llm_responder import LLMResponder
from anima.thinker.memory import (
    Forgotten,
    Retention,
    SessionStore,
    ShortTermMemory,
    check_user_id,
    check_visitor_id,
    forget,
)
from anima.thinker.persona import Persona, load_persona
from anima.thinker.retrieval import Retriever, shared_retriever
from anima.thinker.world import World

log = logging.getLogger(__name__)

MIN_VOCABULARY = 5000  # words; below this the "word the novel never uses" signal is off
LOCAL_USER = "default"  # the user of a local run (CLI render) when neither a visitor nor ANIMA_USER is given


def llm_config_from_env() -> LLMConfig | None:
    """``ANIMA_LLM_URL`` (+ ``ANIMA_LLM_MODEL``, ``ANIMA_LLM_API_KEY``, ``ANIMA_LLM_TIMEOUT_S``), or None."""
    url = os.environ.get("ANIMA_LLM_URL")
    if not url:
        return None
    return LLMConfig(base_url=url, model=os.environ.get("ANIMA_LLM_MODEL", "default"),
                     api_key=os.environ.get("ANIMA_LLM_API_KEY") or None,
                     timeout_s=float(os.environ.get("ANIMA_LLM_TIMEOUT_S", "20")))


def check_story_time(story_time: object, chapters: int) -> int:
    """The story time as an int in 1..chapters, or a ValueError that says the valid range."""
    if isinstance(story_time, bool) or not isinstance(story_time, int):
        raise ValueError(f"story time must be a chapter number 1..{chapters}, got {story_time!r}")
    if not 1 <= story_time <= chapters:
        raise ValueError(f"story time {story_time} is outside the story: chapters run 1..{chapters}")
    return story_time


def forget_visitor(visitor: str, world: str | Path | World | None = None) -> Forgotten:
    """Delete one visitor's memory (sessions, turns, facts, user node) from the world sessions write
    to (``world`` as given to ``StoryThinker.create``), here and in this process's retrievers."""
    check_visitor_id(visitor)
    if isinstance(world, World):
        return forget(world, visitor)
    with World.open_memory(world) as opened:
        return forget(opened, visitor)


@dataclass
class TurnTrace:
    """What the last turn did (for tests, the evaluation and debugging)."""

    intent: Intent
    reply: Reply
    story_time: int
    fallback_reason: str | None = None


class StoryThinker:
    """A ``Thinker`` for a character of the novel at a story time (see the module docstring)."""

    def __init__(self, world: World, persona: Persona, story_time: int, retriever: Retriever,
                 llm: LLMConfig | None = None, user_id: str = LOCAL_USER, remember: bool = True, gate: bool = True,
                 memory_budget_tokens: int = 600, retention: Retention | None = None,
                 responder: str | Path | None = None) -> None:
        self.world, self.persona, self.retriever = world, persona, retriever
        self.story_time = check_story_time(story_time, world.chapters)
        self.user_id, self.gate = user_id, gate
        self.memory = ShortTermMemory(budget_tokens=memory_budget_tokens, goals=list(persona.goals[:2]))
        self.embedded = EmbeddedResponder(retriever, persona)
        # A language model writing the answers (anima.thinker.generator), or None: the embedded responder's own.
        self.generator = GeneratorResponder(self.embedded, responder) if responder else None
        self.llm = LLMResponder(ChatClient(llm), retriever, persona, self.embedded) if llm else None
        self.session = SessionStore(world, retriever, retriever.embedder, user_id, persona.key, self.story_time, remember,
                                    retention)
        self.last: TurnTrace | None = None
        self._lock = threading.Lock()

    @classmethod
    def create(cls, character: str = "nemo", story_time: int | None = None, world: str | Path | World | None = None,
               user_id: str | None = None, remember: bool = True, gate: bool = True,
               llm: LLMConfig | None = None, visitor: str | None = None,
               retention: Retention | None = None, responder: str | Path | None = None) -> StoryThinker:
        """A thinker for ``character`` (nemo, aronnax, conseil, ned) at ``story_time`` (chapter 1..47;
        default: where this user's last session with the character left off, else the persona's
        default). ``world``: a world file (default: the shipped one; sessions then write to the
        user copy, never to the shipped file). The LLM backend comes from ``llm`` or the ANIMA_LLM_*
        environment; without one the offline responder answers (``responder``: a language model folder,
        ``anima.thinker.generator``, writes its answers).

        Whose memory: ``visitor``, a live visitor's id (8-64 characters of ``[A-Za-z0-9_-]``, a
        random id the client keeps; a new id starts empty), else ``user_id`` (a local user), else
        $ANIMA_USER, else the local user "default". A server must pass ``visitor``. ``retention``
        bounds what is kept (default ``Retention()``: 500 turns a user, 90 days).

        Raises ValueError (PersonaError, WorldError) with a clear message on bad arguments."""
        persona = load_persona(character)
        if visitor is not None:
            if user_id is not None:
                raise ValueError("give a visitor id or a user id, not both")
            user = check_visitor_id(visitor)
        else:
            user = check_user_id(user_id or os.environ.get("ANIMA_USER") or LOCAL_USER)
        if isinstance(world, World):
            opened = world
        elif not remember:
            opened = World.open_default(readonly=True) if world is None else World.open(Path(world), readonly=True)
        else:
            opened = World.open_memory(None if world is None else Path(world))
        if story_time is None:
            story_time = SessionStore.last_story_time(opened, user, persona.key) or persona.default_story_time
            story_time = min(max(1, story_time), opened.chapters)
        check_story_time(story_time, opened.chapters)
        return cls(opened, persona, story_time, shared_retriever(opened), llm or llm_config_from_env(), user,
                   remember, gate, retention=retention, responder=responder)

    def _in_novel(self, word: str) -> bool:
        """Whether the novel uses ``word`` at all. A small world's vocabulary (a toy novel) is no
        evidence that a word belongs to another world, so there every word counts as known."""
        if len(self.retriever.vocab) < MIN_VOCABULARY:
            return True
        return self.retriever.known_word(word, None, gate=False)

    def set_story_time(self, story_time: int) -> None:
        """Move the character's narrative present (saved with the session)."""
        with self._lock:
            self.story_time = check_story_time(story_time, self.world.chapters)
            self.session.set_story_time(self.story_time)

    def respond(self, utterance: str, context: ThinkerContext | None = None) -> ActionPlan:
        context = context or ThinkerContext()
        with self._lock:
            story_time = self.story_time
            if context.story_time is not None and context.story_time != story_time:
                try:
                    story_time = check_story_time(context.story_time, self.world.chapters)
                except ValueError as exc:
                    log.warning("ignoring the context's story time: %s", exc)
            intent = Intent("empty", "")
            try:
                self.memory.sync(list(context.history))
                intent = read_intent(utterance, self.persona, self._in_novel)
                fallback = None
                if self.llm is not None:
                    answer = self.llm.respond(intent, story_time, self.memory, self.user_id, self.gate)
                    reply, fallback = answer.reply, answer.fallback_reason
                else:
                    offline = self.generator or self.embedded
                    reply = offline.respond(intent, story_time, self.memory, self.user_id, self.gate)
            except Exception:  # the runtime must get a reply; say something in character and log why
                log.exception("story thinker failed on %r", utterance[:80] if isinstance(utterance, str) else utterance)
                reply = self.embedded._plan("unknown", self.persona.replies["unknown"][0])
                fallback = "internal error"
            if context.interjection and reply.plan.speech:  # the character cut the visitor off: it says so (and why)
                speech = cut_in_reply(self.persona, context.interjection, reply.plan.speech, len(context.history))
                reply = dataclasses.replace(reply, plan=dataclasses.replace(reply.plan, speech=speech))
            if intent.kind == "question" and intent.text:
                self.memory.set_goal(f"answer the visitor: {intent.text[:80]}")
            self.last = TurnTrace(intent, reply, story_time, fallback)
            try:
                self.session.record_turn(intent.text, reply.plan.speech, intent.self_facts, self.memory.summary,
                                         self.memory.goals)
            except Exception:  # memory is best-effort: the reply still goes out
                log.exception("could not save the session turn")
            return reply.plan

    def forget(self) -> Forgotten:
        """Delete this thinker's user's memory (every session, turn and fact, with any character);
        the conversation goes on, remembered no more."""
        with self._lock:
            self.memory = ShortTermMemory(budget_tokens=self.memory.budget_tokens, goals=list(self.persona.goals[:2]))
            return self.session.forget()

    def close(self) -> None:
        self.world.close()
