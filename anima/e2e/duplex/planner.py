"""The asynchronous planner (paper 5.2): beside the decoder G, a slower thinker writes G's control
signals, the text prompt and the trajectory for the next 3 s, from the conversation so far.

    planner = StoryPlanner(StoryThinker.create("nemo", remember=False))   # offline default
    planner = LLMPlanner(LLMConfig(base_url="http://localhost:8080/v1"), fallback=planner)
    loop = PlannerLoop(planner, on_plan=use_plan, character="nemo")
    loop.start()                                   # inside the running event loop
    loop.observe(now_s, user_speaking=True)        # every tick: media time and who speaks
    loop.heard("Who are you?", now_s=now_s)        # the recogniser's final text of a user turn
    await loop.stop()

The paper's chain of thought has three stages: *description* (who is there, who speaks, what was
said), *analysis* (what the user's behaviour means for the agent) and *planning* (the agent's next
behaviour as a text prompt and a trajectory). ``LLMPlanner`` asks the Thinker's OpenAI-compatible
chat model for all three in one JSON answer; ``StoryPlanner`` does them offline, with the story
thinker's plan for the user's last utterance as the analysis.

The prompts G was trained on are the dialogue corpus's (docs/dialogues.md): ``LISTEN_PROMPT`` while
the agent listens, ``prompt_sentence(emotion, gesture)`` of the thinker's plan from the end of a user
turn until the agent's answer ends. The StoryPlanner writes exactly those, so G stays in its training
distribution. Trajectories are joint velocities in m/s at 25 fps, as the corpus's ``joint_vel``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from anima.body.text import EMOTION_WORDS, LISTEN_PROMPT, prompt_sentence
from anima.core.history import Turn
from anima.core.plan import EMOTIONS, GESTURES, ActionPlan
from anima.thinker.base import Thinker, ThinkerContext
from anima.thinker.llm import ChatClient, LLMConfig, LLMError

log = logging.getLogger(__name__)

HORIZON_S = 3.0  # a plan covers the next 3 s (paper 5.2)
FPS = 25  # trajectory frames per second (the corpus's joint_vel)
NUM_JOINTS = 22
MAX_ROOT_SPEED = 2.0  # m/s; a trajectory faster than a brisk walk is a bad answer, not a plan
MAX_PROMPT_CHARS = 300
TRANSCRIPT_TURNS = 12  # the last utterances the LLM sees


class Utterance(NamedTuple):
    """One finished utterance of the transcript. Times are media seconds."""

    speaker: str  # "user" or "agent"
    text: str  # "" when nothing was recognised (the agent's own speech is not transcribed)
    start_s: float
    end_s: float


@dataclass
class PlannerContext:
    """What a planner sees: the transcript so far and the present moment."""

    transcript: list[Utterance] = field(default_factory=list)
    user_speaking: bool = False
    agent_speaking: bool = False
    now_s: float = 0.0  # media time
    since_s: float = 0.0  # media time at which the speaking flags took their present values
    character: str | None = None  # the character key (nemo, aronnax, ...), None if unknown


@dataclass
class Plan:
    """G's controls for the next ``HORIZON_S`` seconds from ``made_at_s``, and how they were reached."""

    prompt: str  # the text prompt (embedded by the stage into DuplexAgent.prompt)
    trajectory: np.ndarray | None  # (frames, 22, 3) joint velocities in m/s at 25 fps, or None = empty
    description: str  # chain-of-thought stage 1
    analysis: str  # chain-of-thought stage 2 (kept for logs and the UI)
    made_at_s: float  # media time of the context it was planned from

    def step_trajectory(self, t_s: float, frames_per_step: int = 2) -> np.ndarray | None:
        """The trajectory control of G's step starting at media time ``t_s``: (frames_per_step * 66,),
        or None (the empty token) when there is no trajectory or ``t_s`` is outside the plan."""
        if self.trajectory is None:
            return None
        start = round((t_s - self.made_at_s) * FPS)
        if start < 0 or start + frames_per_step > self.trajectory.shape[0]:
            return None
        return self.trajectory[start:start + frames_per_step].reshape(-1).astype(np.float32)


class Planner(Protocol):
    """Writes the plan for the next seconds. May block (a chat model); PlannerLoop runs it off-loop."""

    def plan(self, context: PlannerContext) -> Plan: ...


# -- the offline planner -------------------------------------------------------------------------
_GREETINGS = ("hello", "hi", "hey", "good morning", "good evening", "good afternoon", "greetings")
_FAREWELLS = ("bye", "goodbye", "farewell", "see you", "good night")
_THANKS = ("thank", "thanks")
_QUESTION_WORDS = ("who", "what", "where", "when", "why", "how", "which", "do", "does", "did", "is", "are", "can",
                   "could", "would", "will", "have", "has")
