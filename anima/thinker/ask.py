"""``anima ask``: one question to a character, or a JSONL file of them, for outside evaluators.

    anima ask --character nemo --story-time 12 "What powers your ship?" [--json]
    anima ask --batch questions.jsonl -o answers.jsonl

A batch line is ``{"id", "character", "story_time", "question"}``; its answer line is ``{"id",
"answer", "emotion", "gesture", "gaze", "character", "story_time"}`` (the ActionPlan's fields). Every
question is answered as the first turn of a fresh conversation, with nothing written to the world's
memory, as ``anima eval thinker`` answers its items. Every line is checked before the first answer,
and the output is written through a temporary file and replaced, so bad input leaves no half
answers behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from anima.core.plan import ActionPlan
from anima.thinker.base import ThinkerContext
from anima.thinker.llm import LLMConfig
from anima.thinker.memory import ShortTermMemory
from anima.thinker.persona import PersonaError, load_persona
from anima.thinker.retrieval import shared_retriever
from anima.thinker.story import StoryThinker, check_story_time
from anima.thinker.world import World

FIELDS = ("id", "character", "story_time", "question")


class AskError(ValueError):
    """Bad input to ``anima ask``; the message names the line and field."""


@dataclass(frozen=True)
class Question:
    id: str | int
    character: str
    story_time: int
    question: str


def parse_question(line: str, where: str, chapters: int) -> Question:
    """One batch line as a Question, or an AskError naming ``where`` (e.g. "q.jsonl line 3") and the field."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise AskError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise AskError(f"{where}: expected a JSON object with {', '.join(FIELDS)}, got {type(data).__name__}")
    missing = [f for f in FIELDS if f not in data]
    if missing:
        raise AskError(f"{where}: missing field{'s' if len(missing) > 1 else ''} {', '.join(repr(f) for f in missing)}")
    qid, character, story_time, question = (data[f] for f in FIELDS)
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or qid == "":
        raise AskError(f"{where}: field 'id' must be a non-empty string or an integer, got {qid!r}")
    if not isinstance(character, str):
        raise AskError(f"{where}: field 'character' must be a string, got {character!r}")
    try:
        load_persona(character)
    except PersonaError as exc:
        raise AskError(f"{where}: field 'character': {exc}") from None
    try:
        check_story_time(story_time, chapters)
    except ValueError as exc:
        raise AskError(f"{where}: field 'story_time': {exc}") from None
    if not isinstance(question, str) or not question.strip():
        raise AskError(f"{where}: field 'question' must be a non-empty string, got {question!r}")
    return Question(qid, character, story_time, question)


def read_questions(path: Path, chapters: int) -> list[Question]:
    """Every question of a JSONL file (blank lines skipped), all checked; ids must be unique."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AskError(f"{path}: cannot read ({exc})") from None
    questions: list[Question] = []
    seen: dict[str | int, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        q = parse_question(line, where, chapters)
        if q.id in seen:
            raise AskError(f"{where}: field 'id': {q.id!r} was already used on line {seen[q.id]}")
        seen[q.id] = number
        questions.append(q)
    if not questions:
        raise AskError(f"{path}: no questions")
    return questions


class Asker:
    """Answers questions, each as the first turn of a fresh conversation with nothing remembered.

    One StoryThinker per character is kept (building one embeds the persona's lines), moved to each
    question's story time, and given an empty short-term memory before every answer, so an answer
    does not depend on the questions before it."""

    def __init__(self, world: World, llm: LLMConfig | None = None, gate: bool = True) -> None:
        self.world, self.llm, self.gate = world, llm, gate
        self.retriever = shared_retriever(world)
        self._thinkers: dict[str, StoryThinker] = {}

    def ask(self, character: str, story_time: int, question: str) -> ActionPlan:
        """The character's reply at ``story_time``; ValueError (PersonaError) on a bad character or time."""
        thinker = self._thinkers.get(character)
        if thinker is None:
            thinker = StoryThinker(self.world, load_persona(character), story_time, self.retriever, llm=self.llm,
                                   user_id="ask", remember=False, gate=self.gate)
            self._thinkers[character] = thinker
        thinker.set_story_time(story_time)
        thinker.memory = ShortTermMemory(budget_tokens=thinker.memory.budget_tokens,
                                         goals=list(thinker.persona.goals[:2]))
        return thinker.respond(question, ThinkerContext())


def answer_record(q: Question, plan: ActionPlan) -> dict:
    """The output line of one answered question."""
    return {"id": q.id, "answer": plan.speech, "emotion": plan.emotion, "gesture": plan.gesture, "gaze": plan.gaze,
            "character": q.character, "story_time": q.story_time}


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write one JSON object per line through a temporary file in the same folder, then replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def answer_batch(questions: list[Question], asker: Asker) -> list[dict]:
    """Answer every question, in input order (each answer is independent of the others)."""
    return [answer_record(q, asker.ask(q.character, q.story_time, q.question)) for q in questions]
