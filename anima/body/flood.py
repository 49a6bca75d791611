"""FloodBody: the FloodDiffusion stream as a runtime ``BodyAnimator`` (20 fps, 22 joints).

    body = FloodBody.load(seed=0)                 # shipped weights: anima/assets/weights/body/
    body.push_prompt("bow", t_s=1.0)              # a gesture name or any text; "" = idle
    frames = [body.next_frame() for _ in range(100)]   # each (22, 3) metres, Y up, facing +Z

Gesture names from the Thinker's plan become the prompts the model was trained on
(``anima.body.text.GESTURE_PROMPTS``: "bow" -> "a person bows", "bye" -> "a person waves
goodbye", ...). A prompt stamped at media time ``t_s`` applies from frame round(t_s * 20), or from
the first frame not yet generated if that one is already out.

Idle. The model is small and its clips are 3-6 s long: after a gesture it did not reliably bring
the hands down under the idle prompt (measured on the 5000-step model: wrists stayed ~0.5 m above
rest; the 9000-step model shipped now does in the streams looked at, not measured further). So an
idle request ("", "none", ``interrupt``) starts a fresh stream with the idle prompt ("a
person stands still", which the model does hold from a fresh start) and cross-fades the joints
to it over ``blend_s`` seconds; the fresh stream's cold start is spread over the frames before the
fade (one step per frame), so no frame pays for it. Gestures go to the running stream, which is
what FloodDiffusion is for: the change shows within a token and without a seam.

Frame budget. A step commits one latent token (4 frames) every 2 steps, so ``next_frame`` runs at
most one step per stream per call while its look-ahead buffer is short. Steps run with one torch
thread (``threads``, set around each call and restored): these models are too small to gain from
more, and on a busy 2-core machine torch's default of 2 threads made ``next_frame`` ~30x slower
(mean 144 ms, p95 830 ms, against 4 ms and 11 ms with one thread).

Placement. Generated motion integrates its own root velocity, so a long walk would leave the
panel. The output is re-centred: an anchor follows the root (XZ) and the body's heading with a
time constant of ``follow_s`` seconds, and joints are expressed relative to it, so the body
stays near the origin and turns back toward the camera (+Z) after a turn. Speech beats are
ignored (no beat data to learn them from).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from anima.body.model.streaming import MotionStream
from anima.body.paths import WEIGHTS
from anima.body.skeleton import BODY_FPS, FACE_JOINTS
from anima.body.text import IDLE_PROMPT, prompt_for_gesture


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch CPU threads, then restore (about 0.2 us; torch's setting is per process)."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _heading(joints: np.ndarray) -> float:
    """Yaw of the body's forward direction (0 = facing +Z), from hips and shoulders. (22, 3) -> rad"""
    r_hip, l_hip, r_sdr, l_sdr = FACE_JOINTS
    across = joints[r_hip] - joints[l_hip] + joints[r_sdr] - joints[l_sdr]
    forward = np.cross([0.0, 1.0, 0.0], across)
    return math.atan2(forward[0], forward[2])


class _Placed:
    """One stream with its frame buffer and its re-centring anchor."""

    def __init__(self, stream: MotionStream, follow_s: float, fps: int) -> None:
        self.stream = stream
        self.buffer: deque[np.ndarray] = deque()
        self.alpha = 1.0 - math.exp(-1.0 / (fps * follow_s))
        self.anchor: np.ndarray | None = None  # (x, z)
        self.yaw = 0.0

    def step(self) -> None:
        self.buffer.extend(self.stream.step())

    def pop(self) -> np.ndarray:
        while not self.buffer:
            self.step()
        return self.place(self.buffer.popleft())

    def place(self, joints: np.ndarray) -> np.ndarray:
        root = joints[0, [0, 2]]
        yaw = _heading(joints)
        if self.anchor is None:
            self.anchor, self.yaw = root.copy(), yaw
        self.anchor += self.alpha * (root - self.anchor)
        self.yaw += self.alpha * math.remainder(yaw - self.yaw, 2 * math.pi)
        c, s = math.cos(-self.yaw), math.sin(-self.yaw)
        out = joints.copy()
        x, z = out[:, 0] - self.anchor[0], out[:, 2] - self.anchor[1]
        out[:, 0] = c * x + s * z  # rotate by -yaw about Y
        out[:, 2] = -s * x + c * z
        return out


