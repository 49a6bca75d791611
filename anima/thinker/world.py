"""The world database: a diegetic knowledge graph in one SQLite file (WAL), versioned.

    world = World.open(path)                      # read-write (session memory is written here)
    world = World.open(path, readonly=True)       # evaluation, benchmarks
    world = World.open_default()                  # the shipped world, copied to ANIMA_HOME on first use
    world = World.open_memory(path_or_None)       # where sessions write: the user copy of a shipped world

The shipped worlds (``anima/assets/worlds/``, tracked in git) are never opened for writing: a
session that uses one writes to the user's copy (``data_home()/worlds/NAME.db``), which holds the
world plus that machine's session memory (see ``anima.thinker.memory``).

Tables (``SCHEMA``): ``entities`` (characters, places, vessels, creatures, objects, users) with
``aliases``; ``facts`` (relation edges subject -> object, or attribute facts with no object);
``lines`` (quoted speech with its speaker); ``vocab`` (each word of the novel and the chapter it
first appears in); ``chapters`` (the cleaned text the source spans point into); ``sessions`` and
``session_turns`` (per-user conversation state); ``session_ratings`` (a visitor's 1-5 rating of a
session) and ``turn_rewards`` (that rating split over the character's replies, with the user's
reaction features and plain-language descriptors as JSON; ``anima.thinker.reward``). Every entity, fact and line has ``known_from``: the
story time (chapter index, 1-based) at which it becomes known; a fact that stops being true has
``valid_until`` (the first story time at which it no longer holds). Embeddings are float16 blobs on
the rows. ``PRAGMA user_version`` is the schema version: v2 added the two rating tables (``MIGRATIONS[1]``;
a v1 file opened writable is upgraded in place, keeping its data; read-only, a v1 file is read as
it is, without ratings).

Connections are per thread (the runtime calls the thinker from worker threads). Writes run in
``BEGIN IMMEDIATE`` transactions with ``synchronous=FULL``: a process killed at any point leaves the
file with every committed transaction and nothing half-written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
READABLE_FROM = 1  # oldest schema a read-only open accepts (v2 only added session tables)
SHIPPED_WORLDS = Path(__file__).resolve().parent.parent / "assets" / "worlds"
WORLD_ASSET = SHIPPED_WORLDS / "twenty-thousand-leagues.db"

# Schema migrations: MIGRATIONS[v] upgrades a version-v file to v + 1 (SQL run in one transaction).
# v1 -> v2: session ratings and turn rewards (issue 17, reward decomposition).
RATING_TABLES = """
CREATE TABLE IF NOT EXISTS session_ratings(
  session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE, user_id TEXT NOT NULL,
  rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5), oracle TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS session_ratings_user ON session_ratings(user_id);
