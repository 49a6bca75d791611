"""Runtime semantics with a deterministic tone TTS: turn-taking, barge-in, heard history, clock."""

import asyncio

import numpy as np
import pytest

from anima.core.clock import MediaClock
from anima.core.conversation import UserTurnSpec
from anima.core.duplex import TurnTaking
from anima.core.frames import (
    NS_PER_S,
    AgentAudioFrame,
    AgentStartedSpeakingFrame,
    AgentState,
    AgentStateFrame,
    AgentStoppedSpeakingFrame,
    InterruptionFrame,
    PlayedAudioFrame,
    TickFrame,
)
from anima.core.history import ConversationHistory
from anima.core.plan import ActionPlan
from anima.core.playout import Playout
from anima.core.scripted_user import ScriptedUser
from anima.core.session import Session
from anima.talker.stage import TalkerStage
from anima.testing import FrameRecorder, ToneTTS
from anima.thinker.scripted import ScriptedThinker
from anima.thinker.stage import ThinkerStage

pytestmark = pytest.mark.unit

LONG = " ".join(f"w{i}" for i in range(20))  # 20 words = 5 s of tone speech


def _session(user_turns, replies, realtime=False):
    tts = ToneTTS()

    def synth(text):
        samples, events = tts.render(text)
        return samples, events

    history = ConversationHistory()
    before_playout = FrameRecorder("before_playout")
    after = FrameRecorder("after_playout")
    stages = [
        TurnTaking(),
        ThinkerStage(ScriptedThinker(replies), history),
        TalkerStage(tts),
        before_playout,
        Playout(),
        after,
    ]
    source = ScriptedUser(user_turns, synth, lambda p: np.zeros(0), pause_s=0.4, tail_s=0.5)
    return Session(stages, source, MediaClock(realtime=realtime), history), before_playout, after


def _run(session):
    return asyncio.run(session.run())


def test_barge_in_stops_agent_and_history_keeps_only_heard_words():
    turns = [UserTurnSpec("hello there captain"), UserTurnSpec("stop please", barge_in_s=2.0)]
    replies = [ActionPlan(LONG), ActionPlan("okay then")]
    session, before, after = _session(turns, replies)
    result = _run(session)

    stopped = after.of_type(AgentStoppedSpeakingFrame)
    assert [s.interrupted for s in stopped] == [True, False]
    interrupted = stopped[0]
    # History holds exactly the words whose start was played, then the user's barge-in turn.
    n_heard = int(np.ceil(interrupted.played_s / ToneTTS.word_s - 1e-9))
    heard = " ".join(LONG.split()[:n_heard])
    assert 0 < n_heard < 20
    assert [(t.speaker, t.text, t.interrupted) for t in result.history.turns] == [
        ("user", "hello there captain", False),
        ("agent", heard, True),
        ("user", "stop please", False),
        ("agent", "okay then", False),
    ]
    assert result.history.turns[1].planned_text == LONG

    # Barge-in latency: user onset to agent silent, in media time.
    assert len(result.metrics.barge_in_latency_s) == 1
    assert 0.0 < result.metrics.barge_in_latency_s[0] <= 0.100

    played = after.of_type(PlayedAudioFrame)
    assert all(p.samples.size == 960 for p in played), "one tick of audio per tick: no bursts"
    first_turn = stopped[0].turn_id
    silent_ns = interrupted.pts_ns
    later = [p for p in played if p.pts_ns >= silent_ns]
    # Nothing from the interrupted turn is ever played after the interruption ...
    assert all(p.turn_id != first_turn for p in later)
    # ... and the output is silent until the next reply starts.
    next_start = after.of_type(AgentStartedSpeakingFrame)[1].pts_ns
    gap = [p for p in later if p.pts_ns < next_start]
    assert gap and max(float(np.abs(p.samples).max()) for p in gap) == 0.0
    # The tick during which the interruption hit only carries a short fade, no fresh audio.
    fade_tick = [p for p in played if p.pts_ns < silent_ns <= p.pts_ns + 40_000_000]
    assert fade_tick and np.abs(fade_tick[0].samples[int(0.006 * 24000):]).max() == 0.0

    # Audio that was queued for the interrupted turn was dropped, not delivered later.
    after_int = [f for f in before.of_type(AgentAudioFrame) if f.turn_id == first_turn and f.pts_ns > silent_ns]
    assert after_int == []


