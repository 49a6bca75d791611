"""Story-time-aware dual-level retrieval over a world, behind the narrative-present gate.

    retriever = Retriever(world)
    found = retriever.retrieve("Who commands the Nautilus?", story_time=12)
    found.entities   # low level: entity nodes matched by embedding (and by name in the query)
    found.facts      # high level: relation/fact edges matched by embedding, re-ranked by the
                     # entities found and by word overlap; merged
    found.lines      # the speaking character's own quoted lines, when ``speaker`` is given

**The gate** (``visible``) is the one rule every path goes through: at story time T an item is
returned only if ``known_from <= T`` and it has not stopped being true (``valid_until`` unset or
``> T``). It is applied as a mask inside the vector search (so top-k is taken among visible items
only, never filled from the future) and checked again on the way out. ``gate=False`` turns it off
(a temporally flat RAG, for the evaluation's ablation).

Vector search is exact (brute force) with numpy over an in-memory float32 matrix loaded from the
world file: a few thousand rows x 384 dims is ~0.5 ms a query, and it needs no SQLite extension
(this Python's ``sqlite3`` cannot load extensions, so sqlite-vec is not an option here; see
docs/thinker.md for the measurements).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anima.embed import Embedder, from_blobs, get_embedder
from anima.thinker.text import content_words
from anima.thinker.world import World

NEVER = np.iinfo(np.int32).max  # valid_until of a fact that never stops being true
RECENT_CHAPTERS = 2  # the recency channel looks at the story time's chapter and the two before it
RECENT_K = 20
# Words a measuring question does not say but its answer does ("How long?" -> "length ... meters"),
# added to the lexical (BM25) half of the search only.
EXPANSIONS = [
    (re.compile(r"\bhow long\b", re.I), "length long meters feet"),
    (re.compile(r"\bhow (?:wide|broad)\b", re.I), "breadth width beam meters"),
    (re.compile(r"\bhow (?:deep|far down)\b", re.I), "depth meters fathoms"),
    (re.compile(r"\bhow (?:fast|quick)", re.I), "speed knots miles hour"),
    (re.compile(r"\bhow (?:big|large|heavy)\b", re.I), "size dimensions tonnage tons weight"),
    (re.compile(r"\bhow far\b", re.I), "distance miles leagues"),
    (re.compile(r"\bhow old\b", re.I), "age years old"),
    (re.compile(r"\bhow many\b|\bhow much\b", re.I), "number"),
    (re.compile(r"\bwhat (?:day|date)\b|\bwhen\b", re.I), "january february march april may june july august "
                                                          "september october november december"),
]


def visible(known_from: int, valid_until: int | None, story_time: int) -> bool:
    """The narrative-present gate for one item."""
    return known_from <= story_time and (valid_until is None or valid_until > story_time)


class VectorIndex:
    """Exact cosine search over unit rows, with the gate as a mask. Thread-safe; rows are appended,
    and dropped ones (a forgotten visitor's facts) are zeroed and masked out, never searched again."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._lock = threading.Lock()
        self.ids = np.zeros(0, dtype=np.int64)
        self.known_from = np.zeros(0, dtype=np.int32)
        self.valid_until = np.zeros(0, dtype=np.int32)
        self.matrix = np.zeros((0, dim), dtype=np.float32)
        self.group = np.zeros(0, dtype=np.int64)  # e.g. the speaker of a line; -1 if unused
        self.alive = np.zeros(0, dtype=bool)  # False for dropped rows

    def load(self, ids, known_from, valid_until, matrix, group=None) -> None:
        with self._lock:
            self.ids = np.asarray(ids, dtype=np.int64)
            self.known_from = np.asarray(known_from, dtype=np.int32)
            self.valid_until = np.asarray([NEVER if v is None else v for v in valid_until], dtype=np.int32)
            self.matrix = np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1, self.dim)
            self.group = np.asarray(group if group is not None else [-1] * len(self.ids), dtype=np.int64)
            self.alive = np.ones(len(self.ids), dtype=bool)

    def add(self, item_id: int, vector: np.ndarray, known_from: int, valid_until: int | None, group: int = -1) -> None:
        with self._lock:  # copy-on-write: a search in another thread keeps its own arrays
            self.ids = np.append(self.ids, item_id)
            self.known_from = np.append(self.known_from, np.int32(known_from))
            self.valid_until = np.append(self.valid_until, np.int32(NEVER if valid_until is None else valid_until))
            self.matrix = np.vstack([self.matrix, vector.reshape(1, self.dim).astype(np.float32)])
            self.group = np.append(self.group, group)
            self.alive = np.append(self.alive, True)

    def drop(self, item_ids) -> None:
        """Forget rows: masked out of every search, their vectors zeroed."""
        with self._lock:
            rows = np.flatnonzero(np.isin(self.ids, np.asarray(list(item_ids), dtype=np.int64)))
            if len(rows):
                self.alive = self.alive.copy()  # copy-on-write, as ``add``
                self.alive[rows] = False
                self.matrix[rows] = 0.0

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, story_time: int | None, gate: bool = True) -> np.ndarray:
        if not gate:
            return self.alive.copy()
        if story_time is None:
            raise ValueError("the gate needs a story time")
        return (self.known_from <= story_time) & (self.valid_until > story_time) & self.alive

    def search(self, query: np.ndarray, k: int, story_time: int | None, gate: bool = True,
               allow: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-k (id, cosine) among the rows the gate (and ``allow``) lets through, best first."""
        with self._lock:
            ids, matrix, keep = self.ids, self.matrix, self.mask(story_time, gate)
        if allow is not None:
            if len(allow) < len(keep):  # rows appended since ``allow`` was computed stay out
                allow = np.concatenate([allow, np.zeros(len(keep) - len(allow), dtype=bool)])
            keep = keep & allow[: len(keep)]
        if k <= 0 or not keep.any():
            return []
        scores = matrix @ query.astype(np.float32)  # (N,)
        scores = np.where(keep, scores, -np.inf)
        k = min(k, int(keep.sum()))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(ids[i]), float(scores[i])) for i in top]


class KeywordIndex:
    """BM25 over stemmed content words: the lexical half of the hybrid fact search (rare words such
    as "motto" or "dugong" find their sentence even when the embedding ranks it lower)."""

    def __init__(self, texts: list[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.n = len(texts)
        self.k1, self.b = k1, b
        postings: dict[str, dict[int, int]] = {}
        lengths = np.zeros(self.n, dtype=np.float32)
        for row, text in enumerate(texts):
            terms = content_words(text)
            lengths[row] = len(terms)
            for term in terms:
                postings.setdefault(term, {}).setdefault(row, 0)
                postings[term][row] += 1
        self.avg_length = float(lengths.mean()) if self.n else 1.0
        self.lengths = lengths
        self.postings = {t: (np.fromiter(p.keys(), dtype=np.int64), np.fromiter(p.values(), dtype=np.float32))
                         for t, p in postings.items()}

    def idf(self, term: str) -> float:
        df = len(self.postings[term][0]) if term in self.postings else 0
        return float(np.log((self.n - df + 0.5) / (df + 0.5) + 1.0))

    def scores(self, terms: list[str]) -> np.ndarray:
        """(n,) BM25 scores of every row for the query terms (stemmed)."""
        out = np.zeros(self.n, dtype=np.float32)
        for term in set(terms):
            if term not in self.postings:
                continue
            rows, tf = self.postings[term]
            norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[rows] / max(self.avg_length, 1e-6))
            out[rows] += self.idf(term) * tf * (self.k1 + 1) / norm
        return out


@dataclass(frozen=True)
class Hit:
    """One retrieved item. ``kind`` is entity, fact or line; ``name`` the entity, subject or speaker."""

    kind: str
    id: int
    text: str
    score: float
    known_from: int
    valid_until: int | None
    name: str = ""
    chapter: int | None = None
    origin: str = ""
    related: tuple[int, ...] = ()  # entity ids a fact links (subject, object)
    speaker: str | None = None  # facts: who states it (narrator, a speaker, or None if unknown)
    cosine: float = 0.0  # the embedding similarity alone (``score`` adds the lexical and graph terms)
    context: float = 0.0  # similarity of the paragraph around a fact (its passage), if among the best


@dataclass
class Retrieved:
    query: str
    story_time: int | None
    gate: bool
    entities: list[Hit] = field(default_factory=list)
    facts: list[Hit] = field(default_factory=list)
    lines: list[Hit] = field(default_factory=list)
    mentioned: list[Hit] = field(default_factory=list)  # entities named in the query and visible
    descriptions: list[Hit] = field(default_factory=list)  # definitions of the named entities

    def items(self) -> list[Hit]:
        return [*self.mentioned, *self.entities, *self.descriptions, *self.facts, *self.lines]


@dataclass
class _Row:
    text: str
    known_from: int
    valid_until: int | None
    name: str
    chapter: int | None
    origin: str
    related: tuple[int, ...]
    user_id: str | None = None
    audience: str | None = None
    speaker: str | None = None


_shared: dict[tuple[str, bool, str], Retriever] = {}
_shared_lock = threading.Lock()


def shared_retriever(world: World) -> Retriever:
    """One retriever (vectors in memory) per world file and mode, shared by the thinkers of a process."""
    key = (str(world.path.resolve()), world.readonly, world.meta.get("build_id", ""))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Retriever(world)
        return _shared[key]


def loaded_retrievers(path) -> list[Retriever]:
    """This process's shared retrievers of the world file at ``path`` (to forget in them too)."""
    where = str(Path(path).resolve())
    with _shared_lock:
        return [r for key, r in _shared.items() if key[0] == where]


class Retriever:
    """Dual-level retrieval over one world. Loads the vectors once; safe to share across threads."""

    def __init__(self, world: World, embedder: Embedder | None = None) -> None:
        self.world = world
        self.embedder = embedder or get_embedder(world.embedder_name)
        if self.embedder.name != world.embedder_name:
            raise ValueError(f"{world.path} was built with the {world.embedder_name!r} embedder, "
                             f"not {self.embedder.name!r}")
        dim = world.dim
        c = world.conn
        self._lock = threading.Lock()
        self.entities: dict[int, _Row] = {}
        self.kinds: dict[int, str] = {}
        rows = c.execute("SELECT id, name, kind, description, known_from, valid_until, origin, embedding "
                         "FROM entities ORDER BY id").fetchall()
        for r in rows:
            self.entities[r[0]] = _Row(r[3] or r[1], r[4], r[5], r[1], None, r[6], (r[0],))
            self.kinds[r[0]] = r[2]
        rows = [r for r in rows if r[2] != "user"]  # users are reached through their facts only
        self._entity_pos = {r[0]: i for i, r in enumerate(rows)}
        self.entity_index = VectorIndex(dim)
        self.entity_index.load([r[0] for r in rows], [r[4] for r in rows], [r[5] for r in rows],
                               from_blobs([r[7] for r in rows], dim))
        self.facts: dict[int, _Row] = {}
        rows = c.execute("SELECT id, subject_id, object_id, text, known_from, valid_until, chapter, origin, user_id, "
                         "audience, embedding, speaker_id, span_start FROM facts ORDER BY id").fetchall()
        self._span_start = {r[0]: r[12] for r in rows if r[12] is not None}
        for r in rows:
            related = (r[1],) if r[2] is None else (r[1], r[2])
            self.facts[r[0]] = _Row(r[3], r[4], r[5], self.entities[r[1]].name if r[1] in self.entities else "",
                                    r[6], r[7], related, r[8], r[9],
                                    self.entities[r[11]].name if r[11] in self.entities else None)
        self.fact_index = VectorIndex(dim)
        self.fact_index.load([r[0] for r in rows], [r[4] for r in rows], [r[5] for r in rows],
                             from_blobs([r[10] for r in rows], dim))
        self._fact_private = np.array([r[8] is not None for r in rows], dtype=bool)
        self.keywords = KeywordIndex([r[3] for r in rows])  # rows in fact_index order
        self._load_passages(rows, dim)
        self.lines: dict[int, _Row] = {}
        rows = c.execute("SELECT id, speaker_id, text, chapter, known_from, attribution, embedding FROM lines "
                         "ORDER BY id").fetchall()
        for r in rows:
            self.lines[r[0]] = _Row(r[2], r[4], None, self.entities[r[1]].name, r[3], r[5], (r[1],))
        self.line_index = VectorIndex(dim)
        self.line_index.load([r[0] for r in rows], [r[4] for r in rows], [None] * len(rows),
                             from_blobs([r[6] for r in rows], dim), group=[r[1] for r in rows])
        self._line_tagged = np.array([r[5] == "tag" for r in rows], dtype=bool)
        self.vocab: dict[str, int] = dict(c.execute("SELECT word, first_chapter FROM vocab").fetchall())
        self.aliases: dict[str, list[int]] = {}
        for alias, entity_id, sensitive in c.execute("SELECT alias, entity_id, case_sensitive FROM aliases"):
            key = alias if sensitive else alias.lower()
            self.aliases.setdefault(key, []).append(entity_id)
        self._alias_re = self._compile_aliases()
        self.entity_by_name = {row.name: eid for eid, row in self.entities.items()}

    def _load_passages(self, rows: list, dim: int) -> None:
        """Paragraphs as passages: the mean of their sentences' vectors (no extra model calls). A
        question often matches the paragraph around its answer better than the answering sentence
        ("How long is the Nautilus?" vs "... exactly seventy meters"), so the sentences of the best
        passages join the candidates."""
        breaks: dict[int, list[int]] = {}
        for idx, text in self.world.conn.execute("SELECT idx, text FROM chapters"):
            breaks[idx] = [m.start() for m in re.finditer(r"\n\n", text)]
        groups: dict[tuple[int, int], list[int]] = {}
        for pos, r in enumerate(rows):
            chapter = r[6]
            start = self._span_start.get(r[0]) if chapter in breaks and r[7] == "offline" else None
            if start is None:
                continue
            paragraph = int(np.searchsorted(breaks[chapter], start, side="right"))
            groups.setdefault((chapter, paragraph), []).append(pos)
        keys = sorted(groups)
        self.passage_members = [groups[k] for k in keys]  # fact_index rows of each passage
        matrix = np.zeros((len(keys), dim), dtype=np.float32)
        for i, members in enumerate(self.passage_members):
            v = self.fact_index.matrix[members].mean(axis=0)
            matrix[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        self.passage_index = VectorIndex(dim)
        self.passage_index.load(list(range(len(keys))), [k[0] for k in keys], [None] * len(keys), matrix)

    def _compile_aliases(self) -> re.Pattern | None:
        names = [a for a in self.aliases if len(a) >= 3]
        if not names:
            return None
        alternation = "|".join(re.escape(a) for a in sorted(names, key=len, reverse=True))
        return re.compile(rf"(?<![\w])(?:{alternation})(?![\w])", re.IGNORECASE)

    # -- the gate, for callers that look things up by name -------------------------------------
    def mentioned_entities(self, text: str, story_time: int | None, gate: bool = True) -> tuple[list[int], list[str]]:
        """Entities named in ``text``: (visible ids, names of the ones the gate hides or the world lacks)."""
        seen, hidden = [], []
        if self._alias_re is None:
            return seen, hidden
        for m in self._alias_re.finditer(text):
            token = m.group(0)
            ids = self.aliases.get(token) or self.aliases.get(token.lower()) or []
            if not ids and token[0].isupper() is False:
                continue
            if not ids:  # a case-sensitive alias typed in another case ("nemo", "NAUTILUS")
                ids = next((v for k, v in self.aliases.items() if k.lower() == token.lower()), [])
            for eid in ids:
                row = self.entities[eid]
                if not gate or visible(row.known_from, row.valid_until, story_time):
                    if eid not in seen:
                        seen.append(eid)
                elif token not in hidden:
                    hidden.append(token)
        return seen, hidden

    def known_word(self, word: str, story_time: int | None, gate: bool = True) -> bool:
        """Whether the novel has used ``word`` by ``story_time`` (any time, with the gate off)."""
        first = self.vocab.get(word.lower().replace("\u2019", "'")) or self.vocab.get(word.lower().replace("'", "\u2019"))
        return first is not None and (not gate or story_time is None or first <= story_time)

    # -- retrieval -------------------------------------------------------------------------------
    def embed(self, text: str) -> np.ndarray:
        return self.embedder.encode([text])[0]

    def retrieve(self, query: str, story_time: int | None, k_entities: int = 5, k_facts: int = 8, k_lines: int = 3,
                 gate: bool = True, speaker: str | None = None, user_id: str | None = None,
                 audience: str | None = None, vector: np.ndarray | None = None) -> Retrieved:
        """Entities, facts and (for ``speaker``) lines relevant to ``query`` that the gate lets through.

        Session facts (what a user told a character) are included only for that ``user_id`` and
        ``audience`` (the character's persona key)."""
        if gate and story_time is None:
            raise ValueError("retrieval with the gate on needs a story time")
        q = self.embed(query) if vector is None else vector
        out = Retrieved(query, story_time, gate)
        mentioned, _ = self.mentioned_entities(query, story_time, gate)
        for eid in mentioned:
            row = self.entities[eid]
            out.mentioned.append(self._hit("entity", eid, row, 1.0))
        for eid, score in self.entity_index.search(q, k_entities, story_time, gate):
            if eid not in mentioned:
                out.entities.append(self._hit("entity", eid, self.entities[eid], score))
        for eid in mentioned:  # the description of a named entity is a candidate answer ("Who is X?")
            row, pos = self.entities[eid], self._entity_pos.get(eid)
            if " is " in row.text and pos is not None:
                out.descriptions.append(self._hit("entity", eid, row, 1.0, float(self.entity_index.matrix[pos] @ q)))
        focus = {e.id for e in out.mentioned} | {e.id for e in out.entities[:2]}
        allow = self._allowed_facts(user_id, audience)
        query_terms = content_words(query) + [t for pattern, extra in EXPANSIONS if pattern.search(query)
                                              for t in content_words(extra)]
        # One product with the whole fact matrix serves every channel below.
        with self._lock:
            ids, matrix, known = self.fact_index.ids, self.fact_index.matrix, self.fact_index.known_from
            mask = self.fact_index.mask(story_time, gate)
        if len(allow) < len(ids):  # facts added since ``allow`` was computed stay out
            allow = np.concatenate([allow, np.zeros(len(ids) - len(allow), dtype=bool)])
        keep = mask & allow[: len(ids)]
        cosine = matrix @ q.astype(np.float32)  # (N,)
        visible_scores = np.where(keep, cosine, -np.inf)
        pool: dict[int, int] = {}  # fact id -> row

        def take(scores: np.ndarray, k: int) -> None:
            k = min(k, int(np.isfinite(scores).sum()))
            if k > 0:
                for row in np.argpartition(-scores, k - 1)[:k]:
                    if np.isfinite(scores[row]):
                        pool.setdefault(int(ids[row]), int(row))

        take(visible_scores, max(60, 4 * k_facts))  # the vector channel
        # The lexical channel: BM25 over the same gated rows.
        n = self.keywords.n
        bm25 = np.where(keep[:n], self.keywords.scores(query_terms), 0.0)
        best = float(bm25.max()) if n else 0.0
        if best > 0:
            take(np.where(bm25 > 0, bm25, -np.inf), 30)
        if story_time is not None:
            # Recent memories: the best matches among the last chapters lived (episodic recency,
            # as in generative agents), so a question about what just happened finds it.
            take(np.where(known >= story_time - RECENT_CHAPTERS, visible_scores, -np.inf), RECENT_K)
        context: dict[int, float] = {}
        for pid, pscore in self.passage_index.search(q, 6, story_time, gate):
            for row in self.passage_members[pid]:
                if keep[row]:
                    fid = int(ids[row])
                    context[fid] = max(context.get(fid, 0.0), pscore)
                    pool.setdefault(fid, row)
        candidates = []
        for fid, row_index in pool.items():
            row = self.facts.get(fid)
            if row is None:  # forgotten since the mask was taken
                continue
            lexical = float(bm25[row_index]) / best if best > 0 and row_index < n else 0.0
            linked = bool(focus & set(row.related))
            named = bool(set(mentioned) & set(row.related))
            score = float(cosine[row_index])
            candidates.append((score + 0.3 * lexical + 0.05 * linked + 0.1 * named + 0.2 * context.get(fid, 0.0), fid))
        seen_text = set()
        for score, fid in sorted(candidates, reverse=True):
            row = self.facts.get(fid)
            if row is None:
                continue
            if row.text in seen_text:
                continue
            seen_text.add(row.text)
            out.facts.append(self._hit("fact", fid, row, score, float(cosine[pool[fid]]), context.get(fid, 0.0)))
            if len(out.facts) >= k_facts:
                break
        if speaker is not None and speaker in self.entity_by_name and k_lines > 0:
            sid = self.entity_by_name[speaker]
            allow_lines = (self.line_index.group == sid) & self._line_tagged
            for lid, score in self.line_index.search(q, k_lines, story_time, gate, allow_lines):
                out.lines.append(self._hit("line", lid, self.lines[lid], score))
        if gate:  # defence in depth: nothing from after the narrative present leaves this method
            for hit in out.items():
                if not visible(hit.known_from, hit.valid_until, story_time):
                    raise AssertionError(f"gate breach: {hit.kind} {hit.id} known from {hit.known_from} at {story_time}")
        return out

    def _allowed_facts(self, user_id: str | None, audience: str | None) -> np.ndarray:
        with self._lock:
            private = self._fact_private.copy()
            ids = self.fact_index.ids
        allow = ~private
        if user_id is not None and private.any():
            for i in np.flatnonzero(private):
                row = self.facts.get(int(ids[i]))  # None: forgotten
                if row is not None and row.user_id == user_id and (audience is None or row.audience == audience):
                    allow[i] = True
        return allow

    def user_facts(self, user_id: str, audience: str | None, story_time: int | None, gate: bool = True) -> list[Hit]:
        """Everything this user told this character that the gate lets through, oldest first."""
        out = []
        for fid, row in list(self.facts.items()):
            if row.user_id == user_id and (audience is None or row.audience == audience) and (
                    not gate or visible(row.known_from, row.valid_until, story_time)):
                out.append(self._hit("fact", fid, row, 1.0))
        return out

    def add_fact(self, fact_id: int, subject_id: int, subject_name: str, text: str, vector: np.ndarray,
                 known_from: int, user_id: str | None, audience: str | None, origin: str = "session") -> None:
        """Make a fact written after loading (session memory) searchable at once."""
        with self._lock:
            self.facts[fact_id] = _Row(text, known_from, None, subject_name, None, origin, (subject_id,), user_id, audience)
            self._fact_private = np.append(self._fact_private, user_id is not None)
            self.fact_index.add(fact_id, vector, known_from, None)

    def add_entity(self, entity_id: int, name: str, kind: str, description: str, known_from: int) -> None:
        """Register an entity written after loading (a user node; not searchable by embedding)."""
        with self._lock:
            self.entities[entity_id] = _Row(description, known_from, None, name, None, "session", (entity_id,))
            self.kinds[entity_id] = kind
            self.entity_by_name[name] = entity_id

    def drop_facts(self, fact_ids) -> None:
        """Forget facts deleted from the world (a visitor forgotten, or past the retention limits)."""
        fact_ids = list(fact_ids)
        with self._lock:
            for fid in fact_ids:
                self.facts.pop(fid, None)
            self.fact_index.drop(fact_ids)

    def drop_entities(self, entity_ids) -> None:
        """Forget entities deleted from the world (a forgotten visitor's user node)."""
        with self._lock:
            for eid in entity_ids:
                row = self.entities.pop(eid, None)
                self.kinds.pop(eid, None)
                if row is not None and self.entity_by_name.get(row.name) == eid:
                    del self.entity_by_name[row.name]

    @staticmethod
    def _hit(kind: str, item_id: int, row: _Row, score: float, cosine: float | None = None, context: float = 0.0) -> Hit:
        return Hit(kind, item_id, row.text, float(score), row.known_from, row.valid_until, row.name, row.chapter,
                   row.origin, row.related, row.speaker, float(score if cosine is None else cosine), float(context))
