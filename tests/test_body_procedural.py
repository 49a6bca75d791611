"""ProceduralBody and VideoRateBody: skeleton validity, idle, beats, gestures, interrupts, resampling."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from anima.body.base import BodyAnimator, VideoRateBody
from anima.body.procedural import ProceduralBody, gesture_for_prompt
from anima.body.skeleton import JOINT, NUM_JOINTS, PARENTS, REST_JOINTS, REST_OFFSETS
from anima.core.plan import GESTURES

pytestmark = pytest.mark.unit

FPS = 20
JUMP_BOUND_M = 0.06
BONE_LENGTHS = np.linalg.norm(REST_OFFSETS[1:], axis=-1)  # (21,)
PLANTED = [JOINT[n] for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]


def run(body: ProceduralBody, seconds: float) -> np.ndarray:
    return np.stack([body.next_frame() for _ in range(int(round(seconds * FPS)))])  # (T, 22, 3)


def bone_lengths(frames: np.ndarray) -> np.ndarray:
    return np.linalg.norm(frames[:, 1:] - frames[:, list(PARENTS[1:])], axis=-1)  # (T, 21)


def max_step(frames: np.ndarray) -> float:
    return float(np.max(np.linalg.norm(np.diff(frames, axis=0), axis=-1)))


def idle_frames(seconds: float, seed: int = 0) -> np.ndarray:
    return run(ProceduralBody(seed), seconds)


# -- the protocol and the skeleton ------------------------------------------------------------


def test_implements_protocol():
    body = ProceduralBody()
    assert isinstance(body, BodyAnimator)
    assert body.fps == FPS
    frame = body.next_frame()
    assert frame.shape == (NUM_JOINTS, 3) and np.all(np.isfinite(frame))


def test_bone_lengths_preserved_through_everything():
    body = ProceduralBody(seed=3)
    for i, gesture in enumerate(GESTURES):
        body.push_prompt(gesture, 1.0 + 1.5 * i)
    body.push_beats(np.arange(2.0, 12.0, 0.3).tolist(), [1.0] * len(np.arange(2.0, 12.0, 0.3)))
    body.interrupt(9.0)
    body.push_prompt("walk", 10.0)
    frames = run(body, 20.0)
    np.testing.assert_allclose(bone_lengths(frames), np.broadcast_to(BONE_LENGTHS, (len(frames), 21)), atol=1e-6)


# -- idle ------------------------------------------------------------------------------------


def test_idle_moves_but_stays_put():
    frames = idle_frames(30.0)
    moving = [j for j in range(NUM_JOINTS) if j not in PLANTED]
    spread = np.linalg.norm(frames.std(axis=0), axis=-1)  # (22,) metres
    assert np.all(spread[moving] > 0.002), spread
    root_offset = frames[:, 0] - REST_JOINTS[0]
    assert np.max(np.linalg.norm(root_offset, axis=-1)) < 0.10
    # Never frozen: every second of idle moves the wrists and head a little.
    per_second = frames.reshape(30, FPS, NUM_JOINTS, 3)
    for joint in ("head", "left_wrist", "right_wrist"):
        ranges = np.ptp(per_second[:, :, JOINT[joint]], axis=1).max(axis=-1)
        assert np.all(ranges > 1e-4), (joint, ranges.min())
    assert max_step(frames) < 0.01


def test_idle_feet_stay_on_the_floor():
    frames = idle_frames(30.0, seed=5)
    np.testing.assert_allclose(frames[:, PLANTED, 1], np.broadcast_to(REST_JOINTS[PLANTED, 1], (len(frames), 4)), atol=0.005)
    np.testing.assert_allclose(frames[:, PLANTED, :], np.broadcast_to(REST_JOINTS[PLANTED], (len(frames), 4, 3)), atol=0.01)


# -- determinism -------------------------------------------------------------------------------


def scripted(seed: int) -> np.ndarray:
    body = ProceduralBody(seed)
    body.push_prompt("a person waves goodbye", 0.5)
    body.push_beats([1.0, 1.4, 2.2], [1.0, 0.5, 0.8])
    frames = [body.next_frame() for _ in range(40)]
    body.interrupt(2.1)
    body.push_prompt("bow", 2.5)
    frames += [body.next_frame() for _ in range(60)]
    return np.stack(frames)


def test_deterministic_for_a_seed():
    np.testing.assert_array_equal(scripted(7), scripted(7))
    assert not np.allclose(scripted(7), scripted(8))


def test_reset_restarts_the_same_motion():
    body = ProceduralBody(seed=2)
    body.push_prompt("nod", 0.2)
    first = run(body, 3.0)
    body.reset()
    body.push_prompt("nod", 0.2)
    np.testing.assert_array_equal(run(body, 3.0), first)


# -- prompts and gestures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gesture"),
    [
        *[(name, name) for name in GESTURES],
        ("BOW", "bow"),
        ("a person bows", "bow"),
        ("waves goodbye", "bye"),
        ("a person beckons", "call"),
        ("points to the left", "point"),
        ("walks forward", "walk"),
        ("the man nods", "nod"),
        ("she shrugs", "shrug"),
        ("shakes his head", "shake"),
        ("guides the visitor to the right", "guide"),
        ("", "none"),
        ("flibbertigibbet", "none"),
    ],
)
def test_gesture_for_prompt(text, gesture):
    assert gesture_for_prompt(text) == gesture


def test_unknown_and_long_prompts_are_idle_and_harmless():
    reference = idle_frames(3.0)
    body = ProceduralBody()
    body.push_prompt("zzz " * 20000, 0.0)
    body.push_prompt("", 1.0)
    np.testing.assert_allclose(run(body, 3.0), reference, atol=1e-12)


def test_bow_lowers_the_head():
    body = ProceduralBody()
    body.push_prompt("a person bows", 1.0)
    frames = run(body, 5.0)
    reference = idle_frames(5.0)
    head = JOINT["head"]
    drop = reference[:, head, 1] - frames[:, head, 1]
    assert drop.max() > 0.10
    assert 1.5 < np.argmax(drop) / FPS < 3.5  # mid-gesture
    assert abs(drop[-1]) < 0.005  # back up afterwards


def test_bye_raises_the_right_wrist_above_the_right_shoulder():
    body = ProceduralBody()
    body.push_prompt("bye", 0.5)
    frames = run(body, 6.0)
    above = frames[:, JOINT["right_wrist"], 1] - frames[:, JOINT["right_shoulder"], 1]
    assert above.max() > 0.05
    raised = above > 0.0
    assert raised.sum() > FPS  # held up for over a second (waving)
    wrist_x = frames[raised, JOINT["right_wrist"], 0]
    assert np.ptp(wrist_x) > 0.05  # the raised hand waves side to side
    assert np.all(frames[:, JOINT["left_wrist"], 1] < frames[:, JOINT["left_shoulder"], 1])


def test_left_side_prompt_uses_the_left_arm():
    body = ProceduralBody()
    body.push_prompt("points to the left", 0.5)
    frames = run(body, 3.0)
    reference = idle_frames(3.0)
    moved = np.linalg.norm(frames - reference, axis=-1).max(axis=0)  # (22,)
    assert moved[JOINT["left_wrist"]] > 0.3
    assert moved[JOINT["right_wrist"]] < 0.05


def test_walk_steps_in_place():
    body = ProceduralBody()
    body.push_prompt("walks forward", 0.5)
    frames = run(body, 8.0)
    for ankle in ("left_ankle", "right_ankle"):
        assert frames[:, JOINT[ankle], 1].max() - REST_JOINTS[JOINT[ankle], 1] > 0.05
    root_offset = frames[:, 0] - REST_JOINTS[0]
    assert np.max(np.linalg.norm(root_offset, axis=-1)) < 0.10
    assert frames[:, PLANTED, 1].min() > -0.005  # never through the floor


def test_every_gesture_is_smooth_and_returns_to_idle():
    reference = idle_frames(7.0)
    for gesture in GESTURES:
        if gesture == "walk":
            continue
        body = ProceduralBody()
        body.push_prompt(gesture, 0.5)
        frames = run(body, 7.0)
        assert max_step(frames) < JUMP_BOUND_M, gesture
        np.testing.assert_allclose(frames[-20:], reference[-20:], atol=1e-3, err_msg=gesture)


# -- speech beats --------------------------------------------------------------------------------


def test_beats_move_the_wrists_only_around_the_beats():
    beats = [3.0, 3.35, 3.8, 4.3]
    reference = idle_frames(9.0)
    body = ProceduralBody()
    body.push_beats(beats, [1.0] * len(beats))
    frames = run(body, 9.0)
    wrists = [JOINT["left_wrist"], JOINT["right_wrist"]]
    moved = np.linalg.norm(frames[:, wrists] - reference[:, wrists], axis=-1).max(axis=-1)  # (T,)
    t = np.arange(len(frames)) / FPS
    assert moved[(t > beats[0] - 0.3) & (t < beats[-1] + 0.3)].min() > 0.03
    far = (t < beats[0] - 1.2) | (t > beats[-1] + 1.8)
    assert moved[far].max() < 1e-9
    assert max_step(frames) < JUMP_BOUND_M


def test_beat_accents_land_on_the_beats():
    beats = [2.0, 3.0, 4.0]
    quiet, accented = ProceduralBody(), ProceduralBody()
    quiet.push_beats(beats, [0.0] * 3)  # talking posture, no accents
    accented.push_beats(beats, [1.0] * 3)
    difference = np.linalg.norm(run(accented, 6.0) - run(quiet, 6.0), axis=-1)  # (T, 22)
    wrists = difference[:, [JOINT["left_wrist"], JOINT["right_wrist"]]].max(axis=-1)  # (T,)
    t = np.arange(len(wrists)) / FPS
    for beat in beats:
        near = np.abs(t - beat) < 0.3
        between = np.abs(t - beat - 0.5) < 0.1
        assert wrists[near].max() > 0.02
        assert wrists[between].max() < 1e-9


# -- interruptions and arbitrary switching -----------------------------------------------------------


@pytest.mark.parametrize(("gesture", "settle_s"), [("respond", 0.7), ("nod", 0.6), ("bye", 1.2), ("walk", 0.8)])
def test_interrupt_returns_to_idle_without_a_jump(gesture, settle_s):
    reference = idle_frames(6.0)
    body = ProceduralBody()
    body.push_prompt(gesture, 0.2)
    body.push_beats([1.2, 1.6, 2.0, 2.4, 2.8], [1.0] * 5)
    frames = [body.next_frame() for _ in range(32)]  # up to 1.55 s: mid-gesture, mid-speech
    body.interrupt(1.6)
    frames += [body.next_frame() for _ in range(88)]
    frames = np.stack(frames)
    assert max_step(frames) < JUMP_BOUND_M
    assert np.linalg.norm(frames[31] - reference[31], axis=-1).max() > 0.02  # it was doing something
    settled = int(round((1.6 + settle_s) * FPS))
    np.testing.assert_allclose(frames[settled:], reference[settled:120], atol=0.01)


def test_random_prompt_switches_never_jump():
    texts = [*GESTURES, "", "a person waves goodbye", "points to the left", "unknown words", "walks forward"]
    for seed in range(12):
        rng = random.Random(seed)
        body = ProceduralBody(seed)
        frames = []
        for k in range(240):
            now = k / FPS
            roll = rng.random()
            if roll < 0.06:
                body.push_prompt(rng.choice(texts), now + rng.uniform(-0.5, 1.0))
            elif roll < 0.09:
                times = sorted(now + rng.uniform(-0.5, 2.0) for _ in range(rng.randint(1, 6)))
                body.push_beats(times, [rng.uniform(0.0, 1.5) for _ in times])
            elif roll < 0.11:
                body.interrupt(now + rng.uniform(-0.3, 0.3))
            frames.append(body.next_frame())
        frames = np.stack(frames)
        assert max_step(frames) < JUMP_BOUND_M, seed
        np.testing.assert_allclose(bone_lengths(frames), np.broadcast_to(BONE_LENGTHS, (240, 21)), atol=1e-6)
        assert frames[:, PLANTED, 1].min() > -0.005


def test_push_beats_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 times but 1 strengths"):
        ProceduralBody().push_beats([1.0, 2.0], [1.0])


# -- VideoRateBody ------------------------------------------------------------------------------


class CountingAnimator:
    """A fake BodyAnimator whose frame k is filled with k, to watch what VideoRateBody pulls."""

    fps = FPS

    def __init__(self) -> None:
        self.pulled = 0

    def push_prompt(self, text, t_s):
        pass

    def push_beats(self, times_s, strengths):
        pass

    def interrupt(self, t_s):
        pass

    def next_frame(self):
        frame = np.full((NUM_JOINTS, 3), float(self.pulled))
        self.pulled += 1
        return frame

    def reset(self):
        self.pulled = 0


def reference_interpolation(frames: np.ndarray, fps: float, t_s: float) -> np.ndarray:
    """Slow and obvious: find the two grid neighbours by scanning and blend them."""
    for k in range(len(frames) - 1):
        t0, t1 = k / fps, (k + 1) / fps
        if t0 <= t_s <= t1:
            a = (t_s - t0) / (t1 - t0)
            return frames[k] * (1 - a) + frames[k + 1] * a
    raise AssertionError(f"{t_s} beyond the reference frames")


def test_video_rate_frame_count_and_lookahead():
    animator = CountingAnimator()
    video = VideoRateBody(animator)
    out = []
    for i in range(4 * 25):
        t = i / 25
        out.append(video.frame_at(t))
        assert animator.pulled - 1 <= math.floor(t * FPS + 1e-9) + 1  # at most one frame ahead
        np.testing.assert_allclose(out[-1], t * FPS, atol=1e-9)  # frame k holds k: linear in t
    assert len(out) == 100
    assert 80 <= animator.pulled <= 81


def test_video_rate_matches_reference_interpolation():
    frames = run(ProceduralBody(seed=4), 5.0)
    body = ProceduralBody(seed=4)
    body_prompted = VideoRateBody(body)
    for i in range(4 * 25):
        t = i / 25
        np.testing.assert_allclose(body_prompted.frame_at(t), reference_interpolation(frames, FPS, t), atol=1e-12)
    # Repeated and irregular times are fine as long as they do not go backwards.
    video = VideoRateBody(ProceduralBody(seed=4))
    for t in (0.0, 0.0, 0.013, 0.05, 0.05, 0.9871, 2.5, 3.333):
        np.testing.assert_allclose(video.frame_at(t), reference_interpolation(frames, FPS, t), atol=1e-12)


def test_video_rate_rejects_going_backwards_and_resets():
    video = VideoRateBody(ProceduralBody())
    first = video.frame_at(0.5)
    with pytest.raises(ValueError, match="backwards"):
        video.frame_at(0.4)
    video.reset()
    np.testing.assert_array_equal(video.frame_at(0.5), first)