_KIND_WORDS = {"question": "asks something", "greeting": "greets the agent", "farewell": "is leaving",
               "thanks": "thanks the agent", "ask_user": "asks about the agent's view", "self": "talks about themselves",
               "identity": "asks who the agent is", "more": "asks for more", "statement": "makes a remark",
               "empty": "said nothing recognisable", "out_of_world": "talks about something outside the story",
               "taboo": "touches a forbidden subject", "jailbreak": "tries to break the character",
               "ai": "asks whether the agent is a machine"}


def read_kind(text: str) -> str:
    """A cheap reading of an utterance (question, greeting, farewell, thanks, statement, empty), for
    thinkers that do not report their own intent."""
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        return "empty"
    joined = " ".join(words)
    if any(joined.startswith(g) for g in _FAREWELLS) or any(f" {f}" in f" {joined}" for f in ("goodbye", "bye")):
        return "farewell"
    if any(joined == g or joined.startswith(g + " ") for g in _GREETINGS):
        return "greeting"
    if any(words[0].startswith(t) for t in _THANKS):
        return "thanks"
    if text.rstrip().endswith("?") or words[0] in _QUESTION_WORDS:
        return "question"
    return "statement"


def _last(transcript: list[Utterance], speaker: str) -> Utterance | None:
    return next((u for u in reversed(transcript) if u.speaker == speaker), None)


def describe(context: PlannerContext) -> str:
    """Chain-of-thought stage 1 from the context alone: who speaks, for how long, what was said last."""
    agent = context.character or "the agent"
    lasting = max(0.0, context.now_s - context.since_s)
    if context.user_speaking and context.agent_speaking:
        now = f"the user and {agent} both speak (for {lasting:.1f} s)"
    elif context.user_speaking:
        now = f"the user has been speaking for {lasting:.1f} s while {agent} listens"
    elif context.agent_speaking:
        now = f"{agent} has been speaking for {lasting:.1f} s"
    else:
        now = f"nobody has spoken for {lasting:.1f} s"
    said = [u for u in context.transcript if u.text]
    if not said:
        return f"t={context.now_s:.1f} s: {now}; nothing has been said yet."
    last = said[-1]
    who = "the user" if last.speaker == "user" else agent
    ago = max(0.0, context.now_s - last.end_s)
    return f"t={context.now_s:.1f} s: {now}; {who} last said {ago:.1f} s ago: {last.text!r}."


class StoryPlanner:
    """The offline planner: the corpus's prompts, from the story thinker's plan for the user's last turn.

    ``thinker``: any ``Thinker`` (``StoryThinker.create(character, remember=False)`` in the runtime,
    so the planner's calls are not written to the visitor's memory; a fake in tests). It is called
    once per finished user utterance (cached), only for utterances with text.

    The trajectory is always None: the corpus's trajectories are the cascade body's own motion, so
    a trajectory invented here would be out of G's training distribution; the slot is left empty
    (G was trained with it dropped half the time) for a planner that can predict one.
    """

    def __init__(self, thinker: Thinker) -> None:
        self.thinker = thinker
        self.thinker_calls = 0
        self._plans: dict[Utterance, tuple[ActionPlan, str]] = {}  # user utterance -> (plan, intent kind)
        self._lock = threading.Lock()  # plan() is called from worker threads

    def answer(self, utterance: Utterance, context: PlannerContext) -> tuple[ActionPlan, str]:
        """The thinker's plan for ``utterance`` and its intent kind (computed once per utterance)."""
        with self._lock:
            cached = self._plans.get(utterance)
            if cached is not None:
                return cached
            index = context.transcript.index(utterance) if utterance in context.transcript else len(context.transcript)
            history = [Turn(u.speaker, u.text) for u in context.transcript[:index] if u.text]
            self.thinker_calls += 1
            try:
                plan = self.thinker.respond(utterance.text, ThinkerContext(history=history, character=context.character))
            except Exception:  # the planner must go on: a calm beat is in the corpus's distribution
                log.exception("planner: thinker failed on %r", utterance.text[:80])
                plan = ActionPlan(speech="", emotion="neutral", gesture="beat")
            last = getattr(self.thinker, "last", None)  # StoryThinker keeps its reading of the turn
            kind = getattr(getattr(last, "intent", None), "kind", None) or read_kind(utterance.text)
            self._plans[utterance] = (plan, kind)
            return plan, kind

    def plan(self, context: PlannerContext) -> Plan:
        """LISTEN_PROMPT while listening; the answer's prompt_sentence from a user turn's end until the
        agent's answer ends (as in the corpus, also while the user talks over the answer)."""
        user = _last([u for u in context.transcript if u.text], "user")
        agent = _last(context.transcript, "agent")
        answered = user is not None and agent is not None and agent.end_s > user.end_s
        analysis = "The user has not said anything yet; the agent listens."
        prompt = LISTEN_PROMPT
        if user is not None:
            plan, kind = self.answer(user, context)
            reply = f"; the agent answers {plan.emotion}, gesture {plan.gesture}: {plan.speech[:120]!r}" if plan.speech else ""
            analysis = f"The user {_KIND_WORDS.get(kind, kind)} ({user.text[:80]!r}){reply}."
            if context.agent_speaking or (not context.user_speaking and not answered):
                prompt = prompt_sentence(plan.emotion, plan.gesture)
            elif context.user_speaking:
                analysis += " The user speaks again: the agent listens."
            else:
                analysis += " The answer is over: the agent listens."
        elif context.agent_speaking:  # speaking before anyone asked: a calm beat, the corpus's default answer
            prompt = prompt_sentence("neutral", "beat")
        return Plan(prompt=prompt, trajectory=None, description=describe(context), analysis=analysis,
                    made_at_s=context.now_s)


