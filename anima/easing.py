"""Easing curves shared by the procedural animators (face, body, gaze, emotion blends)."""

from __future__ import annotations

from typing import overload

import numpy as np


@overload
def smoothstep(x: float) -> float: ...
@overload
def smoothstep(x: np.ndarray) -> np.ndarray: ...
def smoothstep(x):
    """0 below 0, 1 above 1, cubic ease in/out in between (zero slope at both ends).

    Floats stay Python floats (the per-tick animators call it on scalars, where numpy is slower).
    """
    if isinstance(x, np.ndarray):
        x = np.clip(x, 0.0, 1.0)
        return x * x * (3.0 - 2.0 * x)
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)
