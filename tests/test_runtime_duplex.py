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
    PauseFrame,
    PlayedAudioFrame,
    ResumeFrame,
    SpeechEvent,
    TickFrame,
)
from anima.core.history import ConversationHistory
from anima.core.plan import ActionPlan
from anima.core.playout import Playout
from anima.core.scripted_user import ScriptedUser
from anima.core.session import Session
from anima.core.vad import EnergyVAD
from anima.talker.stage import TalkerStage
from anima.testing import FrameRecorder, ToneTTS
from anima.thinker.scripted import ScriptedThinker
from anima.thinker.stage import ThinkerStage

pytestmark = pytest.mark.unit

LONG = " ".join(f"w{i}" for i in range(20))  # 20 words = 5 s of tone speech


def _session(user_turns, replies, realtime=False, turn_taking=None):
    tts = ToneTTS()

    def synth(text):
        if text in ("", "mm-hm"):  # a 300 ms burst of noise: a cough, or a murmured backchannel
            burst = np.random.default_rng(7).standard_normal(int(0.3 * 24000)).astype(np.float32) * 0.2
            return burst, [SpeechEvent("word", 0.1, text, 0, len(text))] if text else []
        samples, events = tts.render(text)
        return samples, events

    history = ConversationHistory()
    before_playout = FrameRecorder("before_playout")
    after = FrameRecorder("after_playout")
    stages = [
        # Tone "speech" and noise bursts are no speech to the learned detector: the runtime's rules are
        # tested here with the energy one (the detectors have their own tests and benchmarks/vad.py).
        turn_taking or TurnTaking(vad=EnergyVAD()),
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

    # Audio that was queued for the interrupted turn was dropped, not delivered later. (The agent went
    # silent at the onset, a pause; the barge-in was confirmed once the speech lasted: the Talker may
    # deliver until then, and the playout holds that audio and drops it.)
    confirmed_ns = before.of_type(InterruptionFrame)[0].pts_ns
    assert confirmed_ns >= silent_ns
    after_int = [f for f in before.of_type(AgentAudioFrame) if f.turn_id == first_turn and f.pts_ns > confirmed_ns]
    assert after_int == []


@pytest.mark.parametrize("sound", ["", "mm-hm"])
def test_a_cough_or_backchannel_pauses_the_agent_and_it_resumes_where_it_stopped(sound):
    turns = [UserTurnSpec("hello there captain"), UserTurnSpec(sound, barge_in_s=2.0), UserTurnSpec("thanks")]
    replies = [ActionPlan(LONG), ActionPlan("okay then")]
    session, _, after = _session(turns, replies)
    result = _run(session)

    assert [s.interrupted for s in after.of_type(AgentStoppedSpeakingFrame)] == [False, False]
    assert after.of_type(InterruptionFrame) == []
    (pause,), (resume,) = after.of_type(PauseFrame), after.of_type(ResumeFrame)
    assert resume.heard == sound
    assert 1.0 <= resume.paused_s <= 1.6  # silence after the 0.3 s sound (1.0 s) + the detector's hangover
    assert [(t.speaker, t.text, t.kind) for t in result.history.turns] == [
        ("user", "hello there captain", "turn"),
        ("user", sound or "(noise)", "backchannel"),
        ("agent", LONG, "turn"),  # said in full: nothing was lost across the pause
        ("user", "thanks", "turn"),
        ("agent", "okay then", "turn"),
    ]
    assert [m["content"] for m in result.history.as_messages()] == ["hello there captain", LONG, "thanks", "okay then"]

    played = after.of_type(PlayedAudioFrame)
    first = after.of_type(AgentStoppedSpeakingFrame)[0]
    assert first.played_s == pytest.approx(20 * ToneTTS.word_s, abs=0.01)  # every sample, once
    silent = [p for p in played if pause.pts_ns + 40_000_000 <= p.pts_ns < resume.pts_ns - 40_000_000]
    assert silent and all(p.turn_id is None and not np.abs(p.samples).any() for p in silent)
    # Lip sync follows the audio: each word's latest schedule falls where its audio is heard.
    latest = {}
    for p in played:
        for t, ev in p.scheduled_events:
            if ev.kind == "word" and ev.text.startswith("w"):
                latest[ev.text] = t
    assert len(latest) == 20
    by_time = {p.pts_ns: p for p in played}
    pause_s, resume_s = pause.pts_ns / NS_PER_S, resume.pts_ns / NS_PER_S
    for word, t in latest.items():
        assert not pause_s <= t < resume_s, f"{word} scheduled inside the pause"
        if t + 0.05 < pause_s or t >= resume_s:  # (the word the pause cut in two is heard in part)
            tick = by_time[int((t + 0.05) * 25) * 40_000_000]  # 50 ms into the word
            assert tick.turn_id == first.turn_id and np.abs(tick.samples).max() > 0.05, word


def test_without_recovery_a_cough_interrupts_at_once():
    turns = [UserTurnSpec("hello there captain"), UserTurnSpec("", barge_in_s=2.0), UserTurnSpec("thanks")]
    replies = [ActionPlan(LONG), ActionPlan("okay then")]
    session, _, after = _session(turns, replies, turn_taking=TurnTaking(vad=EnergyVAD(), recovery=None))
    result = _run(session)
    assert after.of_type(PauseFrame) == []
    assert [s.interrupted for s in after.of_type(AgentStoppedSpeakingFrame)][0] is True
    assert result.metrics.barge_in_latency_s and result.metrics.barge_in_latency_s[0] <= 0.1


def test_backchannel_words_are_told_apart_from_real_ones():
    from anima.core.duplex import Recovery

    r = Recovery()
    assert not r.has_words("Mm-hm.") and not r.has_words("yeah, right") and not r.has_words("")
    assert r.has_words("wait") and r.has_words("yeah but no")


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


def test_the_user_may_say_the_same_thing_twice():
    turns = [UserTurnSpec("go on"), UserTurnSpec("go on"), UserTurnSpec("go on")]
    replies = [ActionPlan("one"), ActionPlan("two"), ActionPlan("three")]
    session, _, after = _session(turns, replies)
    result = _run(session)
    assert [t.text for t in result.history.turns] == ["go on", "one", "go on", "two", "go on", "three"]


MONOLOGUE = " ".join(f"m{i}" for i in range(24))  # 6 s of tone speech


def test_the_agent_cuts_in_where_the_script_says_and_the_user_stops():
    turns = [UserTurnSpec("hello there"), UserTurnSpec(MONOLOGUE), UserTurnSpec("sorry go on")]
    turns[1].agent_interrupts_s = 2.0
    replies = [ActionPlan("hello"), ActionPlan("forgive me but we must dive now"), ActionPlan("thank you")]
    tt = TurnTaking(vad=EnergyVAD())
    session, _, after = _session(turns, replies, turn_taking=tt)
    tt.interjector = session.source.interjector()  # keyed on the scripted user's clips
    result = _run(session)
    user = [t for t in result.history.turns if t.speaker == "user"]
    assert [t.interrupted for t in user] == [False, True, False]
    cut_words = user[1].text.split()
    assert 2 <= len(cut_words) < 24 and cut_words == MONOLOGUE.split()[:len(cut_words)]  # what was heard, in order
    agents = [t for t in result.history.turns if t.speaker == "agent"]
    assert [(t.text, t.interrupted) for t in agents] == [("hello", False), ("forgive me but we must dive now", False),
                                                       ("thank you", False)]
    # The agent spoke over the user's last words (overlap), ~2 s into the monologue; the user then stopped.
    starts = after.of_type(AgentStartedSpeakingFrame)
    user_clip = session.source.clips[1]
    overlap_s = (user_clip.end_ns - starts[1].pts_ns) / NS_PER_S
    assert 0.0 < overlap_s <= 0.5, overlap_s
    assert 1.9 <= (starts[1].pts_ns - user_clip.start_ns) / NS_PER_S <= 2.6
    assert after.of_type(InterruptionFrame) == [] and after.of_type(PauseFrame) == []


def test_patience_and_urgent_words_cut_in_and_ordinary_turns_do_not():
    from anima.core.interjection import PatienceInterjector

    turns = [UserTurnSpec("hello there"), UserTurnSpec(MONOLOGUE), UserTurnSpec("ok")]
    replies = [ActionPlan("hello"), ActionPlan("enough"), ActionPlan("good")]
    tt = TurnTaking(vad=EnergyVAD(), interjector=PatienceInterjector(patience_s=3.0))
    result = _run(_session(turns, replies, turn_taking=tt)[0])
    user = [t for t in result.history.turns if t.speaker == "user"]
    assert [t.interrupted for t in user] == [False, True, False]
    policy = PatienceInterjector(patience_s=30.0, urgent=["giant squid", "fire"])
    assert policy.consider("there is a giant squid outside", 1.0) == "urgent: giant squid"
    assert policy.consider("the squid is giant", 1.0) is None and policy.consider("fireworks", 1.0) is None
    assert policy.consider("so anyway", 31.0) == "patience"
    with pytest.raises(ValueError, match="NaN"):
        PatienceInterjector(patience_s=float("nan"))


def test_a_silent_reply_takes_its_gesture_time_not_the_reply_timeout():
    turns = [UserTurnSpec("do you agree"), UserTurnSpec("thank you")]
    replies = [ActionPlan("", gesture="nod"), ActionPlan("you are welcome")]
    session, _, after = _session(turns, replies)
    session.source.silent_replies = frozenset({0})  # the cascade passes the indices of replies without words
    _run(session)
    first, second = session.source.clips
    gap_s = (second.start_ns - first.end_ns) / NS_PER_S
    assert 3.0 <= gap_s < 3.0 + 0.4 + 0.1  # the gesture's 3 s and the pause, not the 15 s reply timeout
    assert len(after.of_type(AgentStartedSpeakingFrame)) == 1  # only the reply with words is spoken
