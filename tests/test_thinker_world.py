"""World building: extraction with story times and source spans, the SQLite schema (WAL, versioned),
idempotent and atomic rebuilds that keep session memory, and the whole novel when it is present."""

import sqlite3
from pathlib import Path

import pytest

from anima.thinker.data.build import build_world
from anima.thinker.data.extract import NovelError, extract, read_novel
from anima.thinker.data.sample import write_sample_novel
from anima.thinker.persona import all_personas
from anima.thinker.text import clean, narrator_to_third_person, sentences, shorten
from anima.thinker.world import SCHEMA_VERSION, World, WorldError

pytestmark = pytest.mark.unit
NOVEL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "novels" / "twenty-thousand-leagues"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    novel = write_sample_novel(root / "novel")
    result = build_world(novel, root / "toy.db", embedder="hash")
    return novel, root / "toy.db", result


def _extraction(novel):
    personas = all_personas()
    return extract(read_novel(novel), [a for p in personas for a in p.attributions()],
                   next(p.entity for p in personas if p.narrator))


def test_text_helpers():
    assert clean("Captain Nemo;7 to me,  in \u201965 it was") == "Captain Nemo; to me, in \u201965 it was"
    p = "Mr. Land spoke. Did he? Yes! \u201cNo,\u201d I said."
    assert [p[a:b] for a, b in sentences(p)] == ["Mr. Land spoke.", "Did he?", "Yes!", "\u201cNo,\u201d I said."]
    assert narrator_to_third_person("I saw my friend; I\u2019m sure he saw me.", "Professor Aronnax") == \
        "Professor Aronnax saw his friend; he is sure he saw him."
    assert shorten("a " * 100, 10).count("a") <= 10


def test_extraction_stamps_story_times_and_spans(toy):
    novel, _, _ = toy
    ex = _extraction(novel)
    chapters = {c.index: c.text for c in ex.chapters}
    assert [c.index for c in ex.chapters] == [1, 2, 3, 4, 5, 6]
    assert ex.entities["Captain Nemo"].kind == "character" and ex.entities["Captain Nemo"].known_from == 3
    assert ex.entities["Ned Land"].known_from == 1 and "Ned" in ex.entities["Ned Land"].aliases
    assert ex.entities["Nautilus"].kind == "vessel"
    for fact in ex.facts:
        a, b = fact.span
        assert fact.known_from == fact.chapter and 0 <= a < b <= len(chapters[fact.chapter])
        if fact.valid_until is not None:
            assert fact.valid_until > fact.known_from
    positions = [f for f in ex.facts if f.predicate == "located_at"]
    assert positions and positions[0].valid_until == positions[1].known_from  # true until the next position
    speakers = {(ln.speaker, ln.chapter) for ln in ex.lines}
    assert ("Ned Land", 1) in speakers and ("Conseil", 1) in speakers and ("Captain Nemo", 3) in speakers
    assert ("Professor Aronnax", 2) in speakers  # the narrator's "I said"
    for line in ex.lines:
        assert line.text.split(",")[0] in chapters[line.chapter]
    assert ex.vocab["whirlpool"][0] == 6


def test_world_schema_and_wal(toy):
    _, db, result = toy
    assert not result.skipped and result.counts["facts"] > 5
    with World.open(db) as world:
        c = world.conn
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert world.meta["embedder"] == "hash" and world.chapters == 6 and world.integrity_ok()
        # a source span points into the stored chapter text
        text, chapter, a, b = c.execute("SELECT f.text, f.chapter, f.span_start, f.span_end FROM facts f "
                                        "WHERE f.text LIKE '%harpoon rang%'").fetchone()
        chapter_text = c.execute("SELECT text FROM chapters WHERE idx = ?", (chapter,)).fetchone()[0]
        assert "harpoon rang" in chapter_text[a:b] and chapter == 2


