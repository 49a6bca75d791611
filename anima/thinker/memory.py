"""Hierarchical memory: a short-term buffer per session and the long-term graph (the world file).

- ``ShortTermMemory``: the recent turns as the user heard them, the active goals, and a summary of
  older turns; bounded by a token budget, summarised (extractively, no model) when full.
- ``SessionStore``: the session state in the world database (user, character, story time, turn
  count, summary, goals) and what the user tells the character about themselves, written as facts
  about the user node (``origin='session'``, ``known_from`` = the session's story time, visible only
  to that user and that character) so the next session remembers it. Each turn's writes are one
  transaction.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field

from anima.core.history import Turn
from anima.embed import Embedder
from anima.thinker.retrieval import Retriever
from anima.thinker.text import count_tokens, shorten
from anima.thinker.world import World, transaction

USER_NAME = "the visitor"

# What a visitor says about themselves -> a fact in the third person (verb agreement done here).
_SELF_FACTS = [
    (re.compile(r"\b(?:my name is|my name's|call me|i am called|i'm called|they call me)\s+([A-Z][\w'\-]+(?:\s+[A-Z][\w'\-]+)?)", re.I),
     "name", "The visitor's name is {0}."),
    (re.compile(r"\bi(?:'m| am) (?:a|an) ([a-z][\w\s'\-]{2,40}?)(?:[.,!?;]|$| and | from )", re.I),
     "is", "The visitor is a {0}."),
    (re.compile(r"\bi(?:'m| am| come) from ([A-Z][\w\s'\-]{1,40}?)(?:[.,!?;]|$| and )", re.I),
     "from", "The visitor comes from {0}."),
    (re.compile(r"\bi live in ([A-Z][\w\s'\-]{1,40}?)(?:[.,!?;]|$| and )", re.I), "lives_in", "The visitor lives in {0}."),
    (re.compile(r"\bi (?:really )?(?:like|love|enjoy|adore) ([\w\s'\-]{2,40}?)(?:[.,!?;]|$| and )", re.I),
     "likes", "The visitor likes {0}."),
    (re.compile(r"\bi (?:hate|dislike|can't stand|cannot stand|fear|am afraid of) ([\w\s'\-]{2,40}?)(?:[.,!?;]|$| and )", re.I),
     "dislikes", "The visitor dislikes {0}."),
    (re.compile(r"\bi work (?:as|at|in) ([\w\s'\-]{2,40}?)(?:[.,!?;]|$| and )", re.I), "works", "The visitor works as {0}."),
    (re.compile(r"\bmy favou?rite ([a-z]+) is ([\w\s'\-]{2,40}?)(?:[.,!?;]|$)", re.I),
     "favourite", "The visitor's favourite {0} is {1}."),
    (re.compile(r"\bi have (?:a|an|two|three|\d+) ([\w\s'\-]{2,40}?)(?:[.,!?;]|$| and )", re.I), "has", "The visitor has a {0}."),
]
_NOT_A_NAME = {"not", "sorry", "here", "fine", "ok", "okay", "just", "going", "very", "so", "afraid", "sure", "glad"}


def user_facts_in(utterance: str) -> list[tuple[str, str]]:
    """(predicate, third-person fact) for each thing the visitor says about themselves."""
    found = []
    for pattern, predicate, template in _SELF_FACTS:
        for m in pattern.finditer(utterance):
            groups = [" ".join(g.split()).strip(" '") for g in m.groups()]
            if not all(groups) or groups[0].lower() in _NOT_A_NAME or groups[0].split()[0].lower() in {"ai", "bot"}:
                continue
            found.append((predicate, template.format(*groups)))
    return found


def second_person(fact: str) -> str:
    """"The visitor's name is X." -> "your name is X." (for the character speaking to the visitor)."""
    text = re.sub(r"^The visitor's\b", "your", fact)
    text = re.sub(r"^The visitor is\b", "you are", text)
    text = re.sub(r"^The visitor (comes|lives|likes|dislikes|works|has)\b",
                  lambda m: "you " + {"comes": "come", "lives": "live", "likes": "like", "dislikes": "dislike",
                                      "works": "work", "has": "have"}[m.group(1)], text)
    return text


@dataclass
class ShortTermMemory:
    """Recent turns + active goals within ``budget_tokens``; older turns folded into ``summary``."""

    budget_tokens: int = 600
    summary_budget_tokens: int = 160
    goals: list[str] = field(default_factory=list)
    summary: str = ""
    turns: list[Turn] = field(default_factory=list)
    _folded: int = 0  # turns of the history already folded into the summary

    def sync(self, history: list[Turn]) -> None:
        """Take the runtime's heard history (the authority on what was said) and fit the budget."""
        if len(history) < self._folded:  # a new conversation
            self._folded, self.summary = 0, ""
        self.turns = list(history[self._folded:])
        while self.turns and self.tokens() > self.budget_tokens:
            self._fold(self.turns.pop(0))
            self._folded += 1

    def _fold(self, turn: Turn) -> None:
        who = "The visitor said" if turn.speaker == "user" else "I said"
        gist = shorten(turn.text, 14) if turn.text.strip() else "nothing"
        cut = " (interrupted)" if turn.interrupted else ""
        sentences = [s for s in self.summary.split("\n") if s] + [f"{who}: {gist}{cut}"]
        while len(sentences) > 1 and count_tokens("\n".join(sentences)) > self.summary_budget_tokens:
            sentences.pop(0)  # the oldest gist goes first
        self.summary = "\n".join(sentences)

    def tokens(self) -> int:
        return (count_tokens(self.summary) + sum(count_tokens(t.text) + 2 for t in self.turns)
                + sum(count_tokens(g) for g in self.goals))

    def set_goal(self, goal: str) -> None:
        if goal not in self.goals:
            self.goals.append(goal)
        while len(self.goals) > 6:
            self.goals.pop(0)

    def last(self, speaker: str) -> Turn | None:
        return next((t for t in reversed(self.turns) if t.speaker == speaker), None)

    def agent_said(self, text: str) -> bool:
        """Whether the character already said (or meant to say) ``text`` in the buffered turns."""
        key = text[:60]
        return any(key and (key in t.text or key in t.planned_text) for t in self.turns if t.speaker == "agent")

    def as_text(self) -> str:
        parts = []
        if self.summary:
            parts.append("Earlier: " + self.summary.replace("\n", "; "))
        for t in self.turns:
            who = "Visitor" if t.speaker == "user" else "You"
            parts.append(f"{who}: {t.text}{' (interrupted)' if t.interrupted else ''}")
        return "\n".join(parts)


