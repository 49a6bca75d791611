"""The shipped demo conversation through all five real modules, checked as a viewer would."""

import asyncio

import numpy as np
import pytest

from anima.cascade import CascadeOptions, build_stages, demo_conversation_path, scripted_user
from anima.core.clock import MediaClock
from anima.core.conversation import load_conversation
from anima.core.frames import (
    AgentStartedSpeakingFrame,
    AgentStoppedSpeakingFrame,
    FaceParamsFrame,
    PlayedAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from anima.core.history import ConversationHistory
from anima.core.session import Session
from anima.face.params import ARKIT_INDEX, JAW_OPEN_MAX_RAD
from anima.face.stage import FaceStage
from anima.render.mp4 import probe, read_audio
from anima.testing import FrameRecorder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    conversation = load_conversation(demo_conversation_path())
    out = tmp_path_factory.mktemp("demo") / "demo.mp4"
    history = ConversationHistory()
    options = CascadeOptions(width=640, height=360)
    stages = build_stages(conversation, out, options, history)
    tap = FrameRecorder("tap")
    face_at = next(i for i, s in enumerate(stages) if isinstance(s, FaceStage))
    stages.insert(face_at + 1, tap)
    session = Session(stages, scripted_user(conversation, conversation.seed), MediaClock(), history)
    result = asyncio.run(session.run())
    return result, tap, out


def test_demo_is_a_real_conversation_with_a_barge_in(demo):
    result, tap, out = demo
    assert result.errors == []
    assert result.media_s >= 20.0
    agent_turns = [t for t in result.history.turns if t.speaker == "agent"]
    assert len(agent_turns) >= 3
    stops = tap.of_type(AgentStoppedSpeakingFrame)
    interrupted = [s for s in stops if s.interrupted]
    assert len(interrupted) == 1
    # Interrupted mid-sentence; the history holds only the heard prefix of what was planned.
    cut = next(t for t in agent_turns if t.interrupted)
    assert cut.text and cut.planned_text.startswith(cut.text) and len(cut.text) < len(cut.planned_text) - 20
    assert result.metrics.barge_in_latency_s and max(result.metrics.barge_in_latency_s) <= 0.100
    assert all(x <= 0.300 for x in result.metrics.reply_latency_s)
    assert result.metrics.underrun_ticks == 0
    # After the barge-in the agent audio is silent (but for the 5 ms fade) until the next reply.
    played = tap.of_type(PlayedAudioFrame)
    stop_ns = interrupted[0].pts_ns
    after = [p for p in played if p.pts_ns >= stop_ns and p.turn_id is None]
    assert after and max(float(np.abs(p.samples).max()) for p in after[:10]) == 0.0


def test_demo_mp4_decodes_to_the_expected_duration(demo):
    result, _, out = demo
    info = probe(out)
    assert info.video_frames == result.ticks
    assert abs(info.duration_s - result.media_s) < 0.05
    assert info.fps == pytest.approx(25.0)
    assert info.audio_sample_rate == 24000
    assert abs(info.audio_duration_s - result.media_s) < 0.05
    audio, rate = read_audio(out)
    assert rate == 24000 and np.abs(audio).max() > 0.05  # both voices are in the mix


def test_mouth_opens_on_vowels_and_closes_on_bilabials(demo):
    _, tap, _ = demo
    faces = tap.of_type(FaceParamsFrame)
    times = np.array([f.pts_ns / 1e9 for f in faces])
    params = np.stack([f.params for f in faces])
    phonemes = [(t, ev.text.strip("',")) for p in tap.of_type(PlayedAudioFrame) for t, ev in p.scheduled_events if ev.kind == "phoneme"]
    stops = [s.pts_ns / 1e9 for s in tap.of_type(AgentStoppedSpeakingFrame) if s.interrupted]

    def frames_during(i):
        """Video frames shown while phoneme i sounds (at least the nearest one)."""
        t0 = phonemes[i][0]
        t1 = phonemes[i + 1][0] if i + 1 < len(phonemes) and phonemes[i + 1][0] > t0 else t0 + 0.08
        idx = np.flatnonzero((times >= t0 - 0.02) & (times <= t1 + 0.02))
        return params[idx] if idx.size else params[[np.argmin(np.abs(times - t0))]]

    def heard(t):
        return all(t < s - 0.2 or t > s for s in stops)

    jaw = params[:, 100] / JAW_OPEN_MAX_RAD
    close = params[:, ARKIT_INDEX["mouthClose"]]
    closed, opened = [], []
    for i, (t, ph) in enumerate(phonemes):
        if not heard(t):
            continue
        seg = frames_during(i)
        if ph in ("m", "b", "p"):
            closed.append(bool(((seg[:, 100] / JAW_OPEN_MAX_RAD < 0.2) & (seg[:, ARKIT_INDEX["mouthClose"]] > 0.5)).any()))
        elif ph in ("a", "A:", "aI", "aU", "A@"):  # open vowels (a# is espeak's reduced a)
            opened.append(bool((seg[:, 100] / JAW_OPEN_MAX_RAD > 0.35).any()))
    assert len(closed) >= 10 and len(opened) >= 10
    assert np.mean(closed) > 0.9, np.mean(closed)
    assert np.mean(opened) > 0.9, np.mean(opened)
    # Between turns the mouth rests; while speaking it moves a lot.
    assert jaw.max() > 0.5 and close.max() > 0.5


def test_listening_face_blinks_and_moves(demo):
    _, tap, _ = demo
    starts = [f.pts_ns for f in tap.of_type(UserStartedSpeakingFrame)]
    ends = [f.pts_ns for f in tap.of_type(UserStoppedSpeakingFrame)]
    assert len(starts) == len(ends) >= 4  # a comma pause may split a turn into two stretches of speech
    faces = tap.of_type(FaceParamsFrame)
    # Listening: from each stretch of user speech to the agent's next reply (the user's turn and the
    # end-of-turn wait), not only the detector's speech stretches, which the end-of-turn detector's
    # short hangover cuts at every word gap.
    replies = [f.pts_ns for f in tap.of_type(AgentStartedSpeakingFrame)]
    spans = [(s, min([r for r in replies if r > s], default=e)) for s, e in zip(starts, ends, strict=True)]
    listening = np.stack([f.params for f in faces if any(s <= f.pts_ns <= e for s, e in spans)])
    blink = listening[:, ARKIT_INDEX["eyeBlinkLeft"]]
    assert (blink > 0.8).sum() >= 1, "blinks while listening"
    assert listening[:, 103:106].std(axis=0).max() > 0.005, "the head moves while listening"
    # Once the agent has stopped (barge-in: within 100 ms, then 120 ms to relax) the mouth rests.
    settled = np.stack([f.params for f in faces if any(s + 250_000_000 <= f.pts_ns <= e for s, e in zip(starts, ends, strict=True))])
    assert np.abs(settled[:, 100]).max() < 0.05, "the mouth stays shut while listening"
    all_faces = np.stack([f.params for f in faces])
    assert (np.abs(np.diff(all_faces[:, 103:106], axis=0)).sum(axis=1) > 0).mean() > 0.9, "never frozen"


def test_a_rendered_conversation_where_the_agent_cuts_in(tmp_path):
    """The shipped ned_cuts_in.yaml: `anima render` honours agent_interrupts_s (the visitor is cut off)."""
    from pathlib import Path

    from anima.cascade import render_conversation

    path = Path(__file__).resolve().parents[1] / "anima" / "assets" / "conversations" / "ned_cuts_in.yaml"
    result = render_conversation(path, tmp_path / "cut.mp4", CascadeOptions(width=320, height=180), progress=False)
    user = [t for t in result.history.turns if t.speaker == "user"]
    assert [t.interrupted for t in user] == [False, True, False]
    assert 3 <= len(user[1].text.split()) < 20  # what the visitor said in the ~3 s before the cut
    agents = [t for t in result.history.turns if t.speaker == "agent"]
    assert agents[1].text.startswith("Hold on there!") and not agents[1].interrupted