def test_rebuild_is_idempotent_and_keeps_session_memory(toy, tmp_path):
    novel, db, first = toy
    again = build_world(novel, db, embedder="hash")
    assert again.skipped and again.build_id == first.build_id
    copy = tmp_path / "w.db"
    build_world(novel, copy, embedder="hash")
    with World.open(copy) as world:  # a session remembered something
        c = world.conn
        uid = c.execute("INSERT INTO entities(name, kind, known_from, origin) VALUES ('user:u','user',1,'session')").lastrowid
        c.execute("INSERT INTO facts(subject_id, predicate, text, known_from, origin, user_id, audience) "
                  "VALUES (?,?,?,?,?,?,?)", (uid, "name", "The visitor's name is Ada.", 2, "session", "u", "nemo"))
    forced = build_world(novel, copy, embedder="hash", force=True)
    assert not forced.skipped and forced.build_id == first.build_id
    with World.open(copy) as world:
        assert world.conn.execute("SELECT count(*) FROM facts WHERE text LIKE '%Ada%'").fetchone()[0] == 1
    assert not list(tmp_path.glob("w.db.building-*"))


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(NovelError, match="not a directory"):
        read_novel(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NovelError, match="no chapter files"):
        read_novel(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "c1.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(NovelError, match="not UTF-8"):
        read_novel(tmp_path / "bad")
    with pytest.raises(WorldError, match="not found"):
        World.open(tmp_path / "none.db")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(WorldError, match="not a readable world"):
        World.open(tmp_path / "junk.db")
    with pytest.raises(ValueError, match="unknown embedder"):
        build_world(write_sample_novel(tmp_path / "n"), tmp_path / "o.db", embedder="bert")


def test_newer_schema_is_refused(toy, tmp_path):
    novel, _, _ = toy
    db = tmp_path / "new.db"
    build_world(novel, db, embedder="hash")
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(WorldError, match="newer than this anima"):
        World.open(db)


@pytest.mark.skipif(not NOVEL.is_dir(), reason="the novel is not in ../shared/data")
def test_the_whole_novel_extracts_with_sensible_story_times():
    ex = _extraction(NOVEL)
    assert len(ex.chapters) == 47
    assert ex.entities["Captain Nemo"].known_from >= 8  # he enters in chapter 8 and is named in 10
    assert ex.entities["Ned Land"].known_from == 4 and ex.entities["Conseil"].known_from == 3
    assert ex.entities["Nautilus"].kind == "vessel" and ex.entities["Abraham Lincoln"].kind == "vessel"
    assert ex.vocab["atlantis"][0] == 33 and ex.vocab["maelstrom"][0] == 46
    assert len(ex.facts) > 2000 and len(ex.lines) > 800
    by_speaker = {p.entity: sum(1 for ln in ex.lines if ln.speaker == p.entity) for p in all_personas()}
    assert all(n > 100 for n in by_speaker.values()), by_speaker


def _chapter_novel(tmp_path, text: str) -> Path:
    novel = tmp_path / "novel"
    novel.mkdir()
    (novel / "chapter01.txt").write_text("Chapter I: Figures\n\n" + text, encoding="utf-8")
    return novel


def test_a_speech_over_several_paragraphs_and_a_speech_introduced_by_a_colon_keep_their_speaker(tmp_path):
    novel = _chapter_novel(tmp_path, (
        "Captain Nemo showed me a drawing of his ship. Then he began his description as follows:\n\n"
        "\u201cHere, professor, are the dimensions of this boat. The length of this cylinder is exactly seventy meters.\n\n"
        "\u201cIts breadth of beam is eight meters, and it weighs fifteen hundred tons.\u201d\n\n"
        "I listened in silence. The Canadian said nothing at all.\n\n"
        "\u201cThat must be a fine piece of engineering,\u201d Conseil replied.\n\n"
        "The cutlery bore a Latin motto, and here is its exact duplicate:\n\n"
        "Mobilis In Mobili\n\n"
        "We went on with our meal in silence. The Scotia\u2019s hull had been pierced below the waterline, "
        "and the officers of the Scotia could not explain it."))
    ex = _extraction(novel)
    said = {ln.text.split(".")[0]: (ln.speaker, ln.attribution) for ln in ex.lines}
    assert said["Here, professor, are the dimensions of this boat"] == ("Captain Nemo", "intro")
    assert said["Its breadth of beam is eight meters, and it weighs fifteen hundred tons"] == ("Captain Nemo", "intro")
    assert said["That must be a fine piece of engineering,"][0] == "Conseil"
    length = next(f for f in ex.facts if "seventy meters" in f.text)
    assert length.speaker == "Captain Nemo"  # a sentence naming nobody is still the speaker's knowledge
    motto = next(f for f in ex.facts if "Latin motto" in f.text)
    assert motto.text.endswith("here is its exact duplicate: Mobilis In Mobili")  # the displayed line is told
    assert not any(f.text.startswith("Mobilis") for f in ex.facts)
    assert ex.entities["Scotia"].kind == "vessel"  # "the Scotia's hull", "the officers of the Scotia"


def test_shorten_keeps_the_clauses_that_answer_and_never_breaks_one_when_asked():
    text = ("In 1868, on this 21st day of March, I myself, Captain Nemo, have reached the South Pole at 90 degrees, "
            "and I hereby claim this entire part of the globe, equal to one-sixth of the known continents.")
    short = shorten(text, 32, {"march", "day", "reach", "south", "pole"})
    assert "21st day of March" in short and "reached the South Pole" in short
    assert shorten(text, 3, {"march"}, whole_clauses=True) == ""
    assert len(shorten(text, 3, {"march"}).split()) <= 3


def _open_and_check(home: str, out, barrier) -> None:
    """One process: open the user's world copy, then check the file a second thread opens is the one
    this process opened and migrated (a concurrent refresh used to swap it for an unmigrated copy)."""
    import os
    import threading
    import time

    os.environ["ANIMA_HOME"] = home
    barrier.wait(60)
    world = World.open_default()
    first = os.fstat(os.open(world.path, os.O_RDONLY)).st_ino
    time.sleep(0.3)  # the other processes finish their copies meanwhile
    seen = []
    thread = threading.Thread(target=lambda: seen.append(
        world.conn.execute("SELECT count(*) FROM turn_rewards").fetchone()[0]))
    thread.start()
    thread.join()
    out.put((first, os.stat(world.path).st_ino, seen))


def test_processes_starting_together_share_one_migrated_user_copy(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out, barrier = ctx.Queue(), ctx.Barrier(4)
    procs = [ctx.Process(target=_open_and_check, args=(str(tmp_path), out, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert all(first == now and seen == [0] for first, now, seen in results), results
    copy = tmp_path / "worlds" / "twenty-thousand-leagues.db"
    assert sqlite3.connect(copy).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert not list(copy.parent.glob("*.copy-*"))
