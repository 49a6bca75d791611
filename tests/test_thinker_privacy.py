"""Visitor privacy in the story thinker's session memory: one memory per visitor id, forgetting a
visitor, retention limits, refused ids, and the shipped world never written by a session."""

import hashlib
import json

import pytest

from anima.thinker.base import ThinkerContext
from anima.thinker.data.build import build_world
from anima.thinker.data.sample import write_sample_novel
from anima.thinker.memory import Retention, list_users
from anima.thinker.persona import load_persona
from anima.thinker.retrieval import shared_retriever
from anima.thinker.story import StoryThinker, forget_visitor
from anima.thinker.world import WORLD_ASSET, World, WorldError

pytestmark = pytest.mark.unit

ZEBULON = "My name is Zebulon Quaritch, I am a nurse, I am afraid of octopuses."
A, B = "visitor-A-7f3k2q", "visitor_B_9x81mz"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy")
    return build_world(write_sample_novel(root / "novel"), root / "built.db", embedder="hash").path


@pytest.fixture()
def world(built, tmp_path, monkeypatch):
    """A fresh copy of the toy world per test (its own file, so its own shared retriever)."""
    monkeypatch.setenv("ANIMA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ANIMA_LLM_URL", raising=False)
    monkeypatch.delenv("ANIMA_USER", raising=False)
    path = tmp_path / "world.db"
    path.write_bytes(built.read_bytes())
    return path


def _rows(path, user):
    """Row counts of one user's data in the world file."""
    with World.open(path, readonly=True) as w:
        c = w.conn
        return {
            "sessions": c.execute("SELECT count(*) FROM sessions WHERE user_id = ?", (user,)).fetchone()[0],
            "turns": c.execute("SELECT count(*) FROM session_turns t JOIN sessions s ON s.id = t.session_id "
                               "WHERE s.user_id = ?", (user,)).fetchone()[0],
            "facts": c.execute("SELECT count(*) FROM facts WHERE user_id = ?", (user,)).fetchone()[0],
            "entities": c.execute("SELECT count(*) FROM entities WHERE name = ?", (f"user:{user}",)).fetchone()[0],
        }


def _ask(thinker, text):
    return thinker.respond(text, ThinkerContext()).speech


def test_a_second_visitor_does_not_hear_the_first_ones_name(world):
    default = min(load_persona("nemo").default_story_time, 6)
    told = 2 if default != 2 else 3
    a = StoryThinker.create("nemo", told, world=world, visitor=A)
    a.respond(ZEBULON, ThinkerContext())
    assert _rows(world, A)["facts"] == 3  # name, nurse, octopuses
    a.close()

    b = StoryThinker.create("nemo", world=world, visitor=B)  # a hello without a story time
    assert b.story_time == default  # not A's chapter: a new visitor starts empty
    for question in ("What is my name?", "Do you remember me? What do you know about me?"):
        speech = _ask(b, question)
        assert "Zebulon" not in speech and "nurse" not in speech and "octopus" not in speech
    assert shared_retriever(b.world).user_facts(B, "nemo", None, gate=False) == []

    again = StoryThinker.create("nemo", world=world, visitor=A)  # A comes back: still remembered
    assert again.story_time == told
    assert "Zebulon Quaritch" in _ask(again, "What is my name?")


def test_forget_removes_everything_of_one_visitor_and_nothing_of_another(world):
    for visitor, text in ((A, ZEBULON), (B, "My name is Bertha Pimm and I live in Oslo.")):
        for story_time in (3, 5):  # two sessions each
            thinker = StoryThinker.create("conseil", story_time, world=world, visitor=visitor)
            thinker.respond(text, ThinkerContext())
            thinker.respond("Tell me about the pearl.", ThinkerContext())
            thinker.close()
    before_b = _rows(world, B)
    assert _rows(world, A) == {"sessions": 2, "turns": 8, "facts": 3, "entities": 1}
    assert before_b["sessions"] == 2 and before_b["facts"] == 2

    live = StoryThinker.create("conseil", 5, world=world, visitor=A)  # a running process knew A
    assert "Zebulon" in _ask(live, "What is my name?")
    gone = forget_visitor(A, world=world)
    assert (gone.users, gone.sessions, gone.facts) == (1, 3, 3)
    assert _rows(world, A) == {"sessions": 0, "turns": 0, "facts": 0, "entities": 0}
    assert _rows(world, B) == before_b
    retriever = shared_retriever(live.world)
    assert retriever.user_facts(A, None, None, gate=False) == []
    assert f"user:{A}" not in retriever.entity_by_name
    hits = retriever.retrieve("Zebulon Quaritch nurse octopuses", None, gate=False, user_id=A, audience="conseil")
    assert not any("Zebulon" in h.text for h in hits.items())
    fresh = StoryThinker.create("conseil", 5, world=world, visitor=A)
    assert "Zebulon" not in _ask(fresh, "What is my name?")
    assert "Bertha" in _ask(StoryThinker.create("conseil", 5, world=world, visitor=B), "What is my name?")


def test_forget_me_from_a_live_thinker_stops_remembering(world):
    thinker = StoryThinker.create("ned", 4, world=world, visitor=A)
    thinker.respond(ZEBULON, ThinkerContext())
    other = StoryThinker.create("ned", 4, world=world, visitor=B)
    other.respond("My name is Bertha Pimm.", ThinkerContext())
    gone = thinker.forget()
    assert gone.facts == 3 and gone.turns == 2
    thinker.respond("My name is Zebulon again.", ThinkerContext())  # the session goes on, unrecorded
    assert _rows(world, A) == {"sessions": 0, "turns": 0, "facts": 0, "entities": 0}
    assert _rows(world, B)["facts"] == 1


