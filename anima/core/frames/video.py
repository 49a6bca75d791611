"""Video frames: rendered RGB pixels, one per clock tick."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anima.core.frames.base import DataFrame, UninterruptibleFrame


@dataclass
class VideoFrame(UninterruptibleFrame, DataFrame):
    """An RGB image. # (H, W, 3) uint8"""

    image: np.ndarray