CREATE TABLE IF NOT EXISTS turn_rewards(
  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE, turn INTEGER NOT NULL, reward REAL NOT NULL,
  valence REAL NOT NULL, descriptors TEXT NOT NULL, features TEXT NOT NULL, PRIMARY KEY(session_id, turn));
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chapters(
  idx INTEGER PRIMARY KEY, heading TEXT NOT NULL, file TEXT NOT NULL, sha256 TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entities(
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
  known_from INTEGER NOT NULL, valid_until INTEGER, mentions INTEGER NOT NULL DEFAULT 0, origin TEXT NOT NULL,
  embedding BLOB, CHECK (valid_until IS NULL OR valid_until > known_from));
CREATE TABLE IF NOT EXISTS aliases(
  alias TEXT NOT NULL, entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
  case_sensitive INTEGER NOT NULL DEFAULT 1, PRIMARY KEY(alias, entity_id));
CREATE TABLE IF NOT EXISTS facts(
  id INTEGER PRIMARY KEY, subject_id INTEGER NOT NULL REFERENCES entities(id), predicate TEXT NOT NULL,
  object_id INTEGER REFERENCES entities(id), text TEXT NOT NULL, known_from INTEGER NOT NULL, valid_until INTEGER,
  chapter INTEGER, span_start INTEGER, span_end INTEGER, origin TEXT NOT NULL,
  speaker_id INTEGER REFERENCES entities(id), user_id TEXT, audience TEXT, session_id TEXT, created_at TEXT, embedding BLOB,
  CHECK (valid_until IS NULL OR valid_until > known_from));
CREATE INDEX IF NOT EXISTS facts_known ON facts(known_from);
CREATE INDEX IF NOT EXISTS facts_subject ON facts(subject_id);
CREATE INDEX IF NOT EXISTS facts_user ON facts(user_id, audience);
CREATE TABLE IF NOT EXISTS lines(
  id INTEGER PRIMARY KEY, speaker_id INTEGER NOT NULL REFERENCES entities(id), text TEXT NOT NULL,
  chapter INTEGER NOT NULL, known_from INTEGER NOT NULL, span_start INTEGER, span_end INTEGER,
  attribution TEXT NOT NULL, embedding BLOB);
CREATE TABLE IF NOT EXISTS vocab(word TEXT PRIMARY KEY, first_chapter INTEGER NOT NULL, count INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions(
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, character TEXT NOT NULL, story_time INTEGER NOT NULL,
  started_at TEXT NOT NULL, updated_at TEXT NOT NULL, turns INTEGER NOT NULL DEFAULT 0,
  summary TEXT NOT NULL DEFAULT '', goals TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id, character, updated_at);
CREATE TABLE IF NOT EXISTS session_turns(
  session_id TEXT NOT NULL REFERENCES sessions(id), idx INTEGER NOT NULL, speaker TEXT NOT NULL, text TEXT NOT NULL,
  interrupted INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, PRIMARY KEY(session_id, idx));
""" + RATING_TABLES.lstrip("\n")  # the v2 tables, also MIGRATIONS[1]

MIGRATIONS: dict[int, str] = {1: RATING_TABLES}


class WorldError(ValueError):
    """A world file is missing, not a world, too new, or corrupt; the message says which."""


def data_home() -> Path:
    """Where per-user state lives: $ANIMA_HOME, else $XDG_DATA_HOME/anima, else ~/.local/share/anima."""
    if os.environ.get("ANIMA_HOME"):
        return Path(os.environ["ANIMA_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "anima"


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` is one of the worlds shipped with anima (read-only: sessions use a user copy)."""
    return Path(path).resolve().parent == SHIPPED_WORLDS


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            # A WAL file in a read-only directory (an installed package) cannot get its -shm file;
            # "immutable" reads it as a plain file, which is right for a world nobody writes to.
            conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only=1")
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def migrate(conn: sqlite3.Connection, where: str) -> None:
    """Bring a world file to SCHEMA_VERSION, or raise WorldError if it cannot be."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise WorldError(f"{where}: world schema v{version} is newer than this anima (v{SCHEMA_VERSION}); upgrade anima")
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise WorldError(f"{where}: world schema v{version} cannot be upgraded; rebuild it with `anima world build`")
        with transaction(conn):
            for statement in _statements(MIGRATIONS[version]):  # executescript would COMMIT first
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={version + 1}")
        version += 1


def _statements(script: str) -> list[str]:
    """The SQL statements of ``script``, one by one."""
    out, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {pending.strip()[:60]!r}")
    return out


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): all of it is saved, or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class World:
    """An open world database. Thread-safe: each thread gets its own SQLite connection."""

    def __init__(self, path: Path, readonly: bool, meta: dict[str, str]) -> None:
        self.path, self.readonly, self.meta = path, readonly, meta
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, readonly: bool = False) -> World:
        """Open an existing world (raises WorldError with the reason if it is not one)."""
        path = Path(path)
        if not path.is_file():
            raise WorldError(f"{path}: world file not found (build one with `anima world build NOVEL_DIR -o {path}`)")
        if not readonly and is_shipped(path):
            raise WorldError(f"{path}: a shipped world is read-only; sessions write to the user copy "
                             "(World.open_memory or World.open_default)")
        try:
            conn = _connect(path, readonly)
            if not readonly:
                migrate(conn, str(path))
            elif not READABLE_FROM <= conn.execute("PRAGMA user_version").fetchone()[0] <= SCHEMA_VERSION:
                raise WorldError(f"{path}: world schema is not v{READABLE_FROM}-v{SCHEMA_VERSION}; "
                                 "open it writable to migrate, or rebuild")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise WorldError(f"{path}: not a readable world database ({exc})") from None
        if "schema_version" not in meta:
            raise WorldError(f"{path}: not a world database (no meta table entries)")
        world = cls(path, readonly, meta)
        world._adopt(conn)
        return world

    @classmethod
    def open_default(cls, readonly: bool = False) -> World:
        """The shipped world: read-only in place, or the user's writable copy (for session memory)."""
        if readonly:
            return cls.open(WORLD_ASSET, readonly=True)
        return cls.open(user_copy(WORLD_ASSET))

    @classmethod
    def open_memory(cls, world: str | Path | None = None) -> World:
        """The writable world that sessions remember in: the user copy of a shipped world (``None``:
        the default one), or the caller's own world file as is."""
        if world is None:
            return cls.open_default()
        if is_shipped(world):
            return cls.open(user_copy(Path(world)))
        return cls.open(world)

    def _adopt(self, conn: sqlite3.Connection) -> None:
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self.readonly)
            self._adopt(conn)
        return conn

    @property
    def embedder_name(self) -> str:
        return self.meta.get("embedder", "minilm")

    @property
    def dim(self) -> int:
        return int(self.meta.get("dim", "384"))

    @property
    def chapters(self) -> int:
        return int(self.meta.get("chapters", "0"))

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def read_meta(path: Path) -> dict[str, str] | None:
    """A world file's meta table, or None if the file is missing or not a world."""
    if not path.is_file():
        return None
    for mode in ("mode=ro", "immutable=1"):  # immutable: a read-only directory with no -wal/-shm possible
        try:
            conn = sqlite3.connect(f"file:{path}?{mode}", uri=True)
            try:
                return dict(conn.execute("SELECT key, value FROM meta").fetchall())
            finally:
                conn.close()
        except sqlite3.Error:
            continue
    return None


def carry_memory(src: sqlite3.Connection, dst: sqlite3.Connection) -> int:
    """Copy what sessions wrote (user entities, session facts, sessions, turns) from one world file
    to another (a rebuild or an upgraded shipped world). Returns the number of facts carried."""
    ids: dict[int, int] = {}
    for row in src.execute("SELECT id, name, kind, description, known_from, valid_until, mentions, origin, embedding "
                           "FROM entities WHERE origin = 'session'"):
        existing = dst.execute("SELECT id FROM entities WHERE name = ?", (row[1],)).fetchone()
        if existing:
            ids[row[0]] = existing[0]
        else:
            ids[row[0]] = dst.execute(
                "INSERT INTO entities(name, kind, description, known_from, valid_until, mentions, origin, embedding) "
                "VALUES (?,?,?,?,?,?,?,?)", row[1:]).lastrowid
            for alias, sensitive in src.execute("SELECT alias, case_sensitive FROM aliases WHERE entity_id = ?", (row[0],)):
                dst.execute("INSERT OR IGNORE INTO aliases VALUES (?,?,?)", (alias, ids[row[0]], sensitive))
    carried = 0
    for row in src.execute("SELECT subject_id, predicate, object_id, text, known_from, valid_until, chapter, span_start, "
                           "span_end, origin, user_id, audience, session_id, created_at, embedding FROM facts "
                           "WHERE origin = 'session' ORDER BY id"):
        if row[0] not in ids:
            continue
        dst.execute("INSERT INTO facts(subject_id, predicate, object_id, text, known_from, valid_until, chapter, "
                    "span_start, span_end, origin, user_id, audience, session_id, created_at, embedding) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (ids[row[0]], row[1], ids.get(row[2]), *row[3:]))
        carried += 1
    dst.executemany("INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?,?,?)", src.execute("SELECT * FROM sessions"))
    dst.executemany("INSERT OR REPLACE INTO session_turns VALUES (?,?,?,?,?,?)", src.execute("SELECT * FROM session_turns"))
    if has_table(src, "session_ratings") and has_table(dst, "session_ratings"):  # a v1 source has none
        dst.executemany("INSERT OR REPLACE INTO session_ratings VALUES (?,?,?,?,?,?)",
                        src.execute("SELECT * FROM session_ratings"))
        dst.executemany("INSERT OR REPLACE INTO turn_rewards VALUES (?,?,?,?,?,?)", src.execute("SELECT * FROM turn_rewards"))
    return carried


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def user_copy(asset: Path) -> Path:
    """The user's writable copy of a shipped world (created, or refreshed when the shipped world
    changed, keeping the session memory of the old copy), always at SCHEMA_VERSION.

    Processes starting together (``anima serve --workers N``) take turns under a file lock: without
    it a second worker replaced the copy the first had already opened and migrated, so the first
    one's later connections found an unmigrated file and its writes went to an unlinked one.
    """
    if not asset.is_file():
        raise WorldError(f"{asset}: the shipped world is missing; build one with "
                         "`anima world build NOVEL_DIR -o world.db` and pass --world world.db")
    target = data_home() / "worlds" / asset.name
    shipped = read_meta(asset) or {}
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.with_name(target.name + ".lock")):
        current = read_meta(target)
        if current is not None and current.get("build_id") == shipped.get("build_id"):
            return target
        tmp = target.with_name(target.name + f".copy-{os.getpid()}")
        shutil.copyfile(asset, tmp)
        new = _connect(tmp, readonly=False)
        old = _connect(target, readonly=False) if current is not None else None
        try:
            migrate(new, str(tmp))  # the shipped file may be an older schema than this anima (or the copy's memory)
            if old is not None:
                with transaction(new):
                    n = carry_memory(old, new)
                log.info("refreshed %s from the shipped world, kept %d remembered facts", target, n)
                old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            new.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            new.close()
            if old is not None:
                old.close()
        replace_file(tmp, target)
    return target


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` between processes (a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process at a time is the documented setup there
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def replace_file(tmp: Path, target: Path) -> None:
    """Atomically put a finished (closed, checkpointed) database at ``target``."""
    for suffix in ("-wal", "-shm"):
        stale = target.with_name(target.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    with contextlib.suppress(OSError):
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def world_info(world: World) -> dict:
    """Counts and metadata, for ``anima world info`` and the benchmark."""
    c = world.conn
    counts = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("entities", "facts", "lines", "vocab", "sessions")}
    kinds = dict(c.execute("SELECT kind, count(*) FROM entities GROUP BY kind").fetchall())
    return {"path": str(world.path), "bytes": world.path.stat().st_size, **counts, "entity_kinds": kinds,
            "meta": dict(world.meta), "schema_version": SCHEMA_VERSION}
