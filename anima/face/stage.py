"""The Face stage: one 112-D face frame per clock tick, speaking or listening.

It hears both parties every tick (the agent's played audio and the user's microphone), schedules
the agent's phonemes as the playout announces them (ahead of time, for coarticulation), and cuts
the mouth motion the moment the agent is interrupted. A reply interrupted before its audio started
leaves no trace: its scheduled speech is cut and the expression it set (emotion, gaze) is undone.
"""

from __future__ import annotations

import numpy as np

from anima.core.frames import (
    NS_PER_S,
    AgentStoppedSpeakingFrame,
    FaceParamsFrame,
    Frame,
    InterruptionFrame,
    PauseFrame,
    PlayedAudioFrame,
    SystemFrame,
    ThinkerPlanFrame,
    TickFrame,
    UserAudioFrame,
)
from anima.core.replies import ReplyTracker
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
        self._expression = ("neutral", "user")  # (emotion, gaze) the face was last given
        self._before_unspoken = self._expression  # the expression before the first unspoken plan
        self.replies = ReplyTracker()

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
                    if not self.replies.unspoken:
                        self._before_unspoken = self._expression
                    self.replies.planned(frame.turn_id)
                    self._express(frame.plan.emotion, frame.plan.gaze, self.clock.now_ns() / NS_PER_S)
                case TickFrame():
                    with self.timed():
                        params = self.face.step(frame.pts_s, self._own, self._other)
                    self._own = _EMPTY
                    await self.push_frame(FaceParamsFrame(params, pts_ns=frame.pts_ns))
        await self.push_frame(frame, direction)

    def _express(self, emotion: str, gaze: str, t_s: float) -> None:
        self.face.set_emotion(emotion, t_s)
        self.face.set_gaze(gaze, t_s)
        self._expression = (emotion, gaze)

    async def on_interruption(self, frame: InterruptionFrame) -> None:
        # Speaking: the playout follows up with AgentStoppedSpeakingFrame(interrupted=True), which
        # cuts the speech where the audio went silent. Not speaking yet: nothing will.
        if self.replies.unspoken:
            if not self.replies.speaking:
                self.face.cut_speech(frame.pts_s)
            self._express(*self._before_unspoken, frame.pts_s)
        self.replies.interrupted()

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        if direction is DOWN:
            self.replies.observe(frame)
            if isinstance(frame, AgentStoppedSpeakingFrame) and frame.interrupted:
                self.face.cut_speech(frame.pts_s)
            elif isinstance(frame, PauseFrame):  # silent from pts on; a resume re-schedules what is left
                self.face.cut_speech(frame.pts_s)
        await self.push_frame(frame, direction)
