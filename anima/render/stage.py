"""Render stages: pixels per tick from the latest face and body, and the MP4 writer sink.

The renderer never waits for a late module: it draws the last face and pose it has. Captions show
the agent's words as they are heard (from the playout's word schedule) and the user's words as
they are recognised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anima.body.skeleton import REST_JOINTS
from anima.core.frames import (
    NS_PER_S,
    SAMPLE_RATE,
    AgentStartedSpeakingFrame,
    AgentState,
    AgentStateFrame,
    AgentStoppedSpeakingFrame,
    BodyPoseFrame,
    EndFrame,
    FaceParamsFrame,
    Frame,
    PlayedAudioFrame,
    SystemFrame,
    TickFrame,
    UserAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTranscriptFrame,
    VideoFrame,
)
from anima.core.stage import DOWN, Direction, Stage
from anima.face.params import neutral
from anima.render.character import CharacterRenderer, Overlay
from anima.render.mp4 import MP4Writer

CAPTION_CHARS = 90
CAPTION_HOLD_S = 1.5


def _level(samples: np.ndarray) -> float:
    """Loudness 0..1 for the meters (RMS in dB mapped from -50..-10 dBFS)."""
    if samples.size == 0:
        return 0.0
    db = 10 * np.log10(float(np.mean(np.square(samples, dtype=np.float64))) + 1e-12)
    return float(np.clip((db + 50) / 40, 0, 1))


class RenderStage(Stage):
    """Face, pose, audio levels and turn events in; one VideoFrame per tick out."""

    def __init__(self, renderer: CharacterRenderer, agent_name: str = "Agent", user_name: str = "User") -> None:
        super().__init__(name="render")
        self.renderer = renderer
        self._face = neutral()
        self._joints = REST_JOINTS.copy()
        self._state = AgentState.IDLE
        self._agent_words: list[tuple[float, str, int]] = []  # (media time s, word, end char in text)
        self._agent_text = ""
        self._agent_caption_until = -1.0
        self._user_caption = ""
        self._user_caption_until = -1.0
        self._user_speaking = False
        self._agent_speaking = False
        self._levels = [0.0, 0.0]
        self._overlay = Overlay(agent_name=agent_name, user_name=user_name)

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is DOWN:
            match frame:
                case FaceParamsFrame():
                    self._face = frame.params
                case BodyPoseFrame():
                    self._joints = frame.joints
                case PlayedAudioFrame():
                    self._levels[0] = _level(frame.samples)
                    self._agent_words += [
                        (t, ev.text, ev.char_start + ev.char_len) for t, ev in frame.scheduled_events if ev.kind == "word"
                    ]
                case UserAudioFrame():
                    self._levels[1] = _level(frame.samples)
                case UserTranscriptFrame():
                    self._user_caption = frame.text
                    self._user_caption_until = frame.pts_s + (CAPTION_HOLD_S if frame.final else 10.0)
                case TickFrame():
                    await self.push_frame(VideoFrame(self._draw(frame.pts_s), pts_ns=frame.pts_ns))
        await self.push_frame(frame, direction)

    def _draw(self, t_s: float) -> np.ndarray:
        o = self._overlay
        o.time_s, o.agent_state = t_s, self._state.value
        o.agent_level, o.user_level = self._levels
        if self._agent_speaking or t_s <= self._agent_caption_until:
            o.caption, o.speaker = self._agent_caption(t_s), "agent"
        elif self._user_caption and t_s <= self._user_caption_until:
            o.caption, o.speaker = self._user_caption, "user"
        else:
            o.caption, o.speaker = "", None
        if self._user_speaking:
            o.speaker = "user"
            o.caption = self._user_caption if t_s <= self._user_caption_until else ""
        with self.timed():
            return self.renderer.draw(self._joints, self._face, o)

    def _agent_caption(self, t_s: float) -> str:
        """The agent's words heard so far, with the script's punctuation, ending at the newest word."""
        heard = [(w, end) for when, w, end in self._agent_words if when <= t_s]
        if not heard:
            return ""
        word, end = heard[-1]
        if 0 < end <= len(self._agent_text) and self._agent_text[:end].endswith(word):
            text = self._agent_text[:end]
        else:
            text = " ".join(w for w, _ in heard)
        if len(text) > CAPTION_CHARS:
            cut = text.find(" ", len(text) - CAPTION_CHARS)
            text = text[cut + 1 :] if cut >= 0 else text[-CAPTION_CHARS:]
        return text

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        match frame:
            case AgentStateFrame() if direction is DOWN:
                self._state = frame.state
            case AgentStartedSpeakingFrame() if direction is DOWN:
                self._agent_speaking = True
                self._agent_text = frame.text
                self._agent_words = [item for item in self._agent_words if item[0] >= frame.pts_s]
            case AgentStoppedSpeakingFrame() if direction is DOWN:
                self._agent_speaking = False
                self._agent_caption_until = frame.pts_s + CAPTION_HOLD_S
                self._agent_words = [item for item in self._agent_words if item[0] < frame.pts_s]
            case UserStartedSpeakingFrame() if direction is DOWN:
                self._user_speaking = True
                self._agent_caption_until = -1.0
                self._user_caption, self._user_caption_until = "", frame.pts_s + 10.0
            case UserStoppedSpeakingFrame() if direction is DOWN:
                self._user_speaking = False
        await self.push_frame(frame, direction)


class MP4Sink(Stage):
    """Writes video frames with the agent's and the user's audio mixed at their media times.

    The user's audio for a tick arrives one tick after the tick (as from a microphone), so frame k
    is written when the audio under it is complete, or at the end of the stream.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: int = 25, sample_rate: int = SAMPLE_RATE, gain: float = 0.9) -> None:
        super().__init__(name="writer")
        self.path = Path(path)
        self.writer = MP4Writer(self.path, width, height, fps=fps, sample_rate=sample_rate)
        self.sample_rate, self.gain = sample_rate, gain
        self._mix = np.zeros(0, dtype=np.float32)  # audio mix from _mix_start (samples)
        self._mix_start = 0
        self._user_until = 0  # absolute sample index up to which user audio arrived
        self._pending: list[tuple[int, np.ndarray]] = []  # (start sample, image)
        self._samples_per_frame = sample_rate // fps
        self.frames_written = 0
        self.closed = False

    def _add(self, samples: np.ndarray, pts_ns: int) -> int:
        start = int(round(pts_ns * self.sample_rate / NS_PER_S)) - self._mix_start
        end = start + samples.size
        if start < 0:
            samples, start = samples[-start:], 0
        if end > self._mix.size:
            self._mix = np.concatenate([self._mix, np.zeros(end - self._mix.size, np.float32)])
        self._mix[start:end] += samples * self.gain
        return end + self._mix_start

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is DOWN:
            match frame:
                case PlayedAudioFrame():
                    self._add(frame.samples, frame.pts_ns)
                case UserAudioFrame():
                    self._user_until = max(self._user_until, self._add(frame.samples, frame.pts_ns))
                case VideoFrame():
                    start = int(round(frame.pts_ns * self.sample_rate / NS_PER_S))
                    self._pending.append((start, frame.image))
                    self._write_ready(final=False)
                case EndFrame():
                    self._write_ready(final=True)
                    with self.timed():
                        self.writer.close()
                    self.closed = True
        await self.push_frame(frame, direction)

    async def stop(self) -> None:
        """A session that ends without an EndFrame (an error) leaves no partial file behind."""
        await super().stop()
        if not self.closed:
            self.writer.abort()

    def _write_ready(self, final: bool) -> None:
        while self._pending:
            start, image = self._pending[0]
            end = start + self._samples_per_frame
            if not final and self._user_until < end:
                return
            self._pending.pop(0)
            lo, hi = start - self._mix_start, end - self._mix_start
            if hi > self._mix.size:
                self._mix = np.concatenate([self._mix, np.zeros(hi - self._mix.size, np.float32)])
            audio = np.clip(self._mix[lo:hi], -1.0, 1.0)
            with self.timed():
                self.writer.write(image, audio)
            self.frames_written += 1
            self._mix = self._mix[hi:]
            self._mix_start += hi
