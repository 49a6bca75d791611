"""The Face stage: one 112-D face frame per clock tick, speaking or listening.

It hears both parties every tick (the agent's played audio and the user's microphone), schedules
the agent's phonemes as the playout announces them (ahead of time, for coarticulation), and cuts
the mouth motion the moment the agent is interrupted.
"""

from __future__ import annotations

import numpy as np

from anima.core.frames import (
    NS_PER_S,
    AgentStoppedSpeakingFrame,
    FaceParamsFrame,
    Frame,
    PlayedAudioFrame,
    SystemFrame,
    ThinkerPlanFrame,
    TickFrame,
    UserAudioFrame,
)
from anima.core.stage import DOWN, Direction, Stage
from anima.face.base import FaceAnimator

_EMPTY = np.zeros(0, dtype=np.float32)


class FaceStage(Stage):
    """Speech events and both parties' audio in, FaceParamsFrame out (one per tick)."""

    def __init__(self, face: FaceAnimator) -> None:
        super().__init__(name="face")
        self.face = face
        self._own = _EMPTY
        self._other = _EMPTY

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is DOWN:
            match frame:
                case PlayedAudioFrame():
                    if frame.scheduled_events:
                        self.face.schedule_speech(list(frame.scheduled_events))
                    self._own = frame.samples
                case UserAudioFrame():
                    self._other = frame.samples
                case ThinkerPlanFrame():
                    now_s = self.clock.now_ns() / NS_PER_S
                    self.face.set_emotion(frame.plan.emotion, now_s)
                    self.face.set_gaze(frame.plan.gaze, now_s)
                case TickFrame():
                    with self.timed():
                        params = self.face.step(frame.pts_s, self._own, self._other)
                    self._own = _EMPTY
                    await self.push_frame(FaceParamsFrame(params, pts_ns=frame.pts_ns))
        await self.push_frame(frame, direction)

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        if isinstance(frame, AgentStoppedSpeakingFrame) and direction is DOWN and frame.interrupted:
            self.face.cut_speech(frame.pts_s)
        await self.push_frame(frame, direction)
