"""Duplex turn-taking: who holds the floor, when a user turn ends, and when the user barges in.

The stage sits right after the input. It runs voice activity detection on the user's audio, joins
the user's transcript into turns, and keeps the agent state (idle / listening / thinking /
speaking) from the turn events the playout sends back upstream. When the user starts speaking
while the agent speaks or thinks, it sends an ``InterruptionFrame`` downstream: every later stage
drops what it had queued for the interrupted reply.

A user turn ends when the detector has heard ``min_silence_s`` of silence *and* a final transcript
has arrived (from speech recognition, or the script). Requiring both keeps a mid-sentence pause
from ending the turn early. Typed text ends a turn at once. With an ``end_of_turn`` detector
(``anima.core.end_of_turn``; the cascade uses one with a 64 ms detector hangover), each pause is
scored from the words and the voice: a complete question is answered after ~60-80 ms of silence, a
pause on "whether ..." waits up to 1.2 s for the rest.

False-interruption recovery (as LiveKit Agents does it): sound from the user during the agent's
turn first only *pauses* the agent (``PauseFrame``: the playout goes silent at once, so a real
barge-in is as fast as before). It becomes a barge-in when the speech lasts ``min_speech_s`` or
the recogniser hears a word that is not a backchannel ("mm-hm", "yeah"); when the user is silent
again for ``resume_after_s`` without either, the agent resumes where it stopped (``ResumeFrame``)
and the history records what was heard. ``recovery=None`` interrupts at the onset, as before.

The agent may cut in too (``interjector``, ``anima.core.interjection``): on every tick of a user
turn the policy sees the partial transcript and how long the user has held the floor; a reason
ends the user's turn there (``UserTurnFrame.cut_by_agent``), the agent answers over the user's last
words, and the rest of that stretch of user speech neither barges in on the reply nor starts a turn.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from anima.core.end_of_turn import EndOfTurn, silence_needed_s
from anima.core.frames import (
    NS_PER_S,
    SAMPLE_RATE,
    AgentStartedSpeakingFrame,
    AgentState,
    AgentStateFrame,
    AgentStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    PauseFrame,
    ResumeFrame,
    SystemFrame,
    TickFrame,
    UserAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTextFrame,
    UserTranscriptFrame,
    UserTurnFrame,
)
from anima.core.interjection import Interjector
from anima.core.stage import DOWN, UP, Direction, Stage
from anima.core.vad import VAD, make_vad

CUT_GRACE_S = 0.6  # after the agent cuts in, user speech starting this soon is the cut-off user going on, not a barge-in

# Words that acknowledge without taking the floor (and fillers): they never make a barge-in.
BACKCHANNELS = frozenset("""
    mm mhm mmhm mm-hm hm hmm uh-huh uhhuh uh-uh uh um er ah oh ooh aha yeah yep yes right okay ok
    sure i see wow really alright
""".split())


@dataclass(frozen=True)
class Recovery:
    """When sound during the agent's turn is a barge-in, and when it was a false alarm."""

    min_speech_s: float = 0.5  # speech this long is a barge-in (a cough is shorter)
    backchannel_s: float = 1.5  # ... unless the recogniser heard only backchannels so far ("mm-hm"): then this long
    resume_after_s: float = 1.0  # this long silent again, with no real word heard: resume
    hangover_s: float = 0.2  # the detector's end hangover (its min_silence_s): it still says "speaking" that long after
    backchannels: frozenset[str] = BACKCHANNELS

    def has_words(self, text: str) -> bool:
        """Whether ``text`` holds a word that is not a backchannel or filler."""
        words = (w.strip(".,!?;:'\"()").lower() for w in text.split())
        return any(w and w not in self.backchannels for w in words)


