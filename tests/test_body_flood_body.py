"""FloodBody with the shipped weights: the BodyAnimator contract the runtime relies on."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from anima.body.base import BodyAnimator, VideoRateBody
from anima.body.paths import WEIGHTS

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not (WEIGHTS / "flood" / "model.safetensors").is_file(), reason="shipped body weights missing"),
]


@pytest.fixture(scope="module")
def body():
    from anima.body.flood import FloodBody

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield FloodBody.load(seed=0)
    torch.set_num_threads(n)


def test_is_a_body_animator_with_skeleton_conventions(body):
    assert isinstance(body, BodyAnimator) and body.fps == 20
    body.reset()
    frames = np.stack([body.next_frame() for _ in range(60)])
    assert frames.shape == (60, 22, 3) and np.isfinite(frames).all()
    # metres, Y up, feet near the floor, root near the origin, facing +Z
    assert 0.7 < np.median(frames[:, 0, 1]) < 1.1
    assert frames[:, [10, 11], 1].min() > -0.1 and np.median(frames[:, [10, 11], 1].min(-1)) < 0.1
    assert np.abs(frames[:, 0, [0, 2]]).max() < 1.0
    assert np.median(frames[:, 1, 0] - frames[:, 2, 0]) > 0  # left hip at +X


def test_gestures_change_the_motion_without_jumps(body):
    body.reset()
    idle = np.stack([body.next_frame() for _ in range(40)])
    body.push_prompt("bow", 2.0)
    body.push_prompt("bye", 5.0)
    body.push_prompt("", 8.0)
    frames = np.stack([body.next_frame() for _ in range(160)])
    all_frames = np.concatenate([idle, frames])
    step = np.linalg.norm(np.diff(all_frames, axis=0), axis=-1).max(-1)  # largest joint move per frame
    assert step.max() < 0.25  # no teleport (m per 50 ms frame)
    assert not np.allclose(frames[20:60], idle[:40], atol=0.02)  # the bow moved the body


def test_reset_is_deterministic_and_interrupt_goes_idle(body):
    from anima.body.text import IDLE_PROMPT

    body.reset()
    a = np.stack([body.next_frame() for _ in range(20)])
    body.reset()
    b = np.stack([body.next_frame() for _ in range(20)])
    np.testing.assert_array_equal(a, b)
    body.push_prompt("walk", 1.0)
    body.push_beats([1.2, 1.5], [1.0, 0.5])  # accepted, ignored
    body.interrupt(2.0)
    for _ in range(45):
        body.next_frame()
    assert body.stream.prompt_at(body.stream.committed_tokens).text == IDLE_PROMPT


def test_idle_after_a_gesture_brings_the_hands_down(body):
    body.reset()
    body.push_prompt("bye", 0.5)
    frames = [body.next_frame() for _ in range(80)]
    body.push_prompt("", 4.0)
    frames += [body.next_frame() for _ in range(70)]
    frames = np.stack(frames)
    assert frames[-15:, [20, 21], 1].max() < 1.05  # wrists back near the rest pose (0.87 m)
    step = np.linalg.norm(np.diff(frames, axis=0), axis=-1).max(-1)
    assert step.max() < 0.25  # the cross-fade has no jump


def test_frames_arrive_inside_the_budget(body):
    body.reset()
    video = VideoRateBody(body)
    times = []
    for k in range(100):  # 4 s at 25 fps, a prompt change and an idle request in the middle
        if k == 30:
            body.push_prompt("guide", k / 25)
        if k == 60:
            body.push_prompt("", k / 25)
        t = time.perf_counter()
        video.frame_at(k / 25)
        times.append(time.perf_counter() - t)
    # 40 ms per video frame; generous for a shared CI CPU (a busy neighbour can stall any one
    # call), the benchmark reports the real numbers.
    assert np.percentile(times, 95) < 0.04, f"p95 {np.percentile(times, 95) * 1000:.1f} ms, worst {max(times) * 1000:.1f} ms"