def test_memory_cli_lists_and_forgets(world, capsys):
    from anima.cli import main

    StoryThinker.create("nemo", 3, world=world, visitor=A).respond(ZEBULON, ThinkerContext())
    StoryThinker.create("nemo", 3, world=world, visitor=B).respond("Hello.", ThinkerContext())
    assert main(["memory", "list", "--world", str(world), "--json"]) == 0
    listed = {u["user"]: u for u in json.loads(capsys.readouterr().out)["users"]}
    assert listed[A]["turns"] == 2 and listed[A]["facts"] == 3 and listed[B]["facts"] == 0
    assert main(["memory", "forget", A, "--world", str(world)]) == 0
    assert f"forgot {A}: 1 sessions, 2 turns, 3 facts" in capsys.readouterr().out
    with World.open(world, readonly=True) as w:
        assert [u["user"] for u in list_users(w)] == [B]
    assert main(["memory", "forget", "no way!", "--world", str(world)]) == 2
    assert "user id must be" in capsys.readouterr().err


def test_retention_caps_turns_and_facts_per_visitor(world):
    keep = Retention(max_turns=6, max_facts=2)
    thinker = StoryThinker.create("nemo", 4, world=world, visitor=A, retention=keep)
    for i in range(10):
        thinker.respond(f"Tell me about the pearl number {i}.", ThinkerContext())
    thinker.respond("I like whales and I live in Paris. I have a dog.", ThinkerContext())
    rows = _rows(world, A)
    assert rows["turns"] == 6 and rows["facts"] == 2
    with World.open(world, readonly=True) as w:
        texts = [r[0] for r in w.conn.execute("SELECT text FROM session_turns WHERE speaker = 'user' ORDER BY idx")]
    assert texts[-1].startswith("I like whales") and "pearl number 0" not in " ".join(texts)
    assert len(shared_retriever(thinker.world).user_facts(A, "nemo", None, gate=False)) == 2
    StoryThinker.create("nemo", 4, world=world, visitor=B, retention=keep).respond("Hello.", ThinkerContext())
    assert _rows(world, B)["turns"] == 2  # another visitor's cap is their own


def test_retention_deletes_old_sessions_and_forgets_visitors_left_with_none(world):
    for visitor in (A, B):
        StoryThinker.create("nemo", 4, world=world, visitor=visitor).respond(ZEBULON, ThinkerContext())
    with World.open(world) as w:  # A was last seen long ago
        w.conn.execute("UPDATE sessions SET updated_at = '2020-01-01T00:00:00.000000' WHERE user_id = ?", (A,))
    StoryThinker.create("nemo", 4, world=world, visitor="visitor-C-1234", retention=Retention(max_age_days=30))
    assert _rows(world, A) == {"sessions": 0, "turns": 0, "facts": 0, "entities": 0}
    assert _rows(world, B)["facts"] == 3
    for _ in range(4):
        StoryThinker.create("nemo", 4, world=world, visitor=B, retention=Retention(max_sessions=2))
    assert _rows(world, B)["sessions"] == 2
    StoryThinker.create("nemo", 4, world=world, visitor="visitor-D-1234", retention=Retention(max_users=2))
    with World.open(world, readonly=True) as w:
        assert {u["user"] for u in list_users(w)} == {"visitor-D-1234", B}


@pytest.mark.parametrize("bad", ["", "short", "x" * 65, "has space1", "semi;colon", "../../etc/passwd",
                                 "caf\u00e9-visitor", 12345678, b"bytes-visitor"])
def test_bad_visitor_ids_are_refused(world, bad):
    with pytest.raises(ValueError, match="visitor id must be 8-64 characters"):
        StoryThinker.create("nemo", 3, world=world, visitor=bad)
    with pytest.raises(ValueError, match="visitor id must be"):
        forget_visitor(bad, world=world)


def test_other_bad_memory_arguments_are_clear_errors(world):
    with pytest.raises(ValueError, match="visitor id must be"):
        forget_visitor(None, world=world)
    with pytest.raises(ValueError, match="not both"):
        StoryThinker.create("nemo", 3, world=world, visitor=A, user_id="local")
    with pytest.raises(ValueError, match="user id must be"):
        StoryThinker.create("nemo", 3, world=world, user_id="a b")
    with pytest.raises(ValueError, match="Retention.max_turns must be a positive integer"):
        Retention(max_turns=0)
    with pytest.raises(ValueError, match="Retention.max_age_days must be a positive number"):
        Retention(max_age_days=-1)


def test_the_shipped_world_is_never_written_by_a_session(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ANIMA_LLM_URL", raising=False)
    before = hashlib.sha256(WORLD_ASSET.read_bytes()).hexdigest()
    siblings = sorted(p.name for p in WORLD_ASSET.parent.iterdir())
    with pytest.raises(WorldError, match="shipped world is read-only"):
        World.open(WORLD_ASSET)
    for world in (WORLD_ASSET, None):  # the shipped path given explicitly, or by default
        thinker = StoryThinker.create("nemo", 5, world=world, visitor=A)
        thinker.respond(ZEBULON, ThinkerContext())
        assert thinker.world.path == tmp_path / "home" / "worlds" / WORLD_ASSET.name  # the user copy
        thinker.close()
    assert forget_visitor(A, world=WORLD_ASSET).facts == 3  # forgotten from the copy
    assert hashlib.sha256(WORLD_ASSET.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in WORLD_ASSET.parent.iterdir()) == siblings  # no -wal, -shm or journal