class TurnTaking(Stage):
    """Voice activity, end of turn, barge-in (with false-interruption recovery) and the agent state."""

    def __init__(self, vad: VAD | None = None, barge_in: bool = True, recovery: Recovery | None = Recovery(),
                 interjector: Interjector | None = None, end_of_turn: EndOfTurn | None = None) -> None:
        super().__init__(name="turns")
        self.interjector = interjector
        self.end_of_turn = end_of_turn
        self._eot_state = end_of_turn.new_state() if end_of_turn is not None else None
        self._recent: deque[np.ndarray] = deque(maxlen=200)  # the user's last ~8 s (40 ms frames), for end_of_turn
        self._wait_ns = 0  # silence the end-of-turn detector asked for after the last end of speech
        self.vad = vad or make_vad()  # silero by default (benchmarks/vad.py), one per session
        self.barge_in = barge_in
        self.recovery = recovery
        self.state = AgentState.IDLE
        self.agent_speaking = False
        self.awaiting_reply = False
        self._transcript: list[str] = []
        self._transcript_final = False
        self._speech_end_ns: int | None = None
        self._pause_onset_ns: int | None = None  # the agent is paused by user sound since this onset
        self._segment_start_ns = 0  # onset of the user's current stretch of speech
        self._pause_heard: list[str] = []  # backchannel words heard during the pause
        self._heard_backchannel = False  # the pause's latest transcript held only backchannels
        self._after_resume = False  # a late final transcript may still belong to the resumed sound
        self._floor_ns: int | None = None  # the user holds the floor since (a turn in progress)
        self._partial = ""  # the latest interim transcript of the turn in progress
        self._cut_in = False  # the agent cut the user off; their speech goes on until the detector hears it end
        self._after_cut = False  # ... and its late transcripts may still come in, until the user speaks again
        self._cut_grace_ns = 0  # speech starting before this is still the cut-off user (they react in ~0.25 s)

    async def _set_state(self, state: AgentState) -> None:
        if state is not self.state:
            self.state = state
            frame = AgentStateFrame(state=state, pts_ns=self.clock.now_ns())
            await self.push_frame(frame, DOWN)
            await self.push_frame(AgentStateFrame(state=state, pts_ns=frame.pts_ns), UP)

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is UP:
            await self.push_frame(frame, direction)
            return
        match frame:
            case UserAudioFrame():
                if self.end_of_turn is not None:
                    self._recent.append(frame.samples)
                with self.timed():
                    events = self.vad.process(frame.samples, frame.pts_ns)
                for event in events:
                    if event.kind == "start":
                        await self._on_speech_start(event.pts_ns)
                    else:
                        await self._on_speech_end(event.pts_ns)
                await self._check_pause(frame.pts_ns)
                await self.push_frame(frame)
            case UserTranscriptFrame() if self._cut_in or self._after_cut:
                pass  # the rest of a stretch the agent cut off: answered already, its caption ends in a dash
            case UserTranscriptFrame():
                text = frame.text.strip()
                if not frame.final and text and self._pause_onset_ns is None:
                    self._partial = text
                if text and await self._words_during_pause(text, frame.final) and frame.final:
                    self._transcript.append(text)
                    self._transcript_final = True
                    await self._maybe_end_turn()
                await self.push_frame(frame)
            case UserTextFrame():
                text = frame.text.strip()
                if text:
                    if self.barge_in and (self.agent_speaking or self.awaiting_reply or self._pause_onset_ns is not None):
                        await self._interrupt(self.clock.now_ns(), reason="user typed")
                    self._transcript.append(text)
                    self._transcript_final = True
                    self._speech_end_ns, self._wait_ns = self.clock.now_ns(), 0  # typed text is done when sent
                    await self._maybe_end_turn()
                await self.push_frame(frame)
            case TickFrame():
                await self._check_pause(frame.pts_ns)
                await self._check_interjection(frame.pts_ns)
                if self._wait_ns and self._transcript_final and self._speech_end_ns is not None:
                    await self._maybe_end_turn()  # the silence the end-of-turn detector asked for may be over
                await self.push_frame(frame)
            case _:
                await self.push_frame(frame)

    async def _on_speech_start(self, onset_ns: int) -> None:
        self._speech_end_ns, self._wait_ns = None, 0
        self._segment_start_ns = onset_ns
        self._after_resume = False
        if self._cut_in or onset_ns < self._cut_grace_ns:  # still the cut-off user (a split stretch, or
            self._cut_in = True                           # their next words before they noticed): no barge-in
            return
        self._after_cut = False
        if self._floor_ns is None and not (self.agent_speaking or self.awaiting_reply):
            self._floor_ns, self._partial = onset_ns, ""
            if self.interjector is not None:
                self.interjector.reset()
        await self.push_frame(UserStartedSpeakingFrame(onset_pts_ns=onset_ns, pts_ns=onset_ns), DOWN)
        await self.push_frame(UserStartedSpeakingFrame(onset_pts_ns=onset_ns, pts_ns=onset_ns), UP)
        if self.barge_in and (self.agent_speaking or self.awaiting_reply) and self._pause_onset_ns is None:
            if self.recovery is None:
                await self._interrupt(onset_ns)
            else:
                self._pause_onset_ns, self._pause_heard, self._heard_backchannel = onset_ns, [], False
                await self.push_frame(PauseFrame(onset_pts_ns=onset_ns, pts_ns=self.clock.now_ns()), DOWN)
        await self._set_state(AgentState.LISTENING)

    async def _interrupt(self, onset_ns: int, reason: str = "user barge-in") -> None:
        if self._pause_onset_ns is not None:  # the agent went silent at the pause: that onset counts
            onset_ns, self._pause_onset_ns = self._pause_onset_ns, None
        self.awaiting_reply = False
        if self._floor_ns is None:  # the user takes the floor by barging in
            self._floor_ns, self._partial = onset_ns, ""
            if self.interjector is not None:
                self.interjector.reset()
        await self.push_frame(InterruptionFrame(reason=reason, onset_pts_ns=onset_ns, pts_ns=self.clock.now_ns()), DOWN)

    async def _check_pause(self, now_ns: int) -> None:
        """While paused: long enough speech is a barge-in; long enough silence after it, a false alarm."""
        if self._pause_onset_ns is None or self.recovery is None:
            return
        if self.vad.speaking:
            limit_s = self.recovery.backchannel_s if self._heard_backchannel else self.recovery.min_speech_s
            if now_ns - self._segment_start_ns >= (limit_s + self.recovery.hangover_s) * NS_PER_S:
                await self._interrupt(self._pause_onset_ns)
        elif self._speech_end_ns is not None and now_ns - self._speech_end_ns >= self.recovery.resume_after_s * NS_PER_S:
            await self._resume()

    async def _resume(self) -> None:
        onset_ns, self._pause_onset_ns = self._pause_onset_ns, None
        heard, self._pause_heard = " ".join(self._pause_heard), []
        self._transcript, self._transcript_final, self._speech_end_ns = [], False, None
        self._after_resume = True
        await self.push_frame(ResumeFrame(heard=heard, onset_pts_ns=onset_ns or 0, pts_ns=self.clock.now_ns()), DOWN)
        if self.agent_speaking:
            await self._set_state(AgentState.SPEAKING)
        elif self.awaiting_reply:
            await self._set_state(AgentState.THINKING)

    async def _words_during_pause(self, text: str, final: bool) -> bool:
        """A transcript heard while paused (or just after a resume): does it belong to a user turn?

        Real words make the pause a barge-in (and the text is the user's); backchannels only are
        noted for the history and dropped from the turn.
        """
        if self.recovery is None or not (self._pause_onset_ns is not None or self._after_resume):
            return True
        if self.recovery.has_words(text):
            if self._pause_onset_ns is not None:
                await self._interrupt(self._pause_onset_ns)
            elif self.barge_in and (self.agent_speaking or self.awaiting_reply):
                await self._interrupt(self._segment_start_ns, reason="user barge-in (words after a resume)")
            self._after_resume = False
            return True
        if self._pause_onset_ns is not None:
            self._heard_backchannel = True
            if final:
                self._pause_heard.append(text)
        return False

    async def _check_interjection(self, now_ns: int) -> None:
        """While the user holds the floor: does the agent cut in now?"""
        if (self.interjector is None or self._floor_ns is None or self._cut_in or self.awaiting_reply
                or self.agent_speaking or self._pause_onset_ns is not None):
            return
        heard = " ".join([*self._transcript, self._partial]).strip()
        reason = self.interjector.consider(heard, (now_ns - self._floor_ns) / NS_PER_S)
        if not reason:
            return
        self._cut_in = self.vad.speaking  # the user is mid-word: the rest of this stretch is theirs, unanswered
        self._cut_grace_ns = now_ns + int(CUT_GRACE_S * NS_PER_S)
        self._transcript, self._transcript_final, self._partial, self._floor_ns = [], False, "", None
        self.awaiting_reply = True
        await self.push_frame(UserTranscriptFrame(f"{heard} \u2014" if heard else "\u2014", final=True, pts_ns=self.clock.now_ns()))
        await self.push_frame(UserTurnFrame(heard, now_ns, cut_by_agent=reason, pts_ns=self.clock.now_ns()))
        await self._set_state(AgentState.THINKING)

    async def _on_speech_end(self, end_ns: int) -> None:
        self._speech_end_ns = end_ns
        if self._cut_in:
            self._cut_in, self._after_cut = False, True
            self._transcript, self._transcript_final = [], False
            await self.push_frame(UserStoppedSpeakingFrame(end_pts_ns=end_ns, pts_ns=end_ns), DOWN)
            await self.push_frame(UserStoppedSpeakingFrame(end_pts_ns=end_ns, pts_ns=end_ns), UP)
            return
        if self.end_of_turn is not None and self._recent and self._pause_onset_ns is None:
            heard = " ".join([*self._transcript, self._partial]).strip()
            with self.timed():
                p = self.end_of_turn.complete(self._eot_state, np.concatenate(self._recent)[-8 * SAMPLE_RATE:], heard)
            self._wait_ns = int(silence_needed_s(p) * NS_PER_S)
        await self.push_frame(UserStoppedSpeakingFrame(end_pts_ns=end_ns, pts_ns=end_ns), DOWN)
        await self.push_frame(UserStoppedSpeakingFrame(end_pts_ns=end_ns, pts_ns=end_ns), UP)
        await self._maybe_end_turn()
        if not self.awaiting_reply and not self.agent_speaking:
            await self._set_state(AgentState.IDLE)

    async def _maybe_end_turn(self) -> None:
        if self.vad.speaking or not self._transcript_final or self._pause_onset_ns is not None:
            return
        if self._speech_end_ns is not None and self.clock.now_ns() - self._speech_end_ns < self._wait_ns:
            return  # the words and the voice say the user is not done yet: keep listening
        text = " ".join(self._transcript)
        end_ns = self._speech_end_ns if self._speech_end_ns is not None else self.clock.now_ns()
        self._transcript, self._transcript_final, self._speech_end_ns = [], False, None
        self._floor_ns, self._partial, self._wait_ns = None, "", 0
        self.awaiting_reply = True
        await self.push_frame(UserTurnFrame(text, end_ns, pts_ns=self.clock.now_ns()))
        await self._set_state(AgentState.THINKING)

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        await self.push_frame(frame, direction)
        if direction is not UP:
            return
        match frame:
            case AgentStartedSpeakingFrame():
                self.agent_speaking = True
                self.awaiting_reply = False
                await self._set_state(AgentState.SPEAKING)
            case AgentStoppedSpeakingFrame():
                self.agent_speaking = False
                if not frame.interrupted:
                    await self._set_state(AgentState.LISTENING if self.vad.speaking else AgentState.IDLE)
