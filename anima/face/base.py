"""The streaming interface every face animator implements (the procedural default, UniLS).

A face animator produces one 112-D face frame (``anima.face.params``) per clock tick from both
parties' audio, steered by the agent's scheduled speech events, emotion and gaze, all stamped in
media seconds. One instance serves one session; model weights behind it are shared.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from anima.core.frames import SpeechEvent


class FaceAnimator(Protocol):
    """What the face stage drives: the procedural face and UniLS implement it."""

    def schedule_speech(self, events: list[tuple[float, SpeechEvent]]) -> None: ...
    def cut_speech(self, t_s: float) -> None: ...
    def set_emotion(self, emotion: str, t_s: float) -> None: ...
    def set_gaze(self, target: str, t_s: float) -> None: ...
    def step(self, t_s: float, own_audio: np.ndarray, other_audio: np.ndarray) -> np.ndarray: ...
    def reset(self) -> None: ...
