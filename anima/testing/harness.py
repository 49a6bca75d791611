"""A harness that runs stages on scripted frames, and a deterministic tone TTS for runtime tests.

``ToneTTS`` is a stand-in used only to test the runtime around a Talker (timing, interruption,
history) without depending on a speech engine: every word is a 250 ms tone burst with a word
event at its start. The real default Talker is ``anima.talker.espeak.EspeakTTS``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np

from anima.core.clock import MediaClock
from anima.core.frames import SAMPLE_RATE, Frame, SpeechEvent, SystemFrame, TickFrame
from anima.core.pipeline import Pipeline
from anima.core.stage import Direction, Stage
from anima.talker.base import SpeechChunk


class FrameRecorder(Stage):
    """Records every frame it passes on (in order), then passes it on.

    Frames are recorded as the stage handles them, after the runtime's own checks: a stale frame of
    an interrupted turn that reaches the recorder is dropped like anywhere else and not recorded.
    """

    def __init__(self, name: str = "recorder") -> None:
        super().__init__(name=name)
        self.frames: list[tuple[Frame, Direction]] = []

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        self.frames.append((frame, direction))
        await self.push_frame(frame, direction)

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        self.frames.append((frame, direction))
        await self.push_frame(frame, direction)

    def of_type(self, kind: type, direction: Direction | None = Direction.DOWNSTREAM) -> list:
        return [f for f, d in self.frames if isinstance(f, kind) and (direction is None or d is direction)]


async def run_frames(stages: Sequence[Stage], frames: Sequence[Frame], clock: MediaClock | None = None) -> FrameRecorder:
    """Push ``frames`` through ``stages`` and return a recorder of what came out of the last one.

    Each TickFrame is waited for before the next frame is pushed (offline semantics). Other frames
    are pushed back to back without yielding to the stages, so frames pushed before an
    ``InterruptionFrame`` are still queued in the first stage when it arrives.
    """
    recorder = FrameRecorder()
    pipeline = Pipeline([*stages, recorder], clock or MediaClock())
    pipeline.clock.start()
    await pipeline.start()
    try:
        for frame in frames:
            if isinstance(frame, TickFrame):
                await pipeline.clock.wait_until(frame.pts_ns)
            await pipeline.push(frame)
            if isinstance(frame, TickFrame):
                await pipeline.wait_tick(frame.index)
    finally:
        await pipeline.stop()
    return recorder


class ToneTTS:
    """Deterministic TTS stand-in: each word is a 250 ms tone; chunks of 40 ms."""

    sample_rate = SAMPLE_RATE
    word_s = 0.25

    def __init__(self, voice: str = "tone", chunk_s: float = 0.04) -> None:
        self.voice = voice
        self.chunk = int(chunk_s * SAMPLE_RATE)

    def render(self, text: str) -> tuple[np.ndarray, list[SpeechEvent]]:
        words = text.split()
        n_word = int(self.word_s * SAMPLE_RATE)
        t = np.arange(n_word) / SAMPLE_RATE
        envelope = np.minimum(1.0, np.minimum(t, self.word_s - t) / 0.02)
        samples = np.concatenate([0.3 * np.sin(2 * np.pi * (180 + 20 * i % 100) * t) * envelope for i in range(len(words))]) if words else np.zeros(0)
        events, pos = [], 0
        for i, w in enumerate(words):
            start = text.index(w, pos)
            pos = start + len(w)
            events.append(SpeechEvent("word", i * self.word_s, w, start, len(w)))
            events.append(SpeechEvent("phoneme", i * self.word_s, "a"))
        events.append(SpeechEvent("end", len(words) * self.word_s))
        return samples.astype(np.float32), events

    def stream(self, text: str, *, voice: str | None = None, emotion: str | None = None,
               cancel: threading.Event | None = None) -> Iterator[SpeechChunk]:
        samples, events = self.render(text)
        for start in range(0, samples.size, self.chunk):
            if cancel is not None and cancel.is_set():
                return
            part = samples[start : start + self.chunk]
            t0, t1 = start / SAMPLE_RATE, (start + part.size) / SAMPLE_RATE
            final = start + self.chunk >= samples.size
            evs = tuple(e for e in events if t0 <= e.time_s < t1 or (final and e.time_s >= t1))
            yield SpeechChunk(part, t0, evs, final)

    def synthesize(self, text: str, voice: str | None = None) -> SpeechChunk:
        samples, events = self.render(text)
        return SpeechChunk(samples, 0.0, tuple(events), True)
