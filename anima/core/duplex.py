"""Duplex turn-taking: who holds the floor, when a user turn ends, and when the user barges in.

The stage sits right after the input. It runs voice activity detection on the user's audio, joins
the user's transcript into turns, and keeps the agent state (idle / listening / thinking /
speaking) from the turn events the playout sends back upstream. When the user starts speaking
while the agent speaks or thinks, it sends an ``InterruptionFrame`` downstream: every later stage
drops what it had queued for the interrupted reply.

A user turn ends when the detector has heard ``min_silence_s`` of silence *and* a final transcript
has arrived (from speech recognition, or the script). Requiring both keeps a mid-sentence pause
from ending the turn early. Typed text ends a turn at once.
"""

from __future__ import annotations

from anima.core.frames import (
    AgentStartedSpeakingFrame,
    AgentState,
    AgentStateFrame,
    AgentStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    SystemFrame,
    TickFrame,
    UserAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTextFrame,
    UserTranscriptFrame,
    UserTurnFrame,
)
from anima.core.stage import DOWN, UP, Direction, Stage
from anima.core.vad import EnergyVAD


class TurnTaking(Stage):
    """Voice activity, end of turn, barge-in and the agent state."""

    def __init__(self, vad: EnergyVAD | None = None, barge_in: bool = True) -> None:
        super().__init__(name="turns")
        self.vad = vad or EnergyVAD()
        self.barge_in = barge_in
        self.state = AgentState.IDLE
        self.agent_speaking = False
        self.awaiting_reply = False
        self._transcript: list[str] = []
        self._transcript_final = False
        self._speech_end_ns: int | None = None

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
                with self.timed():
                    events = self.vad.process(frame.samples, frame.pts_ns)
                for event in events:
                    if event.kind == "start":
                        await self._on_speech_start(event.pts_ns)
                    else:
                        await self._on_speech_end(event.pts_ns)
                await self.push_frame(frame)
            case UserTranscriptFrame():
                if frame.final and frame.text.strip():
                    self._transcript.append(frame.text.strip())
                    self._transcript_final = True
                    await self._maybe_end_turn()
                await self.push_frame(frame)
            case UserTextFrame():
                text = frame.text.strip()
                if text:
                    if self.barge_in and (self.agent_speaking or self.awaiting_reply):
                        await self._interrupt(self.clock.now_ns(), reason="user typed")
                    self._transcript.append(text)
                    self._transcript_final = True
                    self._speech_end_ns = self.clock.now_ns()
                    await self._maybe_end_turn()
                await self.push_frame(frame)
            case TickFrame():
                await self.push_frame(frame)
            case _:
                await self.push_frame(frame)

    async def _on_speech_start(self, onset_ns: int) -> None:
        self._speech_end_ns = None
        await self.push_frame(UserStartedSpeakingFrame(onset_pts_ns=onset_ns, pts_ns=onset_ns), DOWN)
        await self.push_frame(UserStartedSpeakingFrame(onset_pts_ns=onset_ns, pts_ns=onset_ns), UP)
        if self.barge_in and (self.agent_speaking or self.awaiting_reply):
            await self._interrupt(onset_ns)
        await self._set_state(AgentState.LISTENING)

    async def _interrupt(self, onset_ns: int, reason: str = "user barge-in") -> None:
        self.awaiting_reply = False
        await self.push_frame(InterruptionFrame(reason=reason, onset_pts_ns=onset_ns, pts_ns=self.clock.now_ns()), DOWN)

    async def _on_speech_end(self, end_ns: int) -> None:
        self._speech_end_ns = end_ns
        await self.push_frame(UserStoppedSpeakingFrame(end_pts_ns=end_ns, pts_ns=end_ns), DOWN)
        await self.push_frame(UserStoppedSpeakingFrame(end_pts_ns=end_ns, pts_ns=end_ns), UP)
        await self._maybe_end_turn()
        if not self.awaiting_reply and not self.agent_speaking:
            await self._set_state(AgentState.IDLE)

    async def _maybe_end_turn(self) -> None:
        if self.vad.speaking or not self._transcript_final:
            return
        text = " ".join(self._transcript)
        end_ns = self._speech_end_ns if self._speech_end_ns is not None else self.clock.now_ns()
        self._transcript, self._transcript_final, self._speech_end_ns = [], False, None
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
