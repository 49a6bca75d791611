"""Control frames: the clock tick, motion control signals, end of stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anima.core.frames.base import ControlFrame, UninterruptibleFrame


@dataclass
class TickFrame(UninterruptibleFrame, ControlFrame):
    """One period of the session clock (one video frame). Stages emit their per-tick output on it.

    ``pts_ns`` is the start of the period, ``duration_ns`` its length, ``index`` its number.
    """

    index: int
    duration_ns: int


@dataclass
class TextPromptFrame(ControlFrame):
    """A motion prompt for the body (e.g. "a person bows"); empty text means idle."""

    text: str


@dataclass
class TrajectoryFrame(ControlFrame):
    """Root trajectory waypoints on the floor plane (x, z) in metres. # (N, 2)"""

    points: np.ndarray


@dataclass
class EndFrame(UninterruptibleFrame, ControlFrame):
    """The end of the stream: stages flush and finish."""