# -- the chat-model planner ----------------------------------------------------------------------
class PlanParseError(ValueError):
    """A chat model's answer is not the planner's JSON."""


def _prompt_vocabulary() -> str:
    from anima.body.text import prompt_for_gesture

    gestures = "; ".join(sorted({prompt_for_gesture(g) for g in GESTURES}))
    adverbs = ", ".join(sorted({EMOTION_WORDS.get(e, e) for e in EMOTIONS}))
    return (f'While the agent listens the prompt is exactly "{LISTEN_PROMPT}". While it speaks the prompt is '
            f'"<gesture> while speaking <manner>" with <gesture> one of: {gestures}; and <manner> one of: {adverbs}.')


SYSTEM_PROMPT = """You plan the body language of {agent}, a character in a live spoken conversation with a user.
A motion generator animates the character; every few seconds you write its controls for the next {horizon:.0f} seconds.
Think in three stages:
1. description: who is there, who is speaking now and for how long, what was said last.
2. analysis: what the user is doing (asking, greeting, leaving, interrupting...) and what it means for the character.
3. planning: the character's behaviour for the next {horizon:.0f} seconds as a motion prompt, and a trajectory.
{vocabulary}
The trajectory is null (the character stays where it is: the usual answer) or a list of [dx, dz] pairs: the
character's displacement in metres on the floor over equal parts of the next {horizon:.0f} seconds (x right, z forward).
Answer with one JSON object and nothing else:
{{"description": "...", "analysis": "...", "prompt": "...", "trajectory": null}}"""


