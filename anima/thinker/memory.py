"""Hierarchical memory: a short-term buffer per session and the long-term graph (the world file).

- ``ShortTermMemory``: the recent turns as the user heard them, the active goals, and a summary of
  older turns; bounded by a token budget, summarised (extractively, no model) when full.
- ``SessionStore``: the session state in the world database (user, character, story time, turn
  count, summary, goals) and what the user tells the character about themselves, written as facts
  about the user node (``origin='session'``, ``known_from`` = the session's story time, visible only
  to that user and that character) so the next session remembers it. Each turn's writes are one
  transaction.

Privacy: everything a session writes is keyed by its user id, and every read filters by it, so one
visitor never sees another's facts, turns or story time. A live visitor's id is a random string the
client keeps (``check_visitor_id``: 8-64 characters of ``[A-Za-z0-9_-]``); ``forget`` deletes all
of a user's rows (session ratings and turn rewards included) in one transaction and drops them from
this process's retrievers; ``Retention`` bounds what is kept (turns, sessions and facts per user,
their age, and the number of users), applied when a session starts (``prune``) and on each write
(that user's turns and facts).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field

from anima.core.history import Turn
from anima.embed import Embedder
from anima.thinker.retrieval import Retriever, loaded_retrievers
from anima.thinker.text import count_tokens, shorten
from anima.thinker.world import World, transaction

USER_NAME = "the visitor"
VISITOR_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")  # a live visitor: a random id the client keeps
USER_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # any user id (a local CLI user may be short: "default")


def check_visitor_id(visitor: object) -> str:
    """A live visitor's id, or a ValueError saying what is wrong with it."""
    if not isinstance(visitor, str) or not VISITOR_ID.fullmatch(visitor):
        raise ValueError(f"visitor id must be 8-64 characters of A-Z a-z 0-9 _ -, got {_show(visitor)}")
    return visitor


