"""The playout: the agent's audio output device, paced by the media clock.

It buffers the Talker's chunks and releases exactly one tick of audio per clock tick, so there is
never a burst of queued audio: after an interruption the buffer is dropped and the next tick is
silent but for a 5 ms fade that avoids a click. It is the authority on what the user heard: it knows
how many samples of each utterance were played, hence which words, and reports that in
``AgentStoppedSpeakingFrame`` (upstream to the Thinker's history, downstream to the animators).

A ``PauseFrame`` (the user may be barging in) silences it the same way but keeps everything not yet
played; a ``ResumeFrame`` continues from there (5 ms fade-in), with the speech events of what is
left re-scheduled later by the length of the pause, so lip sync and gestures follow the audio.
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
    PauseFrame,
    PlayedAudioFrame,
    ResumeFrame,
    SpeechEvent,
    SystemFrame,
    TickFrame,
)
from anima.core.stage import DOWN, UP, Direction, Stage

FADE_S = 0.005


class _Utterance:
    """Playback state of one agent turn, with the audio received for it and not yet played."""

    def __init__(self, turn_id: int, text: str, start_ns: int) -> None:
        self.turn_id = turn_id
        self.text = text
        self.start_ns = start_ns  # media time of its first sample (planned, then actual)
        self.events: list[tuple[float, SpeechEvent]] = []  # (absolute time s, event)
        self.buffer = np.zeros(0, dtype=np.float32)
        self.played = 0  # samples played so far
        self.received = 0  # samples received so far
        self.final = False
        self.started = False

    @property
    def words(self) -> list[tuple[float, SpeechEvent]]:
        return [item for item in self.events if item[1].kind == "word"]

    @property
    def done(self) -> bool:
        return self.final and self.played >= self.received

    def heard_text(self) -> str:
        """The words whose start has been played (the whole text once fully played)."""
        played_until = self.start_ns / NS_PER_S + self.played / SAMPLE_RATE
        if self.done:
            return self.text
        heard = [ev for t, ev in self.words if t < played_until]
        if not heard:
            return ""
        last = heard[-1]
        if last.char_start >= 0 and self.text[last.char_start : last.char_start + last.char_len] == last.text:
            return self.text[: last.char_start + last.char_len]  # keeps the original punctuation
        return " ".join(ev.text for ev in heard)


class Playout(Stage):
    """Releases one tick of agent audio per clock tick; owns barge-in and the heard text.

    Utterances queue up in order: a reply that arrives while the previous one is still playing
    starts right after it, and each gets its own started/stopped events.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__(name="playout")
        self.sample_rate = sample_rate
        self._utterances: list[_Utterance] = []  # the head is playing (or about to)
        self._next_play_ns = 0  # media time of the next sample to be played
        self._fade_tail = np.zeros(0, dtype=np.float32)
        self._scheduled: list[tuple[float, SpeechEvent]] = []
        self._cancelled_turns: set[int] = set()
        self._pending_stop: AgentStoppedSpeakingFrame | None = None
        self._paused_at_ns: int | None = None  # media time the output went silent for a pause

    def _ns(self, samples: int) -> int:
        return int(samples * NS_PER_S / self.sample_rate)

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
        u = next((x for x in self._utterances if x.turn_id == frame.turn_id), None)
        if u is None:
            queued = sum(x.buffer.size for x in self._utterances)
            u = _Utterance(frame.turn_id, frame.text, self._next_play_ns + self._ns(queued))
            self._utterances.append(u)
        start_s = u.start_ns / NS_PER_S
        for ev in frame.events:
            item = (start_s + ev.time_s, ev)
            u.events.append(item)
            self._scheduled.append(item)  # while paused, held back until the resume re-times them
        u.buffer = np.concatenate([u.buffer, frame.samples.astype(np.float32)])
        u.received += frame.samples.size
        u.final = u.final or frame.final

    async def _play_tick(self, tick: TickFrame) -> None:
        n = int(round(tick.duration_ns * self.sample_rate / NS_PER_S))
        out = np.zeros(n, dtype=np.float32)
        if self._fade_tail.size:
            out[: self._fade_tail.size] = self._fade_tail[:n]
            self._fade_tail = np.zeros(0, dtype=np.float32)
        paused = self._paused_at_ns is not None
        turn_id = self._utterances[0].turn_id if self._utterances and not paused else None
        filled = 0
        stopped: list[_Utterance] = []
        while self._utterances and filled < n and not paused:
            u = self._utterances[0]
            take = min(n - filled, u.buffer.size)
            if take and not u.started:
                u.started = True
                u.start_ns = tick.pts_ns + self._ns(filled)
                for d in (DOWN, UP):
                    await self.push_frame(AgentStartedSpeakingFrame(turn_id=u.turn_id, text=u.text, pts_ns=u.start_ns), d)
            out[filled : filled + take] += u.buffer[:take]
            u.buffer = u.buffer[take:]
            u.played += take
            filled += take
            if u.done:
                stopped.append(self._utterances.pop(0))
                continue
            if u.started and filled < n:
                self.metrics.underrun_ticks += 1  # mid-utterance and the Talker is late
            break
        self._next_play_ns = tick.pts_ns + tick.duration_ns
        events, self._scheduled = (), self._scheduled
        if not paused:
            events, self._scheduled = tuple(self._scheduled), []
        await self.push_frame(PlayedAudioFrame(out, turn_id, events, pts_ns=tick.pts_ns))
        if out.any():  # the echo canceller's reference, back up to the head of the pipeline
            await self.push_frame(PlayedAudioFrame(out, turn_id, pts_ns=tick.pts_ns), UP)
        for u in stopped:
            stop = AgentStoppedSpeakingFrame(
                turn_id=u.turn_id, heard_text=u.text, played_s=u.played / self.sample_rate, pts_ns=u.start_ns + self._ns(u.played)
            )
            for d in (DOWN, UP):
                await self.push_frame(dataclasses.replace(stop), d)

    def _fade_out(self, playing: _Utterance | None) -> int:
        """Fade the next 5 ms of ``playing`` into the coming tick; the media time the output is silent."""
        if self._paused_at_ns is not None:
            return self._paused_at_ns  # already silent since the pause
        fade_n = int(FADE_S * self.sample_rate)
        tail = playing.buffer[:fade_n] if playing is not None else np.zeros(0, np.float32)
        self._fade_tail = tail * np.linspace(1.0, 0.0, tail.size, dtype=np.float32)
        # Audio up to the next tick boundary is already out of the device; silence follows the fade.
        return max(self.clock.now_ns(), self._next_play_ns) + self._ns(self._fade_tail.size)

    def _pause(self) -> int:
        """Go silent, keeping every unplayed sample; returns the media time of the silence."""
        playing = self._utterances[0] if self._utterances and self._utterances[0].started else None
        silent_ns = self._fade_out(playing)
        if playing is not None and self._fade_tail.size:  # the faded samples count as played
            playing.buffer = playing.buffer[self._fade_tail.size:]
            playing.played += self._fade_tail.size
        self._paused_at_ns = silent_ns
        return silent_ns

    def _resume(self) -> float:
        """Continue where the pause stopped; what follows moves later by the pause. Returns its length (s)."""
        paused_at, self._paused_at_ns = self._paused_at_ns, None
        resume_ns = max(self.clock.now_ns(), self._next_play_ns)
        shift_ns = max(0, resume_ns - paused_at)
        shift_s, paused_s = shift_ns / NS_PER_S, paused_at / NS_PER_S
        self._scheduled = []  # what the pause held back is rebuilt from the utterances, re-timed
        ahead = 0  # samples queued before the utterance
        for u in self._utterances:
            if u.started:  # played time + the pause = media time again; what was heard keeps its time
                u.start_ns += shift_ns
                u.events = [(t + shift_s, ev) if t >= paused_s else (t, ev) for t, ev in u.events]
            else:  # it starts after what is queued before it, from the resume on
                start_ns = resume_ns + self._ns(ahead)
                delta_s, u.start_ns = (start_ns - u.start_ns) / NS_PER_S, start_ns
                u.events = [(t + delta_s, ev) for t, ev in u.events]
            self._scheduled += [(t, ev) for t, ev in u.events if t >= paused_s]
            ahead += u.buffer.size
        if self._utterances and self._utterances[0].started:  # a 5 ms fade-in: no click
            head = self._utterances[0]
            n = min(int(FADE_S * self.sample_rate), head.buffer.size)
            head.buffer = head.buffer.copy()
            head.buffer[:n] *= np.linspace(0.0, 1.0, n, dtype=np.float32)
        return shift_s

    async def on_interruption(self, frame: InterruptionFrame) -> None:
        playing = self._utterances[0] if self._utterances and self._utterances[0].started else None
        silent_ns = self._fade_out(playing)
        self._paused_at_ns = None
        self._cancelled_turns.update(u.turn_id for u in self._utterances)
        self._utterances = []
        self._scheduled = []
        if playing is None:
            return
        latency_s = (silent_ns - frame.onset_pts_ns) / NS_PER_S
        self.metrics.barge_in_latency_s.append(latency_s)
        if self.clock.realtime:
            self.metrics.barge_in_wall_latency_s.append(latency_s)
        stopped = AgentStoppedSpeakingFrame(
            turn_id=playing.turn_id, interrupted=True, heard_text=playing.heard_text(),
            played_s=playing.played / self.sample_rate, pts_ns=silent_ns,
        )
        # The interruption itself is forwarded after this (base class); the turn event goes both ways.
        await self.push_frame(stopped, UP)
        self._pending_stop = dataclasses.replace(stopped)  # sent downstream after the interruption

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        if direction is DOWN and isinstance(frame, PauseFrame) and self._paused_at_ns is None:
            frame = dataclasses.replace(frame, pts_ns=self._pause())
        elif direction is DOWN and isinstance(frame, ResumeFrame) and self._paused_at_ns is not None:
            frame = dataclasses.replace(frame, paused_s=self._resume(), pts_ns=max(self.clock.now_ns(), self._next_play_ns))
        await self.push_frame(frame, direction)
        if isinstance(frame, InterruptionFrame) and self._pending_stop is not None:
            stopped, self._pending_stop = self._pending_stop, None
            await self.push_frame(stopped, DOWN)
