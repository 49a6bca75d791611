"""Typed, timestamped frames, split by domain and re-exported here."""

from anima.core.frames.audio import (
    SAMPLE_RATE,
    AgentAudioFrame,
    PlayedAudioFrame,
    SpeechEvent,
    UserAudioFrame,
)
from anima.core.frames.base import (
    NS_PER_S,
    ControlFrame,
    DataFrame,
    Frame,
    SystemFrame,
    UninterruptibleFrame,
)
from anima.core.frames.control import EndFrame, TextPromptFrame, TickFrame, TrajectoryFrame
from anima.core.frames.events import (
    AgentStartedSpeakingFrame,
    AgentState,
    AgentStateFrame,
    AgentStoppedSpeakingFrame,
    ErrorFrame,
    InterruptionFrame,
    PauseFrame,
    ResumeFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from anima.core.frames.motion import BodyPoseFrame, FaceParamsFrame
from anima.core.frames.text import ThinkerPlanFrame, UserTextFrame, UserTranscriptFrame, UserTurnFrame
from anima.core.frames.video import VideoFrame

__all__ = [
    "NS_PER_S", "SAMPLE_RATE", "AgentAudioFrame", "AgentStartedSpeakingFrame", "AgentState",
    "AgentStateFrame", "AgentStoppedSpeakingFrame", "BodyPoseFrame", "ControlFrame", "DataFrame",
    "EndFrame", "ErrorFrame", "FaceParamsFrame", "Frame", "InterruptionFrame", "PauseFrame", "PlayedAudioFrame", "ResumeFrame",
    "SpeechEvent", "SystemFrame", "TextPromptFrame", "ThinkerPlanFrame", "TickFrame", "TrajectoryFrame",
    "UninterruptibleFrame", "UserAudioFrame", "UserStartedSpeakingFrame", "UserStoppedSpeakingFrame",
    "UserTextFrame", "UserTranscriptFrame", "UserTurnFrame", "VideoFrame",
]