def check_user_id(user_id: object) -> str:
    """A user id (a visitor id, or a local user's name), or a ValueError saying what is wrong with it."""
    if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
        raise ValueError(f"user id must be 1-64 characters of A-Z a-z 0-9 _ . -, got {_show(user_id)}")
    return user_id


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Retention:
    """How much session memory a world file keeps (the defaults bound a busy server's file)."""

    max_turns: int = 500  # utterances kept per user (theirs and the character's); the oldest go first
    max_age_days: float = 90.0  # sessions not updated for this long are deleted; a user left with none is forgotten
    max_sessions: int = 100  # sessions kept per user; the oldest go first (with their turns)
    max_facts: int = 200  # things a user said about themselves kept; the oldest go first
    max_users: int = 10_000  # users kept per world file; the least recently seen are forgotten

    def __post_init__(self) -> None:
        for name in ("max_turns", "max_sessions", "max_facts", "max_users"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Retention.{name} must be a positive integer, got {value!r}")
        if isinstance(self.max_age_days, bool) or not isinstance(self.max_age_days, int | float) or not self.max_age_days > 0:
            raise ValueError(f"Retention.max_age_days must be a positive number, got {self.max_age_days!r}")


@dataclass
class Forgotten:
    """What ``forget`` or ``prune`` deleted (row counts)."""

    users: int = 0
    sessions: int = 0
    turns: int = 0
    facts: int = 0
    ratings: int = 0  # session ratings (their turn rewards go with them)

    def __iadd__(self, other: Forgotten) -> Forgotten:
        self.users += other.users
        self.sessions += other.sessions
        self.turns += other.turns
        self.facts += other.facts
        self.ratings += other.ratings
        return self


def _delete_user(c, user_id: str, dropped_facts: list[int], dropped_entities: list[int]) -> Forgotten:
    """Delete every row of ``user_id`` (inside the caller's transaction)."""
    out = Forgotten()
    # Ratings and turn rewards (with the reaction features) are the visitor's too (privacy).
    c.execute("DELETE FROM turn_rewards WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?) "
              "OR session_id IN (SELECT session_id FROM session_ratings WHERE user_id = ?)", (user_id, user_id))
    out.ratings = c.execute("DELETE FROM session_ratings WHERE user_id = ?", (user_id,)).rowcount
    out.turns = c.execute("DELETE FROM session_turns WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?)",
                          (user_id,)).rowcount
    out.sessions = c.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount
    entity = c.execute("SELECT id FROM entities WHERE name = ? AND kind = 'user'", (f"user:{user_id}",)).fetchone()
    ids = [r[0] for r in c.execute("SELECT id FROM facts WHERE user_id = ? OR subject_id = ? OR object_id = ?",
                                   (user_id, entity[0] if entity else -1, entity[0] if entity else -1))]
    c.executemany("DELETE FROM facts WHERE id = ?", [(i,) for i in ids])
    out.facts = len(ids)
    dropped_facts += ids
    if entity:
        c.execute("DELETE FROM entities WHERE id = ?", (entity[0],))  # its aliases cascade
        dropped_entities.append(entity[0])
    out.users = int(bool(out.sessions or out.facts or entity))
    return out


def _drop_loaded(world: World, facts: list[int], entities: list[int], retriever: Retriever | None = None) -> None:
    """Forget deleted rows in this process's retrievers of that world file too."""
    retrievers = loaded_retrievers(world.path)
    if retriever is not None and retriever not in retrievers:
        retrievers.append(retriever)
    for r in retrievers:
        if facts:
            r.drop_facts(facts)
        if entities:
            r.drop_entities(entities)


def forget(world: World, user_id: str, retriever: Retriever | None = None) -> Forgotten:
    """Delete everything of one user (sessions, turns, facts, user node) in one transaction, and
    drop it from this process's retrievers of that world file (and ``retriever``)."""
    check_user_id(user_id)
    if world.readonly:
        raise ValueError(f"{world.path}: opened read-only; open it writable to forget a user")
    facts: list[int] = []
    entities: list[int] = []
    with transaction(world.conn) as c:
        out = _delete_user(c, user_id, facts, entities)
    _drop_loaded(world, facts, entities, retriever)
    return out


def list_users(world: World) -> list[dict]:
    """Each user with remembered data: sessions, turns, facts, last seen (most recent first)."""
    c = world.conn
    rows = c.execute("SELECT s.user_id, count(DISTINCT s.id), count(t.idx), max(s.updated_at) FROM sessions s "
                     "LEFT JOIN session_turns t ON t.session_id = s.id GROUP BY s.user_id").fetchall()
    users = {r[0]: {"user": r[0], "sessions": r[1], "turns": r[2], "facts": 0, "last_seen": r[3]} for r in rows}
    for user_id, n in c.execute("SELECT user_id, count(*) FROM facts WHERE user_id IS NOT NULL GROUP BY user_id"):
        users.setdefault(user_id, {"user": user_id, "sessions": 0, "turns": 0, "facts": 0, "last_seen": None})["facts"] = n
    return sorted(users.values(), key=lambda u: u["last_seen"] or "", reverse=True)


def _cutoff(days: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - days * 86400.0))


def _trim_user(c, user_id: str, retention: Retention, dropped_facts: list[int]) -> Forgotten:
    """Apply the per-user caps (inside the caller's transaction)."""
    out = Forgotten()
    old = [r[0] for r in c.execute("SELECT id FROM sessions WHERE user_id = ? ORDER BY updated_at DESC, rowid DESC "
                                   "LIMIT -1 OFFSET ?", (user_id, retention.max_sessions))]
    for sid in old:
        out.turns += c.execute("DELETE FROM session_turns WHERE session_id = ?", (sid,)).rowcount
        out.sessions += c.execute("DELETE FROM sessions WHERE id = ?", (sid,)).rowcount
    out.turns += c.execute(
        "DELETE FROM session_turns WHERE rowid IN (SELECT t.rowid FROM session_turns t JOIN sessions s "
        "ON s.id = t.session_id WHERE s.user_id = ? ORDER BY t.created_at DESC, t.idx DESC LIMIT -1 OFFSET ?)",
        (user_id, retention.max_turns)).rowcount
    ids = [r[0] for r in c.execute("SELECT id FROM facts WHERE user_id = ? ORDER BY id DESC LIMIT -1 OFFSET ?",
                                   (user_id, retention.max_facts))]
    c.executemany("DELETE FROM facts WHERE id = ?", [(i,) for i in ids])
    out.facts += len(ids)
    dropped_facts += ids
    return out


