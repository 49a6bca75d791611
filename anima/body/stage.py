"""The Body stage: one pose per clock tick from a 20 fps body animator, resampled to video rate.

The plan's gesture becomes the body's motion prompt when the reply is planned, word onsets become
speech beats as the playout schedules them, and an interruption sends the body back to idle: at the
moment the agent's audio went silent if it was speaking (the playout's ``AgentStoppedSpeakingFrame``),
at the interruption itself if a planned reply had not started playing yet.
"""

from __future__ import annotations

from anima.body.base import BodyAnimator, VideoRateBody
from anima.core.frames import (
    NS_PER_S,
    AgentStoppedSpeakingFrame,
    BodyPoseFrame,
    Frame,
    InterruptionFrame,
    PlayedAudioFrame,
    SystemFrame,
    TextPromptFrame,
    ThinkerPlanFrame,
    TickFrame,
)
from anima.core.replies import ReplyTracker
from anima.core.stage import DOWN, Direction, Stage


class BodyStage(Stage):
    """Plans, prompts and speech beats in, BodyPoseFrame out (one per tick)."""

    def __init__(self, animator: BodyAnimator) -> None:
        super().__init__(name="body")
        self.animator = animator
        self.video_body = VideoRateBody(animator)
        self.replies = ReplyTracker()

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is DOWN:
            now_s = self.clock.now_ns() / NS_PER_S
            match frame:
                case ThinkerPlanFrame():
                    self.replies.planned(frame.turn_id)
                    gesture = frame.plan.gesture
                    self.animator.push_prompt("" if gesture == "none" else gesture, now_s)
                case TextPromptFrame():
                    self.animator.push_prompt(frame.text, now_s)
                case PlayedAudioFrame() if frame.scheduled_events:
                    beats = [t for t, ev in frame.scheduled_events if ev.kind == "word"]
                    if beats:
                        self.animator.push_beats(beats, [1.0] * len(beats))
                case TickFrame():
                    with self.timed():
                        joints = self.video_body.frame_at(frame.pts_s)
                    await self.push_frame(BodyPoseFrame(joints, pts_ns=frame.pts_ns))
        await self.push_frame(frame, direction)

    async def on_interruption(self, frame: InterruptionFrame) -> None:
        # Speaking: the playout follows up with AgentStoppedSpeakingFrame(interrupted=True), which
        # interrupts the animator where the audio went silent. Not speaking yet: nothing will.
        if self.replies.unspoken and not self.replies.speaking:
            self.animator.interrupt(frame.pts_s)
        self.replies.interrupted()

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        if direction is DOWN:
            self.replies.observe(frame)
            if isinstance(frame, AgentStoppedSpeakingFrame):
                if frame.interrupted:
                    self.animator.interrupt(frame.pts_s)
                else:
                    self.animator.push_prompt("", frame.pts_s)
        await self.push_frame(frame, direction)
