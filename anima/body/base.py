"""The streaming interface every body animator implements, and its video-rate adapter.

A body animator produces the 22-joint HumanML3D skeleton (``anima.body.skeleton``) at 20 fps on
a media timeline: frame ``k`` is the pose at media time ``k / fps`` seconds. Callers steer it with
motion prompts, speech beats and interruptions stamped in the same media seconds, and pull frames
one at a time. The procedural default (``anima.body.procedural.ProceduralBody``) and the neural
FloodDiffusion animator both implement ``BodyAnimator``; ``VideoRateBody`` serves either at the
video rate (25 fps) by pulling 20 fps frames on demand and interpolating.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class BodyAnimator(Protocol):
    """A streaming body-motion generator on a fixed-rate media timeline.

    Frame ``k`` returned by ``next_frame`` is the pose at media time ``k / fps``. Everything pushed
    in is stamped in media seconds on that timeline, so an animator may run a little ahead of the
    playback clock without changing what it draws.
    """

    fps: int  # frames per second of next_frame (20 for HumanML3D)

    def push_prompt(self, text: str, t_s: float) -> None:
        """Make ``text`` the motion prompt from media time ``t_s`` on; ``""`` means idle."""
        ...

    def push_beats(self, times_s: Sequence[float], strengths: Sequence[float]) -> None:
        """Schedule speech beats (word onsets, media seconds) with strengths (about 0..1)."""
        ...

    def interrupt(self, t_s: float) -> None:
        """Barge-in at media time ``t_s``: drop later beats and gestures, return to idle smoothly."""
        ...

    def next_frame(self) -> np.ndarray:
        """Return the next frame's joint positions, metres, Y up. # (22, 3)"""
        ...

    def reset(self) -> None:
        """Forget all prompts and beats and restart the timeline at frame 0."""
        ...


class VideoRateBody:
    """Serves any ``BodyAnimator`` at an arbitrary (video) rate by linear interpolation in time.

    ``frame_at(t_s)`` pulls animator frames only as far as it needs: the two neighbours of
    ``t_s`` on the animator's grid, so it looks at most one animator frame past ``t_s``. That keeps
    prompts and interruptions pushed between calls effective almost immediately. Times must be
    non-decreasing: the animator is a stream and cannot be rewound.

    Interpolating joint positions (not rotations) shortens bones by the chord of the motion between
    two 20 fps frames, a fraction of a millimetre at normal speeds; the renderer does not care.
    """

    def __init__(self, animator: BodyAnimator) -> None:
        self.animator = animator
        self.pulled = 0  # animator frames pulled so far; the next pull is frame index ``pulled``
        self._previous: np.ndarray | None = None  # frame pulled - 2 # (22, 3)
        self._latest: np.ndarray | None = None  # frame pulled - 1 # (22, 3)
        self._last_t_s = -math.inf

    def reset(self) -> None:
        """Reset the animator and forget the buffered frames (the timeline restarts at 0)."""
        self.animator.reset()
        self.pulled = 0
        self._previous = self._latest = None
        self._last_t_s = -math.inf

    def _pull_until(self, index: int) -> None:
        while self.pulled <= index:
            self._previous, self._latest = self._latest, np.asarray(self.animator.next_frame(), dtype=np.float64)
            self.pulled += 1

    def _frame(self, index: int) -> np.ndarray:
        # Only the last two pulled frames are kept; non-decreasing times never need older ones.
        if index == self.pulled - 1:
            return self._latest  # type: ignore[return-value]
        if index == self.pulled - 2 and self._previous is not None:
            return self._previous
        raise RuntimeError(f"VideoRateBody: frame {index} is no longer buffered (pulled {self.pulled})")

    def frame_at(self, t_s: float) -> np.ndarray:
        """The pose at media time ``t_s`` (seconds, >= 0, non-decreasing across calls). # (22, 3)"""
        if not math.isfinite(t_s) or t_s < 0.0:
            raise ValueError(f"VideoRateBody.frame_at: t_s must be a finite time >= 0, got {t_s}")
        if t_s < self._last_t_s:
            raise ValueError(
                f"VideoRateBody.frame_at: time went backwards ({t_s} < {self._last_t_s}); call reset() to restart"
            )
        self._last_t_s = t_s
        position = t_s * self.animator.fps
        index = math.floor(position + 1e-9)  # tolerate t = k / fps landing a hair below the grid
        alpha = position - index
        if alpha <= 1e-9:  # on the grid: the neighbour after it is not needed yet
            self._pull_until(index)
            return self._frame(index).copy()
        self._pull_until(index + 1)
        before, after = self._frame(index), self._frame(index + 1)
        return (1.0 - alpha) * before + alpha * after