def test_reply_latency_and_states():
    turns = [UserTurnSpec("hello there"), UserTurnSpec("and again")]
    replies = [ActionPlan("one two three"), ActionPlan("four five")]
    session, _, after = _session(turns, replies)
    result = _run(session)
    assert len(result.metrics.reply_latency_s) == 2
    # Endpointing silence (0.2 s) plus at most one tick: well under the 300 ms target.
    assert all(0.15 <= x <= 0.3 for x in result.metrics.reply_latency_s), result.metrics.reply_latency_s
    states = [f.state for f in after.of_type(AgentStateFrame)]
    assert states[:4] == [AgentState.LISTENING, AgentState.THINKING, AgentState.SPEAKING, AgentState.IDLE]
    assert after.of_type(InterruptionFrame) == []


def test_frame_counts_match_duration_times_rate():
    turns = [UserTurnSpec("hello there")]
    replies = [ActionPlan("one two three four")]
    session, _, after = _session(turns, replies)
    result = _run(session)
    ticks = after.of_type(TickFrame)
    assert len(ticks) == result.ticks
    assert result.ticks == round(result.media_s * 25)
    pts = [t.pts_ns for t in ticks]
    assert pts == [i * NS_PER_S // 25 for i in range(len(ticks))]
    played = after.of_type(PlayedAudioFrame)
    assert sum(p.samples.size for p in played) == round(result.media_s * 24000)


def test_realtime_mode_runs_the_same_code_on_the_wall_clock():
    turns = [UserTurnSpec("hi")]
    replies = [ActionPlan("yes")]
    session, _, after = _session(turns, replies, realtime=True)
    result = _run(session)
    # Paced by the wall clock: the session cannot finish much faster than its media length.
    assert result.wall_s >= 0.9 * result.media_s
    assert [t.speaker for t in result.history.turns] == ["user", "agent"]
    assert result.metrics.reply_latency_s and result.metrics.reply_latency_s[0] < 0.5


class _TypedUser:
    """Types the given texts at the given media times, then waits for the agent to finish."""

    def __init__(self, texts):
        self.texts = sorted(texts)
        self.stops = 0

    def frames_for_tick(self, pts_ns, tick_ns):
        from anima.core.frames import UserTextFrame

        due = [t for t in self.texts if t[0] * NS_PER_S <= pts_ns]
        self.texts = [t for t in self.texts if t not in due]
        return [UserTextFrame(text, pts_ns=pts_ns) for _, text in due]

    def observe(self, frame):
        if isinstance(frame, AgentStoppedSpeakingFrame):
            self.stops += 1

    def finished(self, now_ns):
        return not self.texts and self.stops >= 2 or now_ns > 20 * NS_PER_S


def test_a_reply_that_arrives_while_another_plays_is_queued_not_merged():
    """Two typed questions 0.1 s apart: the second reply starts when the first ends (no overlap)."""
    from anima.core.frames import UserTextFrame  # noqa: F401

    history = ConversationHistory()
    after = FrameRecorder("after")
    stages = [TurnTaking(barge_in=False), ThinkerStage(ScriptedThinker([ActionPlan("one two three"), ActionPlan("four five")]), history),
              TalkerStage(ToneTTS()), Playout(), after]
    result = asyncio.run(Session(stages, _TypedUser([(0.2, "first"), (0.3, "second")]), MediaClock(), history).run())
    started = after.of_type(AgentStartedSpeakingFrame)
    stopped = after.of_type(AgentStoppedSpeakingFrame)
    assert [s.turn_id for s in started] == [s.turn_id for s in stopped] and len(started) == 2
    assert started[1].pts_ns >= stopped[0].pts_ns, "the second reply starts after the first one ends"
    assert [t.text for t in result.history.turns if t.speaker == "agent"] == ["one two three", "four five"]
    played = after.of_type(PlayedAudioFrame)
    assert sum(int(np.count_nonzero(p.samples)) for p in played) == pytest.approx(5 * ToneTTS.word_s * 24000, rel=0.01)