def prune(world: World, retention: Retention, user_id: str | None = None,
          retriever: Retriever | None = None) -> Forgotten:
    """Apply ``retention`` to a world file in one transaction: sessions past the age limit go (and
    users left with no session are forgotten), the least recently seen users past ``max_users``
    are forgotten, and ``user_id``'s turns, sessions and facts are cut to the caps."""
    facts: list[int] = []
    entities: list[int] = []
    out = Forgotten()
    with transaction(world.conn) as c:
        # Not in SCHEMA (that would change every build): the memory file gets it on first use.
        c.execute("CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated_at)")
        cutoff = _cutoff(retention.max_age_days)
        stale = [r[0] for r in c.execute("SELECT DISTINCT user_id FROM sessions WHERE updated_at < ?", (cutoff,))]
        for sid_user in stale:
            old = [r[0] for r in c.execute("SELECT id FROM sessions WHERE user_id = ? AND updated_at < ?",
                                           (sid_user, cutoff))]
            for sid in old:
                out.turns += c.execute("DELETE FROM session_turns WHERE session_id = ?", (sid,)).rowcount
                out.sessions += c.execute("DELETE FROM sessions WHERE id = ?", (sid,)).rowcount
            if not c.execute("SELECT 1 FROM sessions WHERE user_id = ? LIMIT 1", (sid_user,)).fetchone():
                out += _delete_user(c, sid_user, facts, entities)
        extra = [r[0] for r in c.execute("SELECT user_id FROM sessions GROUP BY user_id ORDER BY max(updated_at) DESC "
                                         "LIMIT -1 OFFSET ?", (retention.max_users,))]
        for other in extra:
            out += _delete_user(c, other, facts, entities)
        if user_id is not None:
            out += _trim_user(c, user_id, retention, facts)
    _drop_loaded(world, facts, entities, retriever)
    return out

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
    """One session's state and the user's facts, persisted in the world database, within ``retention``."""

    def __init__(self, world: World, retriever: Retriever, embedder: Embedder, user_id: str, character: str,
                 story_time: int, remember: bool = True, retention: Retention | None = None) -> None:
        self.world, self.retriever, self.embedder = world, retriever, embedder
        self.user_id, self.character, self.story_time = check_user_id(user_id), character, story_time
        self.retention = retention or Retention()
        self.remember = remember and not world.readonly
        self.session_id = uuid.uuid4().hex
        self.turns = 0
        self._stored_turns = self._stored_facts = 0  # this user's rows, kept under the caps on each write
        if self.remember:
            now = _now()
            with transaction(world.conn) as c:
                c.execute("INSERT INTO sessions(id, user_id, character, story_time, started_at, updated_at) "
                          "VALUES (?,?,?,?,?,?)", (self.session_id, user_id, character, story_time, now, now))
            prune(world, self.retention, user_id, retriever)  # after the insert: the caps count this session
            with transaction(world.conn) as c:
                self._stored_turns = c.execute("SELECT count(*) FROM session_turns t JOIN sessions s ON s.id = "
                                               "t.session_id WHERE s.user_id = ?", (user_id,)).fetchone()[0]
                self._stored_facts = c.execute("SELECT count(*) FROM facts WHERE user_id = ?", (user_id,)).fetchone()[0]

    @staticmethod
    def last_story_time(world: World, user_id: str, character: str) -> int | None:
        """The story time of this user's last session with this character (resumed by default)."""
        row = world.conn.execute("SELECT story_time FROM sessions WHERE user_id = ? AND character = ? "
                                 "ORDER BY updated_at DESC, rowid DESC LIMIT 1", (user_id, character)).fetchone()
        return row[0] if row else None

    def _user_node(self, c) -> int:
        # Looked up in every transaction: another session of this user may have forgotten it.
        name = f"user:{self.user_id}"
        row = c.execute("SELECT id FROM entities WHERE name = ?", (name,)).fetchone()
        if row:
            return row[0]
        entity = c.execute("INSERT INTO entities(name, kind, description, known_from, origin) VALUES (?,?,?,?,?)",
                           (name, "user", f"A visitor ({self.user_id}).", 1, "session")).lastrowid
        self.retriever.add_entity(entity, name, "user", f"A visitor ({self.user_id}).", 1)
        return entity

    def record_turn(self, user_text: str, reply: str, new_facts: list[tuple[str, str]], summary: str,
                    goals: list[str]) -> list[int]:
        """Write the turn, the session state and the user's new facts in one transaction (and cut
        this user's oldest turns and facts past the retention caps in the same one)."""
        if not self.remember:
            return []
        vectors = self.embedder.encode([text for _, text in new_facts]) if new_facts else []
        known = {h.text for h in self.retriever.user_facts(self.user_id, self.character, None, gate=False)}
        written: list[tuple[int, int, str, object]] = []
        dropped: list[int] = []
        now = _now()
        with transaction(self.world.conn) as c:
            # The row may be gone (this user forgotten from another session): the session goes on.
            c.execute("INSERT OR IGNORE INTO sessions(id, user_id, character, story_time, started_at, updated_at) "
                      "VALUES (?,?,?,?,?,?)", (self.session_id, self.user_id, self.character, self.story_time, now, now))
            base = self.turns * 2
            c.execute("INSERT OR REPLACE INTO session_turns VALUES (?,?,?,?,?,?)",
                      (self.session_id, base, "user", user_text, 0, now))
            c.execute("INSERT OR REPLACE INTO session_turns VALUES (?,?,?,?,?,?)",
                      (self.session_id, base + 1, "agent", reply, 0, now))
            self._stored_turns += 2
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
                self._stored_facts += 1
            self.turns += 1
            c.execute("UPDATE sessions SET updated_at = ?, turns = ?, summary = ?, goals = ?, story_time = ? "
                      "WHERE id = ?", (now, self.turns, summary, json.dumps(goals), self.story_time, self.session_id))
            if self._stored_turns > self.retention.max_turns or self._stored_facts > self.retention.max_facts:
                _trim_user(c, self.user_id, self.retention, dropped)
                self._stored_turns = min(self._stored_turns, self.retention.max_turns)
                self._stored_facts = min(self._stored_facts, self.retention.max_facts)
        for fid, subject, text, vector in written:  # searchable only once committed
            self.retriever.add_fact(fid, subject, f"user:{self.user_id}", text, vector, self.story_time,
                                    self.user_id, self.character)
        if dropped:
            _drop_loaded(self.world, dropped, [], self.retriever)
        return [w[0] for w in written if w[0] not in dropped]

    def set_story_time(self, story_time: int) -> None:
        self.story_time = story_time
        if self.remember:
            with transaction(self.world.conn) as c:
                c.execute("UPDATE sessions SET story_time = ?, updated_at = ? WHERE id = ?",
                          (story_time, _now(), self.session_id))

    def forget(self) -> Forgotten:
        """Delete everything this user told any character, here and in past sessions; this session
        remembers nothing more."""
        self.remember = False
        return forget(self.world, self.user_id, self.retriever)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(time.time() * 1e6) % 1_000_000:06d}"
