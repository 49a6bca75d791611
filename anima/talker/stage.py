"""The Talker stage: streams a plan's speech as audio chunks, paced a little ahead of playback.

Synthesis runs in a worker thread and fills a queue as it goes. On every clock tick the stage
forwards just enough audio to keep the playout ``lead_s`` ahead of the tick, so an interruption
never has more than that much queued audio to throw away. Offline, a tick waits for the audio it
needs (compute takes no media time); live, it forwards what exists and the playout counts any gap.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import numpy as np

from anima.core.frames import (
    NS_PER_S,
    AgentAudioFrame,
    Frame,
    InterruptionFrame,
    ThinkerPlanFrame,
    TickFrame,
)
from anima.core.stage import DOWN, Direction, Stage
from anima.talker.base import TTS, SpeechChunk


@dataclass
class _Synthesis:
    turn_id: int
    text: str
    emotion: str
    user_end_ns: int
    cancel: threading.Event = field(default_factory=threading.Event)
    chunks: asyncio.Queue[SpeechChunk | BaseException | None] = field(default_factory=asyncio.Queue)
    sent_end_ns: int | None = None  # media time up to which audio has been forwarded
    first_chunk_seen: bool = False
    final_sent: bool = False
    done: bool = False


class TalkerStage(Stage):
    """Plan in, agent audio chunks out."""

    def __init__(self, tts: TTS, voice: str | None = None, lead_s: float = 0.2) -> None:
        super().__init__(name="talker")
        self.tts = tts
        self.voice = voice
        self.lead_ns = int(lead_s * NS_PER_S)
        self._current: _Synthesis | None = None
        self._waiting: list[_Synthesis] = []

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        match frame:
            case ThinkerPlanFrame() if direction is DOWN:
                await self.push_frame(frame)  # the face and body need the emotion and gesture
                if frame.plan.speech.strip():
                    self._waiting.append(_Synthesis(frame.turn_id, frame.plan.speech, frame.plan.emotion, frame.user_end_pts_ns))
                    if self._current is None:
                        self._begin_next()
            case TickFrame():
                await self._forward_audio(frame)
                await self.push_frame(frame, direction)
            case _:
                await self.push_frame(frame, direction)

    def _begin_next(self) -> None:
        if not self._waiting:
            self._current = None
            return
        synth = self._current = self._waiting.pop(0)
        loop = asyncio.get_running_loop()

        def produce() -> None:
            try:
                for chunk in self.tts.stream(synth.text, voice=self.voice, emotion=synth.emotion, cancel=synth.cancel):
                    if synth.cancel.is_set():
                        return
                    loop.call_soon_threadsafe(synth.chunks.put_nowait, chunk)
            except BaseException as exc:  # handed to the event loop, reported there
                loop.call_soon_threadsafe(synth.chunks.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(synth.chunks.put_nowait, None)

        async def run() -> None:
            with self.timed():
                await asyncio.to_thread(produce)

        self.start_job(run())

    async def _forward_audio(self, tick: TickFrame) -> None:
        synth = self._current
        target_ns = tick.pts_ns + tick.duration_ns + self.lead_ns
        while synth is not None and not synth.done:
            if synth.sent_end_ns is not None and synth.sent_end_ns >= target_ns:
                return
            if self.clock.realtime and synth.chunks.empty():
                return
            item = await synth.chunks.get()
            if synth is not self._current:
                return  # interrupted while waiting: this synthesis is abandoned
            if item is None:
                synth.done = True
                if synth.first_chunk_seen and not synth.final_sent:
                    # The stream ended without a final chunk (it failed): close the utterance.
                    await self.push_frame(AgentAudioFrame(np.zeros(0, np.float32), synth.turn_id, 0.0, text=synth.text, final=True, pts_ns=tick.pts_ns))
                self._begin_next()
                synth = self._current
                continue
            if isinstance(item, BaseException):
                await self._report_error(item)
                continue
            if not synth.first_chunk_seen:
                synth.first_chunk_seen = True
                synth.sent_end_ns = tick.pts_ns
                if synth.user_end_ns >= 0:
                    self.metrics.reply_latency_s.append((self.clock.now_ns() - synth.user_end_ns) / NS_PER_S)
            synth.final_sent = item.final
            synth.sent_end_ns += int(item.samples.size * NS_PER_S / self.tts.sample_rate)
            await self.push_frame(
                AgentAudioFrame(
                    item.samples, synth.turn_id, item.offset_s, item.events, text=synth.text, final=item.final, pts_ns=tick.pts_ns
                )
            )

    async def on_interruption(self, frame: InterruptionFrame) -> None:
        for synth in [self._current, *self._waiting]:
            if synth is not None:
                synth.cancel.set()
        self._current = None
        self._waiting = []