class FloodBody:
    """``BodyAnimator`` over ``MotionStream``: look-ahead buffer, re-centring, idle by cross-fade."""

    fps = BODY_FPS

    def __init__(self, stream: MotionStream, lookahead_frames: int = 8, follow_s: float = 2.0,
                 blend_s: float = 1.0, threads: int | None = 1) -> None:
        self.template = stream
        self.threads = threads
        self.lookahead_frames = lookahead_frames
        self.follow_s = follow_s
        self.blend_frames = max(1, round(blend_s * self.fps))
        self.reset()

    @classmethod
    def load(cls, seed: int = 0, weights: str | Path = WEIGHTS, **kwargs) -> FloodBody:
        """A new session over the shipped VAE + FloodDiffusion checkpoint (``weights``/vae and
        ``weights``/flood). The networks are loaded once per process and shared by every session
        (``FloodWeights.load``); a session holds only its streams' state."""
        weights = Path(weights)
        stream = MotionStream.load(weights / "flood", weights / "vae", seed=seed)
        return cls(stream, **kwargs)

    @property
    def stream(self) -> MotionStream:
        """The stream that is (or is about to be) shown."""
        return (self._incoming or self._current).stream

    def _fresh(self) -> _Placed:
        self._forks += 1
        stream = self.template.fork(self.template.seed + 1000 * self._forks)
        stream.push_prompt(IDLE_PROMPT, 0)
        return _Placed(stream, self.follow_s, self.fps)

    def reset(self) -> None:
        with _torch_threads(self.threads):
            self._reset()

    def _reset(self) -> None:
        self._forks = -1
        self.template.reset()
        self._current = self._fresh()
        self._incoming: _Placed | None = None  # idle stream warming up / fading in
        self._fade = 0  # frames of the fade done
        self._idle_at: int | None = None  # frame from which an idle restart is due
        self.frame_index = 0
        while not self._current.buffer:  # cold start before the first frame
            self._current.step()

    def push_prompt(self, text: str, t_s: float) -> None:
        """Gesture name or text from media time ``t_s``; "" (or "none") is idle (see the module doc)."""
        frame = max(0, round(t_s * self.fps)) if math.isfinite(t_s) else self.frame_index
        prompt = prompt_for_gesture(text)
        if not prompt or prompt == IDLE_PROMPT:
            if self._incoming is None and self._idle_at is None:
                self._idle_at = frame
            return
        self._idle_at = None  # a gesture after an idle request that has not started cancels it
        target = self._incoming or self._current
        offset = self.frame_index - (target.stream.committed_frames - len(target.buffer))
        target.stream.push_prompt(prompt, max(0, frame - offset))  # stream frames may lag the body's

    def push_beats(self, times_s: Sequence[float], strengths: Sequence[float]) -> None:
        """Accepted and ignored: the model has no speech-beat conditioning."""

    def interrupt(self, t_s: float) -> None:
        self.push_prompt("", t_s)

    def next_frame(self) -> np.ndarray:
        """The next 20 fps pose, re-centred. # (22, 3)"""
        with _torch_threads(self.threads):
            return self._next_frame()

    def _next_frame(self) -> np.ndarray:
        if self._idle_at is not None and self.frame_index >= self._idle_at and self._incoming is None:
            self._incoming, self._fade, self._idle_at = self._fresh(), 0, None
        current = self._current
        if len(current.buffer) < self.lookahead_frames:
            current.step()  # at most one step per frame while the buffer is short
        joints = current.pop()
        incoming = self._incoming
        if incoming is not None:
            if not incoming.buffer and incoming.stream.committed_frames == 0:
                incoming.step()  # warming up: one step per frame, no frame pays for the cold start
            else:
                if len(incoming.buffer) < self.lookahead_frames:
                    incoming.step()
                self._fade += 1
                a = self._fade / self.blend_frames
                a = a * a * (3 - 2 * a)  # smoothstep: zero velocity at both ends of the fade
                joints = (1 - a) * joints + a * incoming.pop()
                if self._fade >= self.blend_frames:
                    self._current, self._incoming = incoming, None
        self.frame_index += 1
        return joints