class SessionStore:
    """One session's state and the user's facts, persisted in the world database."""

    def __init__(self, world: World, retriever: Retriever, embedder: Embedder, user_id: str, character: str,
                 story_time: int, remember: bool = True) -> None:
        self.world, self.retriever, self.embedder = world, retriever, embedder
        self.user_id, self.character, self.story_time = user_id, character, story_time
        self.remember = remember and not world.readonly
        self.session_id = uuid.uuid4().hex
        self.turns = 0
        self._user_entity: int | None = None
        if self.remember:
            now = _now()
            with transaction(world.conn) as c:
                c.execute("INSERT INTO sessions(id, user_id, character, story_time, started_at, updated_at) "
                          "VALUES (?,?,?,?,?,?)", (self.session_id, user_id, character, story_time, now, now))

    @staticmethod
    def last_story_time(world: World, user_id: str, character: str) -> int | None:
        """The story time of this user's last session with this character (resumed by default)."""
        row = world.conn.execute("SELECT story_time FROM sessions WHERE user_id = ? AND character = ? "
                                 "ORDER BY updated_at DESC, rowid DESC LIMIT 1", (user_id, character)).fetchone()
        return row[0] if row else None

    def _user_node(self, c) -> int:
        if self._user_entity is None:
            name = f"user:{self.user_id}"
            row = c.execute("SELECT id FROM entities WHERE name = ?", (name,)).fetchone()
            if row:
                self._user_entity = row[0]
            else:
                self._user_entity = c.execute(
                    "INSERT INTO entities(name, kind, description, known_from, origin) VALUES (?,?,?,?,?)",
                    (name, "user", f"A visitor ({self.user_id}).", 1, "session")).lastrowid
                self.retriever.add_entity(self._user_entity, name, "user", f"A visitor ({self.user_id}).", 1)
        return self._user_entity

    def record_turn(self, user_text: str, reply: str, new_facts: list[tuple[str, str]], summary: str,
                    goals: list[str]) -> list[int]:
        """Write the turn, the session state and the user's new facts in one transaction."""
        if not self.remember:
            return []
        vectors = self.embedder.encode([text for _, text in new_facts]) if new_facts else []
        known = {h.text for h in self.retriever.user_facts(self.user_id, self.character, None, gate=False)}
        written: list[tuple[int, int, str, object]] = []
        now = _now()
        with transaction(self.world.conn) as c:
            base = self.turns * 2
            c.execute("INSERT OR REPLACE INTO session_turns VALUES (?,?,?,?,?,?)",
                      (self.session_id, base, "user", user_text, 0, now))
            c.execute("INSERT OR REPLACE INTO session_turns VALUES (?,?,?,?,?,?)",
                      (self.session_id, base + 1, "agent", reply, 0, now))
            for (predicate, text), vector in zip(new_facts, vectors, strict=True):
                if text in known:
                    continue
                subject = self._user_node(c)
                fid = c.execute(
                    "INSERT INTO facts(subject_id, predicate, text, known_from, origin, user_id, audience, session_id, "
                    "created_at, embedding) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (subject, predicate, text, self.story_time, "session", self.user_id, self.character,
                     self.session_id, now, vector.astype("float16").tobytes())).lastrowid
                written.append((fid, subject, text, vector))
            self.turns += 1
            c.execute("UPDATE sessions SET updated_at = ?, turns = ?, summary = ?, goals = ?, story_time = ? "
                      "WHERE id = ?", (now, self.turns, summary, json.dumps(goals), self.story_time, self.session_id))
        for fid, subject, text, vector in written:  # searchable only once committed
            self.retriever.add_fact(fid, subject, f"user:{self.user_id}", text, vector, self.story_time,
                                    self.user_id, self.character)
        return [w[0] for w in written]

    def set_story_time(self, story_time: int) -> None:
        self.story_time = story_time
        if self.remember:
            with transaction(self.world.conn) as c:
                c.execute("UPDATE sessions SET story_time = ?, updated_at = ? WHERE id = ?",
                          (story_time, _now(), self.session_id))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(time.time() * 1e6) % 1_000_000:06d}"
