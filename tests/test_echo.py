"""Echo cancellation: the agent's own voice in the microphone (no headset) never makes it interrupt itself."""

import asyncio

import numpy as np
import pytest

from anima.core.clock import MediaClock
from anima.core.conversation import UserTurnSpec
from anima.core.duplex import TurnTaking
from anima.core.echo import EchoCancellation, EchoCanceller
from anima.core.frames import AgentStoppedSpeakingFrame, InterruptionFrame, PauseFrame
from anima.core.history import ConversationHistory
from anima.core.plan import ActionPlan
from anima.core.playout import Playout
from anima.core.scripted_user import ScriptedUser
from anima.core.session import Session
from anima.talker.espeak import EspeakTTS
from anima.talker.stage import TalkerStage
from anima.testing import FrameRecorder
from anima.testing.echo import EchoingSource, room_response
from anima.thinker.scripted import ScriptedThinker
from anima.thinker.stage import ThinkerStage

SR = 24000
REPLY = ("The Nautilus carries us through the deep water of the southern seas, past forests of kelp "
         "and the ruins of drowned cities, while the captain plays his organ.")


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12)


def test_canceller_removes_the_echo_and_keeps_the_user():
    agent = EspeakTTS(voice="en-gb").synthesize(REPLY, voice="en-gb").samples.astype(np.float32)
    user = EspeakTTS(voice="en-us").synthesize("Wait, stop, I have a question.", voice="en-us").samples.astype(np.float32)
    delay = int(0.12 * SR)
    echo = np.convolve(np.concatenate([np.zeros(delay, np.float32), agent]), room_response(1) * 10 ** (-10 / 20))[:agent.size]
    mic = echo + np.random.default_rng(0).standard_normal(agent.size).astype(np.float32) * 7e-4
    at = 5 * SR
    mic[at:at + user.size] += user
    aec = EchoCanceller()
    out = np.zeros_like(mic)
    for i in range(0, mic.size - 959, 960):  # 40 ms ticks, as the session feeds it
        pts = int(i * 1e9 / SR)
        aec.add_reference(agent[i:i + 960], pts)
        out[i:i + 960] = aec.process(mic[i:i + 960], pts)
    echo_only = slice(int(1.0 * SR), at)
    assert _db(out[echo_only]) < _db(mic[echo_only]) - 30  # the agent's voice is gone
    talk = slice(at, at + user.size)
    assert abs(_db(out[talk]) - _db(user)) < 2.0  # the user's voice over it is not
    with pytest.raises(ValueError, match="mono"):
        aec.process(np.zeros((2, 960), np.float32), 0)


def test_without_an_echo_the_user_passes_untouched():
    """A headset: the canceller learns nothing and must not add the agent's voice or gate the user."""
    agent = EspeakTTS(voice="en-gb").synthesize(REPLY, voice="en-gb").samples.astype(np.float32)
    user = 0.5 * EspeakTTS(voice="en-us").synthesize("Wait, stop, I have a question.", voice="en-us").samples.astype(np.float32)
    mic = np.random.default_rng(1).standard_normal(agent.size).astype(np.float32) * 7e-4
    at = 3 * SR  # after the canceller's 2 s learning window (in which quieter-than-the-speaker sound is gated)
    mic[at:at + user.size] += user
    aec = EchoCanceller()
    out = np.zeros_like(mic)
    for i in range(0, mic.size - 959, 960):
        pts = int(i * 1e9 / SR)
        aec.add_reference(agent[i:i + 960], pts)
        out[i:i + 960] = aec.process(mic[i:i + 960], pts)
    talk = slice(at, at + user.size)
    assert abs(_db(out[talk]) - _db(user)) < 0.5
    assert np.corrcoef(out[talk], mic[talk])[0, 1] > 0.99


def _session(turns, echo_stage: bool, seed: int = 0):
    user_tts = EspeakTTS(voice="en-us")

    def synthesize(text):
        chunk = user_tts.synthesize(text, voice="en-us")
        return chunk.samples, list(chunk.events)

    history = ConversationHistory()
    out = FrameRecorder("out")
    stages = ([EchoCancellation()] if echo_stage else []) + [
        TurnTaking(),
        ThinkerStage(ScriptedThinker([ActionPlan(REPLY), ActionPlan("Yes?")]), history),
        TalkerStage(EspeakTTS(voice="en-gb")),
        Playout(),
        out,
    ]
    source = EchoingSource(ScriptedUser(turns, synthesize, lambda p: np.zeros(0), pause_s=0.5, tail_s=0.5, seed=seed),
                           delay_s=0.12, gain_db=-10.0, seed=seed)
    result = asyncio.run(Session(stages, source, MediaClock(realtime=False), history).run())
    return result, out


@pytest.mark.parametrize("echo_stage", [True, False])
def test_the_agent_does_not_interrupt_itself(echo_stage):
    result, out = _session([UserTurnSpec("Hello there, captain.")], echo_stage)
    stopped = out.of_type(AgentStoppedSpeakingFrame)
    if echo_stage:
        assert out.of_type(PauseFrame) == [] and out.of_type(InterruptionFrame) == []
        assert stopped and not stopped[0].interrupted and stopped[0].heard_text == REPLY
    else:  # the test can fail: without the canceller its own voice keeps pausing it (or cuts it off)
        assert len(out.of_type(PauseFrame)) >= 2
        assert not stopped or stopped[0].interrupted


def test_a_real_barge_in_over_the_echo_is_still_heard():
    turns = [UserTurnSpec("Hello there, captain."), UserTurnSpec("Wait, stop, I have a question.", barge_in_s=2.0)]
    result, out = _session(turns, echo_stage=True)
    stopped = out.of_type(AgentStoppedSpeakingFrame)
    assert stopped[0].interrupted
    assert result.metrics.barge_in_latency_s and result.metrics.barge_in_latency_s[0] < 0.15
