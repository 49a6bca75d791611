"""Interruption tests of the face and body stages (STYLE T2): a barge-in at any moment of a reply
(plan received, audio not yet playing, or playing) stops the face and body behaviour it planned."""

import asyncio

import numpy as np
import pytest

from anima.body.procedural import ProceduralBody
from anima.body.stage import BodyStage
from anima.core.frames import (
    AgentStartedSpeakingFrame,
    AgentStoppedSpeakingFrame,
    BodyPoseFrame,
    FaceParamsFrame,
    InterruptionFrame,
    ThinkerPlanFrame,
    TickFrame,
)
from anima.core.plan import ActionPlan
from anima.face.procedural import ProceduralFace
from anima.face.stage import FaceStage
from anima.testing import run_frames

pytestmark = pytest.mark.unit

TICK_NS = 40_000_000
BOW = ActionPlan("Welcome aboard the Nautilus.", emotion="happy", gesture="bow", gaze="away")


class RecordingBody(ProceduralBody):
    """The procedural body, noting every control call."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.calls: list[tuple] = []

    def push_prompt(self, text, t_s):
        self.calls.append(("prompt", text, round(t_s, 3)))
        super().push_prompt(text, t_s)

    def interrupt(self, t_s):
        self.calls.append(("interrupt", round(t_s, 3)))
        super().interrupt(t_s)


class RecordingFace(ProceduralFace):
    """The procedural face, noting every control call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def cut_speech(self, t_s):
        self.calls.append(("cut", round(t_s, 3)))
        super().cut_speech(t_s)

    def set_emotion(self, emotion, t_s):
        self.calls.append(("emotion", emotion, round(t_s, 3)))
        super().set_emotion(emotion, t_s)

    def set_gaze(self, target, t_s):
        self.calls.append(("gaze", target, round(t_s, 3)))
        super().set_gaze(target, t_s)


def tick(i: int) -> TickFrame:
    return TickFrame(i, TICK_NS, pts_ns=i * TICK_NS)


def at(i: int) -> int:
    return i * TICK_NS


def run(frames, face=None, body=None):
    face, body = face or RecordingFace(), body or RecordingBody()
    out = asyncio.run(run_frames([FaceStage(face), BodyStage(body)], frames))
    return out, face, body


def test_barge_in_before_the_first_audio_stops_the_planned_gesture_and_expression():
    # The plan is handled at tick 5 (0.2 s); the user barges in at tick 6, before any agent audio.
    frames = [*map(tick, range(5)), ThinkerPlanFrame(BOW, turn_id=1), tick(5),
              InterruptionFrame(onset_pts_ns=at(5), pts_ns=at(6)), *map(tick, range(6, 100))]
    out, face, body = run(frames)
    assert body.calls == [("prompt", "bow", 0.2), ("interrupt", 0.24)]
    assert face.calls == [("emotion", "happy", 0.2), ("gaze", "away", 0.2),
                          ("cut", 0.24), ("emotion", "neutral", 0.24), ("gaze", "user", 0.24)]
    # Every tick still has a face and a pose (the per-tick output is uninterruptible).
    assert len(out.of_type(FaceParamsFrame)) == len(out.of_type(BodyPoseFrame)) == 100

    # The body is back to the idle it would have shown without the plan, not bowing on.
    idle, _, _ = run([tick(i) for i in range(100)])
    poses = np.stack([f.joints for f in out.of_type(BodyPoseFrame)])  # (100, 22, 3)
    idle_poses = np.stack([f.joints for f in idle.of_type(BodyPoseFrame)])
    gap_m = np.linalg.norm(poses - idle_poses, axis=-1).max(axis=-1)  # (100,)
    assert gap_m[50:].max() < 0.01  # 1.2 s after the barge-in and on


def test_a_plan_still_queued_at_the_barge_in_is_never_applied():
    # Pushed back to back: the plan is still in the face stage's queue when the interruption lands.
    frames = [tick(0), ThinkerPlanFrame(BOW, turn_id=1), InterruptionFrame(pts_ns=at(0)), *map(tick, range(1, 5))]
    out, face, body = run(frames)
    assert body.calls == [] and face.calls == []
    assert out.of_type(ThinkerPlanFrame) == []
    assert len(out.of_type(BodyPoseFrame)) == 5


def test_barge_in_while_the_agent_speaks_is_handled_once_at_the_moment_of_silence():
    # The playout reports where the audio went silent; face and body act on that, exactly once.
    frames = [tick(0), ThinkerPlanFrame(BOW, turn_id=1), tick(1), AgentStartedSpeakingFrame(turn_id=1, pts_ns=at(2)),
              *map(tick, range(2, 10)), InterruptionFrame(pts_ns=at(10)),
              AgentStoppedSpeakingFrame(turn_id=1, interrupted=True, pts_ns=at(11) + 5_000_000), *map(tick, range(10, 20))]
    _, face, body = run(frames)
    assert body.calls == [("prompt", "bow", 0.04), ("interrupt", 0.445)]
    assert face.calls == [("emotion", "happy", 0.04), ("gaze", "away", 0.04), ("cut", 0.445)]


def test_a_barge_in_after_the_reply_ended_changes_nothing():
    frames = [tick(0), ThinkerPlanFrame(BOW, turn_id=1), tick(1), AgentStartedSpeakingFrame(turn_id=1, pts_ns=at(2)),
              tick(2), AgentStoppedSpeakingFrame(turn_id=1, pts_ns=at(3)), tick(3),
              InterruptionFrame(pts_ns=at(4)), tick(4)]
    _, face, body = run(frames)
    assert body.calls == [("prompt", "bow", 0.04), ("prompt", "", 0.12)]
    assert face.calls == [("emotion", "happy", 0.04), ("gaze", "away", 0.04)]


def test_a_reply_seen_starting_before_its_plan_is_not_taken_for_unspoken():
    # Turn events overtake queued frames: here the start arrives while the plan is still queued.
    frames = [tick(0), ThinkerPlanFrame(BOW, turn_id=1), AgentStartedSpeakingFrame(turn_id=1, pts_ns=at(1)),
              tick(1), AgentStoppedSpeakingFrame(turn_id=1, pts_ns=at(2)), tick(2),
              InterruptionFrame(pts_ns=at(3)), tick(3)]  # e.g. the user speaks while the agent thinks
    _, face, body = run(frames)
    assert body.calls == [("prompt", "bow", 0.04), ("prompt", "", 0.08)]
    assert face.calls == [("emotion", "happy", 0.04), ("gaze", "away", 0.04)]
