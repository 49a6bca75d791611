"""``anima world build``: novel directory in, world database out (atomic, idempotent).

    anima world build /path/to/novel -o world.db [--embedder minilm|hash] [--force]
                      [--llm-url http://localhost:8080/v1 --llm-model NAME]

The build reads the chapters, extracts entities, facts and lines offline (plus an LLM's, when a
backend is given), embeds them, and writes a new database next to the output
(``world.db.building-PID``), which replaces the output in one ``os.replace`` only when complete: a
build killed at any moment leaves the previous world untouched (stale temporaries are removed by
the next build). Session memory in the previous world (what users told the characters) is carried
into the new one. A second build of the same inputs is a no-op ("up to date") unless ``--force``;
a forced rebuild gives the same ``build_id`` (a hash of the graph's content).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anima.embed import get_embedder, to_blob
from anima.thinker.data.extract import EXTRACTOR_VERSION, Extraction, extract, read_novel
from anima.thinker.persona import all_personas
from anima.thinker.world import (
    SCHEMA_VERSION,
    _connect,
    carry_memory,
    create_schema,
    read_meta,
    replace_file,
    transaction,
)

log = logging.getLogger(__name__)
EMBED_BATCH = 128


@dataclass
class BuildResult:
    path: Path
    skipped: bool  # the output was already up to date
    seconds: float
    bytes: int
    counts: dict[str, int]
    build_id: str


def source_hash(chapter_hashes: list[str], embedder: str, llm: str | None) -> str:
    """What the world is built from: chapters, personas, extractor, embedder, schema, LLM."""
    h = hashlib.sha256()
    for part in [*chapter_hashes, EXTRACTOR_VERSION, embedder, str(SCHEMA_VERSION), llm or "-"]:
        h.update(part.encode())
    for persona in all_personas():  # only what the extraction uses: how the text names each speaker
        h.update(repr((persona.key, persona.entity, persona.narrator, persona.attribution)).encode())
    here = Path(__file__).parent
    for module in (here / "extract.py", here.parent / "text.py", here / "build.py"):  # a changed extractor is a different world
        h.update(module.read_bytes())
    return h.hexdigest()


def content_hash(ex: Extraction) -> str:
    """A hash of the graph's content (not its embeddings): equal for equal rebuilds."""
    h = hashlib.sha256()
    for e in sorted(ex.entities.values(), key=lambda e: e.key):
        h.update(repr((e.key, e.kind, e.known_from, sorted(e.aliases), e.description)).encode())
    for f in ex.facts:
        h.update(repr((f.subject, f.predicate, f.object, f.text, f.known_from, f.valid_until, f.span, f.speaker)).encode())
    for ln in ex.lines:
        h.update(repr((ln.speaker, ln.text, ln.chapter, ln.span)).encode())
    return h.hexdigest()[:16]


class _Progress:
    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="building world", unit="step", mininterval=0.3,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")

    def stage(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(name)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _embed_all(texts: list[str], embedder_name: str, progress: _Progress) -> dict[str, bytes]:
    embedder = get_embedder(embedder_name, threads=1)
    unique = list(dict.fromkeys(texts))
    out: dict[str, bytes] = {}
    for i in range(0, len(unique), EMBED_BATCH):
        batch = unique[i:i + EMBED_BATCH]
        for text, vector in zip(batch, embedder.encode(batch, batch_size=64), strict=True):
            out[text] = to_blob(vector)
        progress.advance(len(batch))
    return out


def entity_text(name: str, kind: str, description: str) -> str:
    return f"{name} ({kind}). {description}"


def _write(conn: sqlite3.Connection, ex: Extraction, vectors: dict[str, bytes], meta: dict[str, str]) -> None:
    create_schema(conn)
    with transaction(conn):
        conn.executemany("INSERT INTO chapters VALUES (?,?,?,?,?)",
                         [(c.index, c.heading, c.file, c.sha256, c.text) for c in ex.chapters])
        ids: dict[str, int] = {}
        for e in sorted(ex.entities.values(), key=lambda e: (e.known_from, e.key)):
            ids[e.key] = conn.execute(
                "INSERT INTO entities(name, kind, description, known_from, mentions, origin, embedding) "
                "VALUES (?,?,?,?,?,?,?)",
                (e.key, e.kind, e.description, e.known_from, e.mentions, e.origin,
                 vectors[entity_text(e.key, e.kind, e.description)])).lastrowid
            conn.executemany("INSERT OR IGNORE INTO aliases VALUES (?,?,?)",
                             [(a, ids[e.key], int(e.case_sensitive)) for a in sorted(e.aliases)])
        conn.executemany(
            "INSERT INTO facts(subject_id, predicate, object_id, text, known_from, valid_until, chapter, span_start, "
            "span_end, origin, speaker_id, embedding) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(ids[f.subject], f.predicate, ids.get(f.object) if f.object else None, f.text, f.known_from,
              f.valid_until, f.chapter, f.span[0] if f.span else None, f.span[1] if f.span else None, f.origin,
              ids.get(f.speaker) if f.speaker else None, vectors[f.text]) for f in ex.facts])
        conn.executemany(
            "INSERT INTO lines(speaker_id, text, chapter, known_from, span_start, span_end, attribution, embedding) "
            "VALUES (?,?,?,?,?,?,?,?)",
            [(ids[ln.speaker], ln.text, ln.chapter, ln.chapter, ln.span[0], ln.span[1], ln.attribution,
              vectors[ln.text]) for ln in ex.lines])
        conn.executemany("INSERT INTO vocab VALUES (?,?,?)", [(w, f, n) for w, (f, n) in sorted(ex.vocab.items())])
        conn.executemany("INSERT INTO meta VALUES (?,?)", sorted(meta.items()))


