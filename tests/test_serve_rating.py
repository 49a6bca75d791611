"""The session rating over the live protocol: the per-turn prosody tap, the ``rate`` message
(validated), turn rewards sent back, and stored with the session by a remembering story thinker."""

import asyncio
import json
import shutil

import numpy as np
import pytest
import websockets

from anima.core.frames import (
    NS_PER_S,
    SAMPLE_RATE,
    TickFrame,
    UserAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTurnFrame,
)
from anima.serve.app import ServeConfig
from anima.serve.protocol import ProtocolError, parse_rate
from anima.serve.reactions import ReactionTap, align
from anima.testing import run_frames
from anima.testing.server import RepeatingThinker, running_server
from anima.thinker.data.build import build_world
from anima.thinker.data.sample import write_sample_novel
from anima.thinker.reward import TurnFeatures, stored_rating
from anima.thinker.story import StoryThinker
from anima.thinker.world import World

pytestmark = pytest.mark.integration
VISITOR = "rating-visitor-01"


def _voice(f0, gain, seconds=0.8):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    return (gain * 0.15 * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2) * x).astype(np.float32)


def _turn(start_s, samples, text):
    """Frames of one spoken user turn: onset, 40 ms audio chunks, end, the finished turn."""
    onset = int(start_s * NS_PER_S)
    chunks = [UserAudioFrame(samples[i:i + 960], pts_ns=onset + i * NS_PER_S // SAMPLE_RATE) for i in range(0, samples.size, 960)]
    end = onset + samples.size * NS_PER_S // SAMPLE_RATE
    silence = [UserAudioFrame(np.zeros(960, np.float32), pts_ns=end + k * 40_000_000) for k in range(5)]
    return [UserStartedSpeakingFrame(onset_pts_ns=onset, pts_ns=onset), *chunks, *silence,
            UserStoppedSpeakingFrame(end_pts_ns=end, pts_ns=end), UserTurnFrame(text, end, pts_ns=end)]


def test_the_tap_keeps_each_turns_prosody_not_its_audio():
    tap = ReactionTap()
    frames = [*_turn(0.0, _voice(120, 1.0), "Hello there."), *_turn(3.0, _voice(170, 3.0), "Wow, thanks!"),
              UserTurnFrame("typed words", 6 * NS_PER_S, pts_ns=6 * NS_PER_S), TickFrame(index=0, duration_ns=40_000_000, pts_ns=0)]
    asyncio.run(run_frames([tap], frames))
    assert [t.text for t in tap.turns] == ["Hello there.", "Wow, thanks!", "typed words"]
    low, high, typed = (t.prosody for t in tap.turns)
    assert abs(low.f0_median_hz - 120) < 4 and abs(high.f0_median_hz - 170) < 5 and typed is None
    assert high.intensity_db > low.intensity_db + 6
    assert not tap._audio and tap._held == 0  # the sound is dropped at each turn's end


def test_align_matches_turns_by_words():
    a, b, c = TurnFeatures("Hello."), TurnFeatures("What is the Nautilus?"), TurnFeatures("Thanks!")
    assert align([a, b, c], ["x", "y", "z"]) == [a, b, c]  # same count: by position
    assert align([a, c], ["hello", "what is the nautilus", "thanks"]) == [a, None, c]


@pytest.mark.parametrize("msg, error", [({"type": "rate"}, "got null"), ({"type": "rate", "rating": 0}, "got 0"),
                                        ({"type": "rate", "rating": "5"}, 'got "5"'), ({"type": "rate", "rating": 4.5}, "got 4.5"),
                                        ({"type": "rate", "rating": True}, "got true"),
                                        ({"type": "rate", "rating": 3, "extra": 1}, "unknown field")])
def test_bad_rate_messages_are_refused(msg, error):
    with pytest.raises(ProtocolError, match=error):
        parse_rate(msg)
    assert parse_rate({"type": "rate", "rating": 5}) == 5


async def _hello(ws):
    await ws.send(json.dumps({"type": "hello", "version": 1, "character": "nemo", "visitor": VISITOR}))
    return json.loads(await ws.recv())


async def _next(ws, kind, seconds=15.0):
    async def find():
        while True:
            msg = await ws.recv()
            if isinstance(msg, str) and json.loads(msg)["type"] == kind:
                return json.loads(msg)
    return await asyncio.wait_for(find(), seconds)


async def _talk(ws, texts):
    for text in texts:
        await ws.send(json.dumps({"type": "text", "text": text}))
        await _next(ws, "agent_stopped", 30.0)


def test_rating_a_session_without_memory_sends_rewards_back():
    config = ServeConfig(port=0, asr="none", thinker_factory=lambda hello: RepeatingThinker("Aye."), text_per_s=5, text_burst=5)

    async def run():
        async with websockets.connect(f"ws://{address}/ws") as ws:
            await _hello(ws)
            await ws.send(json.dumps({"type": "rate", "rating": 4}))
            assert "nothing to rate yet" in (await _next(ws, "error"))["message"]
            await ws.send(json.dumps({"type": "rate", "rating": 9}))
            assert "integer from 1 to 5, got 9" in (await _next(ws, "error"))["message"]
            await _talk(ws, ["Who are you?", "Thanks, that's fascinating!", "That's wrong and boring."])
            await ws.send(json.dumps({"type": "rate", "rating": 4}))
            return await _next(ws, "rated")

    with running_server(config) as (address, _):
        rated = asyncio.run(run())
    assert rated["rating"] == 4 and rated["stored"] is False and rated["oracle"] == "offline"
    assert len(rated["rewards"]) == 3 and abs(sum(rated["rewards"]) - 4) < 1e-3
    assert rated["rewards"][0] > rated["rewards"][1]  # "thanks, fascinating" answered reply 0; "wrong" reply 1


def test_a_remembering_story_thinker_stores_the_rating(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ANIMA_LLM_URL", raising=False)
    built = build_world(write_sample_novel(tmp_path / "novel"), tmp_path / "built.db", embedder="hash").path
    path = tmp_path / "world.db"
    shutil.copyfile(built, path)
    config = ServeConfig(port=0, asr="none", text_per_s=5, text_burst=5,
                         thinker_factory=lambda hello: StoryThinker.create("nemo", 2, world=path, visitor=hello.visitor))

    async def run():
        async with websockets.connect(f"ws://{address}/ws") as ws:
            await _hello(ws)
            await _talk(ws, ["Who are you?", "Wow, thank you!"])
            await ws.send(json.dumps({"type": "rate", "rating": 2}))
            return await _next(ws, "rated")

    with running_server(config) as (address, _):
        rated = asyncio.run(run())
    assert rated["stored"] is True and abs(sum(rated["rewards"]) - 2) < 1e-3
    with World.open(path, readonly=True) as w:
        session = w.conn.execute("SELECT id FROM sessions WHERE user_id = ?", (VISITOR,)).fetchone()[0]
        stored = stored_rating(w, session)
    assert stored["rating"] == 2 and [t["reward"] for t in stored["turns"]] == pytest.approx(rated["rewards"], abs=1e-3)
    assert 'said "thank you"' in stored["turns"][0]["descriptors"]
