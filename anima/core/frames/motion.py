"""Motion frames: face parameters and body pose, one per clock tick."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anima.core.frames.base import DataFrame, UninterruptibleFrame


@dataclass
class FaceParamsFrame(UninterruptibleFrame, DataFrame):
    """FLAME-style 112-D face parameters (layout in ``anima.face.params``). # (112,)"""

    params: np.ndarray


@dataclass
class BodyPoseFrame(UninterruptibleFrame, DataFrame):
    """Joint positions of the 22-joint HumanML3D skeleton, metres, Y up. # (22, 3)"""

    joints: np.ndarray
