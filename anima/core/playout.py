"""The playout: the agent's audio output device, paced by the media clock.

It buffers the Talker's chunks and releases exactly one tick of audio per clock tick, so there is
never a burst of queued audio: after an interruption the buffer is dropped and the next tick is
silent but for a 5 ms fade that avoids a click. It is the authority on what the user heard: it knows
how many samples of each utterance were played, hence which words, and reports that in
``AgentStoppedSpeakingFrame`` (upstream to the Thinker's history, downstream to the animators).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from anima.core.frames import (
    NS_PER_S,
    SAMPLE_RATE,
    AgentAudioFrame,
    AgentStartedSpeakingFrame,
    AgentStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    PlayedAudioFrame,
    SpeechEvent,
    SystemFrame,
    TickFrame,
)
from anima.core.stage import DOWN, UP, Direction, Stage

FADE_S = 0.005


class _Utterance:
    """Playback state of one agent turn."""

    def __init__(self, turn_id: int, text: str, start_ns: int) -> None:
        self.turn_id = turn_id
        self.text = text
        self.start_ns = start_ns  # media time of its first sample
        self.words: list[tuple[float, SpeechEvent]] = []  # (absolute time s, event)
        self.played = 0  # samples played so far
        self.received = 0  # samples received so far
        self.final = False
        self.started = False

    def heard_text(self) -> str:
        """The words whose start has been played (the whole text once fully played)."""
        played_until = self.start_ns / NS_PER_S + self.played / SAMPLE_RATE
        if self.final and self.played >= self.received:
            return self.text
        heard = [ev for t, ev in self.words if t < played_until]
        if not heard:
            return ""
        last = heard[-1]
        if last.char_start >= 0 and self.text[last.char_start : last.char_start + last.char_len] == last.text:
            return self.text[: last.char_start + last.char_len]  # keeps the original punctuation
        return " ".join(ev.text for ev in heard)


class Playout(Stage):
    """Releases one tick of agent audio per clock tick; owns barge-in and the heard text."""

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__(name="playout")
        self.sample_rate = sample_rate
        self._buffer = np.zeros(0, dtype=np.float32)
        self._utterance: _Utterance | None = None
        self._next_play_ns = 0  # media time of the next sample to be played
        self._fade_tail = np.zeros(0, dtype=np.float32)
        self._scheduled: list[tuple[float, SpeechEvent]] = []
        self._cancelled_turns: set[int] = set()
        self._pending_stop: AgentStoppedSpeakingFrame | None = None

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        match frame:
            case AgentAudioFrame() if direction is DOWN:
                self._receive(frame)
            case TickFrame():
                await self._play_tick(frame)
                await self.push_frame(frame, direction)
            case _:
                await self.push_frame(frame, direction)

    def _receive(self, frame: AgentAudioFrame) -> None:
        if frame.turn_id in self._cancelled_turns:
            self.metrics.dropped_frames[self.name] += 1
            return
        u = self._utterance
        if u is None or u.turn_id != frame.turn_id:
            start_ns = self._next_play_ns + int(self._buffer.size * NS_PER_S / self.sample_rate)
            u = self._utterance = _Utterance(frame.turn_id, frame.text, start_ns)
        start_s = u.start_ns / NS_PER_S
        for ev in frame.events:
            item = (start_s + ev.time_s, ev)
            self._scheduled.append(item)
            if ev.kind == "word":
                u.words.append(item)
        self._buffer = np.concatenate([self._buffer, frame.samples.astype(np.float32)])
        u.received += frame.samples.size
        u.final = u.final or frame.final

    async def _play_tick(self, tick: TickFrame) -> None:
        n = int(round(tick.duration_ns * self.sample_rate / NS_PER_S))
        out = np.zeros(n, dtype=np.float32)
        if self._fade_tail.size:
            out[: self._fade_tail.size] = self._fade_tail[:n]
            self._fade_tail = np.zeros(0, dtype=np.float32)
        u = self._utterance
        take = min(n, self._buffer.size) if u is not None else 0
        if take:
            out[:take] = self._buffer[:take]
            self._buffer = self._buffer[take:]
        self._next_play_ns = tick.pts_ns + tick.duration_ns
        events, self._scheduled = tuple(self._scheduled), []
        turn_id = u.turn_id if u is not None else None
        if u is not None:
            if take and not u.started:
                u.started = True
                for d in (DOWN, UP):
                    await self.push_frame(AgentStartedSpeakingFrame(turn_id=u.turn_id, text=u.text, pts_ns=tick.pts_ns), d)
            u.played += take
            if u.started and take < n and not u.final:
                self.metrics.underrun_ticks += 1
        await self.push_frame(PlayedAudioFrame(out, turn_id, events, pts_ns=tick.pts_ns))
        if u is not None and u.final and u.played >= u.received:
            self._utterance = None
            end_ns = u.start_ns + int(u.played * NS_PER_S / self.sample_rate)
            for d in (DOWN, UP):
                await self.push_frame(
                    AgentStoppedSpeakingFrame(turn_id=u.turn_id, heard_text=u.text, played_s=u.played / self.sample_rate, pts_ns=end_ns), d
                )

    async def on_interruption(self, frame: InterruptionFrame) -> None:
        u = self._utterance
        fade_n = int(FADE_S * self.sample_rate)
        tail = self._buffer[:fade_n]
        self._fade_tail = (tail * np.linspace(1.0, 0.0, tail.size, dtype=np.float32)) if u is not None and u.started else np.zeros(0, np.float32)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._scheduled = []
        self._utterance = None
        if u is None:
            return
        self._cancelled_turns.add(u.turn_id)
        # Audio up to the next tick boundary is already out of the device; silence follows the fade.
        silent_ns = max(self.clock.now_ns(), self._next_play_ns) + int(self._fade_tail.size * NS_PER_S / self.sample_rate)
        if not u.started:
            return
        latency_s = (silent_ns - frame.onset_pts_ns) / NS_PER_S
        self.metrics.barge_in_latency_s.append(latency_s)
        if self.clock.realtime:
            self.metrics.barge_in_wall_latency_s.append(latency_s)
        u.played = min(u.played, u.received)
        stopped = AgentStoppedSpeakingFrame(
            turn_id=u.turn_id, interrupted=True, heard_text=u.heard_text(), played_s=u.played / self.sample_rate, pts_ns=silent_ns
        )
        # The interruption itself is forwarded after this (base class); the turn event goes both ways.
        await self.push_frame(stopped, UP)
        self._pending_stop = dataclasses.replace(stopped)  # sent downstream after the interruption

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        await self.push_frame(frame, direction)
        if isinstance(frame, InterruptionFrame) and self._pending_stop is not None:
            stopped, self._pending_stop = self._pending_stop, None
            await self.push_frame(stopped, DOWN)
