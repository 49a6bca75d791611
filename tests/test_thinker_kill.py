"""kill -9 during a world build or while session memory is being written: the database still
opens, passes SQLite's integrity check, and holds everything committed before the kill."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from anima.thinker.data.build import build_world
from anima.thinker.data.sample import SAMPLE_CHAPTERS, write_sample_novel
from anima.thinker.world import World

pytestmark = pytest.mark.integration


def _big_novel(path, chapters=60):
    """The toy novel's paragraphs, many times over: a build that takes a few seconds."""
    path.mkdir(parents=True)
    paragraphs = [p for _, ps in SAMPLE_CHAPTERS for p in ps]
    for i in range(1, chapters + 1):
        body = "\n\n".join(p.replace("1866", str(1800 + i)) + f" It was day {i * 7 + j}." for j, p in
                           enumerate(paragraphs * 6))
        (path / f"chapter{i:02d}.txt").write_text(f"Chapter {i}\n\n{body}\n", encoding="utf-8")
    return path


def test_kill_during_a_world_build_keeps_the_previous_world(tmp_path):
    out = tmp_path / "world.db"
    first = build_world(write_sample_novel(tmp_path / "small"), out, embedder="hash")
    with World.open(out) as world:  # something a session committed before the rebuild
        c = world.conn
        uid = c.execute("INSERT INTO entities(name, kind, known_from, origin) VALUES ('user:k','user',1,'session')").lastrowid
        c.execute("INSERT INTO facts(subject_id, predicate, text, known_from, origin, user_id, audience) VALUES "
                  "(?,?,?,?,?,?,?)", (uid, "name", "The visitor's name is Kim.", 1, "session", "k", "ned"))
    big = _big_novel(tmp_path / "big")
    rng = random.Random(5)
    kills = 0
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "anima.cli", "world", "build", str(big), "-o", str(out),
                                 "--embedder", "hash", "--force", "--quiet"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.8, 3.0) + 1.5 * attempt)
        killed = proc.poll() is None
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with World.open(out) as world:
            assert world.integrity_ok()
            build_id = world.meta["build_id"]
            assert build_id == first.build_id or not killed  # a killed build never replaces the world
            kills += killed
            assert world.conn.execute("SELECT count(*) FROM facts WHERE text LIKE '%Kim%'").fetchone()[0] == 1
    assert kills >= 1
    # the next build finishes, keeps the memory, and clears the killed builds' temporary files
    result = build_world(big, out, embedder="hash", force=True)
    assert not list(tmp_path.glob("world.db.building-*"))
    with World.open(out) as world:
        assert world.meta["build_id"] == result.build_id
        assert world.conn.execute("SELECT count(*) FROM facts WHERE text LIKE '%Kim%'").fetchone()[0] == 1


CHILD = """
import sys
from anima.thinker.base import ThinkerContext
from anima.thinker.story import StoryThinker
thinker = StoryThinker.create("nemo", 4, world=sys.argv[1], user_id="victim")
for i in range(100000):
    thinker.respond(f"My name is Name{i}.", ThinkerContext())
    print(f"committed {i}", flush=True)
"""


def test_kill_while_writing_session_memory_keeps_every_committed_turn(tmp_path):
    out = tmp_path / "world.db"
    build_world(write_sample_novel(tmp_path / "novel"), out, embedder="hash")
    env = {**os.environ, "ANIMA_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    last = -1
    target = random.Random(3).randint(15, 40)
    deadline = time.monotonic() + 120
    while last < target and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        last = int(line.split()[1])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last >= target, "the child did not get going"
    with World.open(out) as world:
        assert world.integrity_ok()
        names = {r[0] for r in world.conn.execute("SELECT text FROM facts WHERE user_id = 'victim'")}
        assert all(f"The visitor's name is Name{i}." in names for i in range(last + 1))
        turns = world.conn.execute("SELECT turns FROM sessions WHERE user_id = 'victim'").fetchone()[0]
        assert turns >= last + 1
        # a new session of the same user resumes where the killed one left off
    from anima.thinker.story import StoryThinker

    thinker = StoryThinker.create("nemo", world=out, user_id="victim")
    assert thinker.story_time == 4
    thinker.close()