def trajectory_from_root(points: Any, horizon_s: float = HORIZON_S, fps: int = FPS) -> np.ndarray:
    """(N, 2) floor displacements [dx, dz] in metres over N equal parts of ``horizon_s`` -> (frames, 22, 3)
    joint velocities in m/s (the whole body moves with the root; no vertical motion).

    Raises PlanParseError naming what is wrong: not a list of pairs of finite numbers, too many
    parts (more than one per frame), or faster than ``MAX_ROOT_SPEED``."""
    frames = round(horizon_s * fps)
    if not isinstance(points, list) or not points:
        raise PlanParseError(f"trajectory must be null or a non-empty list of [dx, dz] pairs, got {str(points)[:60]}")
    if len(points) > frames:
        raise PlanParseError(f"trajectory has {len(points)} parts, more than the {frames} frames of {horizon_s:g} s")
    for p in points:
        if (not isinstance(p, list) or len(p) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in p)):
            raise PlanParseError(f"trajectory entries must be [dx, dz] pairs of numbers, got {str(p)[:60]}")
    displacement = np.asarray(points, np.float64)  # (N, 2) metres per part
    velocity = displacement * len(points) / horizon_s  # (N, 2) m/s
    speed = float(np.linalg.norm(velocity, axis=1).max())
    if speed > MAX_ROOT_SPEED:
        raise PlanParseError(f"trajectory moves at {speed:.1f} m/s, faster than {MAX_ROOT_SPEED:g} m/s")
    part = np.minimum((np.arange(frames) * len(points)) // frames, len(points) - 1)  # (frames,) part of each frame
    out = np.zeros((frames, NUM_JOINTS, 3), np.float32)
    out[:, :, 0] = velocity[part, 0][:, None]
    out[:, :, 2] = velocity[part, 1][:, None]
    return out


def parse_answer(text: str, horizon_s: float = HORIZON_S) -> tuple[str, str, str, np.ndarray | None]:
    """(description, analysis, prompt, trajectory) from a chat model's answer, strictly: one JSON object
    (a code fence around it is allowed) with the four keys, text fields non-empty strings, the
    trajectory null or valid (``trajectory_from_root``). Anything else is a PlanParseError."""
    if not isinstance(text, str) or not text.strip():
        raise PlanParseError("empty answer")
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise PlanParseError(f"answer is not JSON ({exc.msg}): {text[:80]!r}") from None
    if not isinstance(data, dict):
        raise PlanParseError(f"answer is JSON but not an object: {text[:80]!r}")
    missing = [k for k in ("description", "analysis", "prompt", "trajectory") if k not in data]
    if missing:
        raise PlanParseError(f"answer lacks {', '.join(missing)}")
    for key in ("description", "analysis", "prompt"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise PlanParseError(f"answer's {key} must be non-empty text, got {str(data[key])[:60]!r}")
    prompt = " ".join(data["prompt"].split())
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PlanParseError(f"answer's prompt has {len(prompt)} characters, more than {MAX_PROMPT_CHARS}")
    trajectory = None if data["trajectory"] is None else trajectory_from_root(data["trajectory"], horizon_s)
    return data["description"].strip(), data["analysis"].strip(), prompt, trajectory


def transcript_text(context: PlannerContext, turns: int = TRANSCRIPT_TURNS) -> str:
    """The user message: the last ``turns`` utterances with their times, and who speaks now."""
    agent = context.character or "the agent"
    lines = []
    for u in context.transcript[-turns:]:
        who = "user" if u.speaker == "user" else agent
        lines.append(f"[{u.start_s:.1f}-{u.end_s:.1f} s] {who}: {u.text or '(speech, not transcribed)'}")
    speaking = [name for name, on in (("the user", context.user_speaking), (agent, context.agent_speaking)) if on]
    now = f"{' and '.join(speaking)} speaking" if speaking else "silence"
    return ("Transcript:\n" + ("\n".join(lines) or "(nothing yet)")
            + f"\nNow: t={context.now_s:.1f} s, {now} since t={context.since_s:.1f} s.")


class LLMPlanner:
    """The three chain-of-thought stages as one chat request (the Thinker's OpenAI-compatible slot).

    A failed request or an answer that ``parse_answer`` rejects gives ``fallback``'s plan (with the
    reason in its analysis) and counts in ``failures``; ``last_error`` keeps the latest reason."""

    def __init__(self, llm: LLMConfig | ChatClient, fallback: StoryPlanner, horizon_s: float = HORIZON_S,
                 max_tokens: int = 600) -> None:
        self.client = llm if isinstance(llm, ChatClient) else ChatClient(llm)
        self.fallback, self.horizon_s, self.max_tokens = fallback, horizon_s, max_tokens
        self.failures = 0
        self.last_error = ""
        self._vocabulary = _prompt_vocabulary()

    def messages(self, context: PlannerContext) -> list[dict]:
        system = SYSTEM_PROMPT.format(agent=context.character or "the agent", horizon=self.horizon_s,
                                      vocabulary=self._vocabulary)
        return [{"role": "system", "content": system}, {"role": "user", "content": transcript_text(context)}]

    def plan(self, context: PlannerContext) -> Plan:
        try:
            answer = self.client.complete(self.messages(context), max_tokens=self.max_tokens)
            description, analysis, prompt, trajectory = parse_answer(answer, self.horizon_s)
        except (LLMError, PlanParseError) as exc:
            self.failures += 1
            self.last_error = str(exc)
            log.warning("planner: chat model failed (%s); using the offline plan", exc)
            plan = self.fallback.plan(context)
            plan.analysis = f"(chat model failed: {exc}) {plan.analysis}"
            return plan
        return Plan(prompt=prompt, trajectory=trajectory, description=description, analysis=analysis,
                    made_at_s=context.now_s)


# -- running beside G ----------------------------------------------------------------------------
class PlannerLoop:
    """Runs a planner beside the decoder: every ``period_s`` and at each user-turn end, one
    ``planner.plan`` call in a worker thread, its plan handed to ``on_plan`` (a function or a
    coroutine function, called on the event loop).

    Never blocks the caller: ``observe`` and ``heard`` only record and wake the loop. A slow
    planner never queues calls: requests while a call runs collapse into one (``dropped`` counts
    the rest), which plans from the context as it is when it starts. ``timings`` holds each call's
    latency in seconds. Use from one event loop (not thread-safe).
    """

    def __init__(self, planner: Planner, on_plan: Callable[[Plan], Any], period_s: float = 2.0,
                 character: str | None = None) -> None:
        if period_s <= 0:
            raise ValueError(f"PlannerLoop: period_s must be > 0, got {period_s}")
        self.planner, self.on_plan, self.period_s = planner, on_plan, period_s
        self.character = character
        self.transcript: list[Utterance] = []
        self.user_speaking = self.agent_speaking = False
        self.now_s = self.since_s = 0.0
        self._user_span: tuple[float, float | None] | None = None  # the user's speech not yet transcribed
        self._agent_start_s = 0.0
        self.timings: list[float] = []
        self.plans = 0  # plans delivered
        self.dropped = 0  # requests merged into one already waiting
        self.errors = 0  # plan calls that raised
        self.latest: Plan | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start planning on ``loop`` (default: the running one); the first plan comes at once."""
        if self._task is not None:
            raise RuntimeError("PlannerLoop.start: already started; stop() it first")
        loop = loop or asyncio.get_running_loop()
        self._stopping = False
        self._wake = asyncio.Event()
        self._wake.set()
        self._task = loop.create_task(self._run(), name="planner")

    def request(self) -> None:
        """Plan as soon as the planner is free (merged with any request already waiting)."""
        if self._wake is None:
            return
        if self._wake.is_set():
            self.dropped += 1
        self._wake.set()

    def observe(self, now_s: float, user_speaking: bool | None = None, agent_speaking: bool | None = None) -> None:
        """The media time and, where given, who speaks. A user's stop is a turn end (a plan is
        requested); an agent's stop adds its (untranscribed) utterance to the transcript."""
        self.now_s = now_s
        changed = False
        if user_speaking is not None and user_speaking != self.user_speaking:
            self.user_speaking, changed = user_speaking, True
            if user_speaking:
                self._user_span = (now_s, None)
            elif self._user_span is not None:
                self._user_span = (self._user_span[0], now_s)
                self.request()
        if agent_speaking is not None and agent_speaking != self.agent_speaking:
            self.agent_speaking, changed = agent_speaking, True
            if agent_speaking:
                self._agent_start_s = now_s
            else:
                self.transcript.append(Utterance("agent", "", self._agent_start_s, now_s))
                self.request()  # the answer is over: back to listening
        if changed:
            self.since_s = now_s

    def heard(self, text: str, now_s: float | None = None, speaker: str = "user") -> None:
        """A final transcript (the speech recogniser's): added with the times of that party's last
        speech, and, for the user, a plan requested (the turn's meaning is known now)."""
        if speaker not in ("user", "agent"):
            raise ValueError(f"PlannerLoop.heard: speaker must be 'user' or 'agent', got {speaker!r}")
        now_s = self.now_s if now_s is None else now_s
        self.now_s = max(self.now_s, now_s)
        start_s, end_s = now_s, now_s
        if speaker == "user" and self._user_span is not None:
            start_s, end_s = self._user_span[0], self._user_span[1] if self._user_span[1] is not None else now_s
            self._user_span = None
        self.transcript.append(Utterance(speaker, text.strip(), start_s, end_s))
        if speaker == "user":
            self.request()

    def context(self) -> PlannerContext:
        """A snapshot of the conversation for one plan call."""
        return PlannerContext(transcript=list(self.transcript), user_speaking=self.user_speaking,
                              agent_speaking=self.agent_speaking, now_s=self.now_s, since_s=self.since_s,
                              character=self.character)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        due = loop.time()
        while not self._stopping:
            # A request that came during the last call is already set: it starts the next call at once;
            # a call slower than the period starts the next one at once too (never a backlog).
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, due - loop.time()))
            except TimeoutError:
                pass
            self._wake.clear()
            if self._stopping:
                break
            due = loop.time() + self.period_s
            context = self.context()
            started = time.perf_counter()
            try:
                plan = await asyncio.to_thread(self.planner.plan, context)
            except Exception:  # a planner bug must not end planning, nor reach the decoder's stage
                self.errors += 1
                log.exception("planner: plan call failed")
                continue
            self.timings.append(time.perf_counter() - started)
            if self._stopping:
                break
            self.latest = plan
            self.plans += 1
            try:
                result = self.on_plan(plan)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.errors += 1
                log.exception("planner: on_plan failed")

    async def stop(self) -> None:
        """Stop planning: no plan is delivered after this returns (a call in flight finishes in its
        thread and is discarded)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
