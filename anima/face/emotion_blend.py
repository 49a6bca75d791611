"""A cross-fade between emotion poses on the media timeline, shared by every face animator.

    blend = EmotionBlend(poses)                # poses: {emotion name: offset vector}
    blend.set("happy", t_s=3.0)                # from whatever shows at 3.0 s to "happy" over 0.5 s
    offset = blend.at(3.2)                     # the pose offset at 3.2 s
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from anima.easing import smoothstep

EMOTION_BLEND_S = 0.5  # a new emotion takes over this fast (smoothstep ease in/out)


class EmotionBlend:
    """The emotion offset in force at any media time, blended from the previous one on a change."""

    def __init__(self, poses: Mapping[str, np.ndarray], blend_s: float = EMOTION_BLEND_S) -> None:
        if "neutral" not in poses:
            raise ValueError(f"EmotionBlend: poses need a 'neutral' entry, got {', '.join(poses)}")
        self.poses = poses
        self.blend_s = blend_s
        self.reset()

    def reset(self) -> None:
        """Back to neutral at once."""
        self._from = self._to = self.poses["neutral"]
        self._t0 = -math.inf

    def set(self, emotion: str, t_s: float) -> None:
        """Blend to ``emotion`` starting at media time ``t_s`` (from the pose shown then)."""
        if emotion not in self.poses:
            raise ValueError(f"unknown emotion {emotion!r}; expected one of {', '.join(self.poses)}")
        if not math.isfinite(t_s):
            raise ValueError(f"set_emotion: t_s must be finite, got {t_s}")
        self._from = self.at(float(t_s))
        self._to = self.poses[emotion]
        self._t0 = float(t_s)

    def at(self, t_s: float) -> np.ndarray:
        """The blended offset at media time ``t_s``."""
        s = smoothstep((t_s - self._t0) / self.blend_s)
        return self._from + (self._to - self._from) * s