def _remove_stale(out: Path) -> None:
    for stale in out.parent.glob(out.name + ".building-*"):
        pid = stale.name.rsplit("-", 1)[-1].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid():
            with contextlib.suppress(OSError):
                os.kill(int(pid), 0)
                continue  # another build is running
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def build_world(novel_dir: str | Path, out: str | Path, embedder: str = "minilm", force: bool = False,
                llm_extractor: Callable[[Extraction], None] | None = None, llm_name: str | None = None,
                progress: bool = False) -> BuildResult:
    """Build (or rebuild) the world database of a novel; see the module docstring."""
    start = time.perf_counter()
    novel_dir, out = Path(novel_dir), Path(out)
    get_embedder(embedder)  # an unknown name fails before any work
    chapters = read_novel(novel_dir)
    src_hash = source_hash([c.sha256 for c in chapters], embedder, llm_name)
    previous = read_meta(out)
    if previous is not None and previous.get("source_hash") == src_hash and not force:
        return BuildResult(out, True, time.perf_counter() - start, out.stat().st_size, {}, previous.get("build_id", ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    personas = all_personas()
    attributions = [a for p in personas for a in p.attributions()]
    narrator = next((p.entity for p in personas if p.narrator), None)
    bar = _Progress(progress, 3)
    try:
        ex = extract(chapters, attributions, narrator, progress=lambda s: (bar.stage(s), bar.advance()))
        if llm_extractor is not None:
            bar.stage("llm extraction")
            llm_extractor(ex)
        texts = ([entity_text(e.key, e.kind, e.description) for e in ex.entities.values()]
                 + [f.text for f in ex.facts] + [ln.text for ln in ex.lines])
        if bar.bar is not None:
            bar.bar.total = 3 + len(set(texts)) + 1
            bar.bar.refresh()
        bar.stage("embedding")
        vectors = _embed_all(texts, embedder, bar)
        bar.stage("writing")
        build_id = content_hash(ex)
        dim = len(next(iter(vectors.values()))) // 2 if vectors else 384
        meta = {"schema_version": str(SCHEMA_VERSION), "source_hash": src_hash, "build_id": build_id,
                "embedder": embedder, "dim": str(dim), "chapters": str(len(chapters)),
                "extractor": EXTRACTOR_VERSION + (f"+llm:{llm_name}" if llm_name else ""),
                "novel": novel_dir.name, "narrator": narrator or "", "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        tmp = out.with_name(out.name + f".building-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        conn = _connect(tmp, readonly=False)
        try:
            conn.execute("PRAGMA synchronous=OFF")  # nobody sees the file until it is complete and synced
            _write(conn, ex, vectors, meta)
            if previous is not None:
                old = _connect(out, readonly=False)
                try:
                    with transaction(conn):
                        carried = carry_memory(old, conn)
                    if carried:
                        log.info("kept %d remembered facts from the previous world", carried)
                    old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    old.close()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            # At rest a world is one file: no -wal/-shm beside it, and readable from a read-only
            # directory (an installed package). Opening it for writing switches WAL back on.
            conn.execute("PRAGMA journal_mode=DELETE")
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("entities", "facts", "lines", "vocab")}
        finally:
            conn.close()
        replace_file(tmp, out)
        bar.advance()
    finally:
        bar.close()
    return BuildResult(out, False, time.perf_counter() - start, out.stat().st_size, counts, build_id)
