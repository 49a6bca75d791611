"""Reward decomposition (issue 17, deliverable 1): prosody on synthetic voices, descriptors, the
offline and LLM oracles (sum = rating), rating validation, the v1 -> v2 world migration, storage
with the session, and forgetting a visitor's ratings."""

import json
import shutil
import sqlite3

import numpy as np
import pytest

from anima.embed import HashEmbedder
from anima.testing.chat import chat_server, reply
from anima.thinker.base import ThinkerContext
from anima.thinker.data.build import build_world
from anima.thinker.data.sample import write_sample_novel
from anima.thinker.llm import LLMConfig
from anima.thinker.prosody import Baseline, prosody
from anima.thinker.reward import (
    LLMOracle,
    RatingError,
    TurnFeatures,
    VisualCues,
    check_rating,
    describe,
    offline_oracle,
    rate_session,
    stored_rating,
    text_cues,
    trajectory,
)
from anima.thinker.story import StoryThinker, forget_visitor
from anima.thinker.world import SCHEMA_VERSION, WORLD_ASSET, World

pytestmark = pytest.mark.unit
SR = 24000
VISITOR = "visitor-rates-0042"


def voice(f0: float, gain: float, seconds: float = 1.2, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """A vowel-like harmonic voice at ``f0`` with syllables (4 Hz) and optional period jitter."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    period_f0 = f0 * (1 + jitter * rng.standard_normal(int(seconds * f0) + 2))  # one value per cycle
    inst = np.repeat(period_f0, int(np.ceil(n / len(period_f0))))[:n]
    phase = 2 * np.pi * np.cumsum(inst) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * np.arange(n) / SR) ** 2
    return (gain * 0.2 * envelope * x).astype(np.float32)


def test_louder_higher_turn_reads_louder_and_higher():
    usual = [prosody(voice(120, 1.0, seed=s), SR) for s in range(3)]
    excited = prosody(voice(150, 2.5), SR)
    flat = prosody(voice(110, 0.4), SR)
    assert abs(usual[0].f0_median_hz - 120) < 3 and excited.f0_median_hz > 145
    assert excited.intensity_db - usual[0].intensity_db > 6
    base = Baseline.of([*usual, excited, flat])
    high = describe(TurnFeatures("And then what happened?", excited), base)
    low = describe(TurnFeatures("Okay.", flat), base)
    assert "louder" in high.text and "higher" in high.text and "no camera" in high.text
    assert "quieter" in low.text and "short answer" in low.text
    assert high.valence > 0 > low.valence
    assert prosody(voice(120, 1.0, jitter=0.03), SR).jitter > 2 * usual[0].jitter


def test_prosody_edges():
    assert prosody(np.zeros(SR, np.float32), SR) is None  # silence: no prosody
    assert prosody(np.zeros(100, np.float32), SR) is None
    with pytest.raises(ValueError, match="NaN"):
        prosody(np.full(SR, np.nan), SR)
    with pytest.raises(ValueError, match="sample_rate"):
        prosody(voice(120, 1.0), 100)
    p16 = prosody(voice(200, 1.0)[:: 3][: 16000], 8000)  # another rate is resampled
    assert p16 is not None


def test_text_cues_and_visual_cues():
    assert text_cues("Thanks, that's fascinating!")[0] == 2
    score, phrases, _ = text_cues("That's wrong. Boring.")
    assert score == -2 and any("wrong" in p for p in phrases)
    assert text_cues("That is not interesting")[0] < 0  # negated
    assert text_cues("haha, you are funny")[2]
    smiling = describe(TurnFeatures("Go on.", visual=VisualCues(gaze=0.9, smile=0.9, motion=0.7)), None)
    away = describe(TurnFeatures("Go on.", visual=VisualCues(gaze=0.1, smile=0.1, motion=0.0)), None)
    assert "smiling" in smiling.text and "looked away" in away.text and smiling.valence > away.valence
    with pytest.raises(ValueError, match="smile"):
        VisualCues(gaze=0.5, smile=1.5, motion=0.0)
    m = TurnFeatures("hi", embedding=np.ones(4, np.float32) / 2).vector(None)
    assert m.shape == (3 + 5 + 4,) and np.isnan(m[:8]).all()  # no camera, no prosody: marked absent


PAIRS = [("Hello, who are you?", "I am the captain."), ("Thanks, that's fascinating!", "The sea is everything."),
         ("That's wrong, and boring.", "Mobilis in mobili."), ("Wow, tell me more!", "We dive at noon."),
         ("Bye.", "Farewell.")]


def _steps():
    return trajectory(PAIRS, [TurnFeatures(u) for u, _ in PAIRS])


@pytest.mark.parametrize("rating", [1, 3, 5])
def test_offline_oracle_sums_to_the_rating_and_credits_pleasing_replies(rating):
    steps = _steps()
    result = offline_oracle(steps, rating)
    assert result.oracle == "offline" and len(result.rewards) == 5 and all(r >= 0 for r in result.rewards)
    assert abs(result.total - rating) < 1e-9
    # reply 0 got "thanks, fascinating", reply 1 got "wrong, boring", reply 2 got "wow, tell me more"
    assert result.rewards[0] > result.rewards[1] and result.rewards[2] > result.rewards[1]
    assert steps[-1].reaction is None


@pytest.mark.parametrize("bad", [0, 6, -1, "4", 4.0, True, None, [4]])
def test_bad_ratings_are_refused_clearly(bad):
    with pytest.raises(RatingError, match="rating must be an integer from 1 to 5"):
        check_rating(bad)
    with pytest.raises(RatingError):
        offline_oracle(_steps(), bad)


ORACLE_SEEN: list[dict] = []  # the request bodies the fake oracle got


def _oracle(body: dict) -> tuple[int, dict]:
    """Answers by model name: good (sum 10, renormalised), negative, short (wrong length), prose, error500."""
    ORACLE_SEEN.append(body)
    n = len(json.loads(body["messages"][1]["content"])["turns"])
    content = {"good": json.dumps({"rewards": [4, 1, 3, 1, 1][:n]}),
               "negative": json.dumps({"rewards": [3, -2, 2, 0, 0][:n]}),
               "short": json.dumps({"rewards": [1, 1]}),
               "prose": "I think the second reply was the best."}.get(body["model"])
    return reply(content) if content else (500, {"error": "boom"})


@pytest.fixture(scope="module")
def oracle_server():
    with chat_server(_oracle) as url:
        yield url


@pytest.mark.parametrize("model, oracle, note", [("good", "llm", "renormalised"), ("negative", "llm", "clipped"),
                                                 ("short", "offline", "2 rewards for 5"),
                                                 ("prose", "offline", "no 'rewards'"), ("error500", "offline", "HTTP 500")])
def test_llm_oracle_is_renormalised_or_falls_back(oracle_server, model, oracle, note):
    config = LLMConfig(base_url=oracle_server, model=model, stream=False, timeout_s=2.0)
    result = LLMOracle(config)(_steps(), 4)
    assert result.oracle == oracle and note in result.note and abs(result.total - 4) < 1e-9
    prompt = ORACLE_SEEN[-1]["messages"]
    assert "add up to exactly 4" in prompt[0]["content"] and "wrong" in prompt[1]["content"]
    if model == "good":
        assert result.rewards == pytest.approx([1.6, 0.4, 1.2, 0.4, 0.4])
    if model == "negative":
        assert result.rewards[1] == 0.0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward")
    return build_world(write_sample_novel(root / "novel"), root / "built.db", embedder="hash").path


def _downgrade_to_v1(path):
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE turn_rewards; DROP TABLE session_ratings; PRAGMA user_version=1;")
    conn.execute("INSERT INTO sessions VALUES ('old-session','u-old','nemo',2,'2026-01-01T00:00:00','2026-01-01T00:00:00',1,'','[]')")
    conn.execute("INSERT INTO session_turns VALUES ('old-session',0,'user','Hello there.',0,'2026-01-01T00:00:00')")
    conn.execute("INSERT INTO session_turns VALUES ('old-session',1,'agent','Welcome aboard.',0,'2026-01-01T00:00:00')")
    conn.commit()
    conn.close()


def test_a_version_1_world_migrates_and_keeps_its_data(built, tmp_path):
    path = tmp_path / "v1.db"
    shutil.copyfile(built, path)
    _downgrade_to_v1(path)
    with World.open(path, readonly=True) as w:  # read-only: read as it is, not migrated
        assert w.conn.execute("PRAGMA user_version").fetchone()[0] == 1
    with World.open(path) as w:
        c = w.conn
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert c.execute("SELECT text FROM session_turns WHERE idx = 1").fetchone()[0] == "Welcome aboard."
        assert c.execute("SELECT count(*) FROM facts").fetchone()[0] > 5
        result = rate_session(w, "old-session", 5, embedder=HashEmbedder())
        assert result.rewards == [5.0] and stored_rating(w, "old-session")["user"] == "u-old"


@pytest.mark.skipif(not WORLD_ASSET.is_file(), reason="the shipped world is not built")
def test_a_copy_of_the_shipped_world_migrates(tmp_path):
    path = tmp_path / "shipped-copy.db"
    shutil.copyfile(WORLD_ASSET, path)
    before = sqlite3.connect(path).execute("SELECT count(*), (SELECT count(*) FROM entities) FROM facts").fetchone()
    with World.open(path) as w:
        assert w.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert w.conn.execute("SELECT count(*), (SELECT count(*) FROM entities) FROM facts").fetchone() == before
        assert w.conn.execute("SELECT count(*) FROM session_ratings").fetchone()[0] == 0


def test_ratings_are_stored_with_the_session_and_forgotten_with_the_visitor(built, tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ANIMA_LLM_URL", raising=False)
    path = tmp_path / "world.db"
    shutil.copyfile(built, path)
    thinker = StoryThinker.create("nemo", 2, world=path, visitor=VISITOR)
    for text in ("Who are you?", "Thanks, that's fascinating!", "That's wrong."):
        thinker.respond(text, ThinkerContext())
    features = [TurnFeatures("Who are you?", prosody(voice(120, 1.0), SR)),
                TurnFeatures("Thanks, that's fascinating!", prosody(voice(150, 2.5), SR)), None]
    with pytest.raises(RatingError, match="from 1 to 5"):
        rate_session(thinker.world, thinker.session.session_id, 7, features)
    result = rate_session(thinker.world, thinker.session.session_id, 4, features, embedder=HashEmbedder())
    assert abs(result.total - 4) < 1e-9 and result.rewards[0] > result.rewards[1]
    stored = stored_rating(thinker.world, thinker.session.session_id)
    assert stored["rating"] == 4 and stored["user"] == VISITOR and len(stored["turns"]) == 3
    first = stored["turns"][0]
    assert "louder" in first["descriptors"] and first["features"]["prosody"]["f0_median_hz"] > 140
    assert first["features"]["camera"] is False and "embedding_f16" in first["features"]
    assert "audio" not in json.dumps(stored)  # features only, never the sound
    thinker.close()
    gone = forget_visitor(VISITOR, path)
    assert gone.ratings == 1
    with World.open(path, readonly=True) as w:
        for table in ("session_ratings", "turn_rewards"):
            assert w.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    with World.open(path) as w, pytest.raises(RatingError, match="no turns"):
        rate_session(w, "no-such-session", 3)
