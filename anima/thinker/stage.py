"""The Thinker stage: runs a thinker off the event loop and keeps the heard history."""

from __future__ import annotations

import asyncio
import itertools

from anima.core.frames import (
    AgentStoppedSpeakingFrame,
    Frame,
    ResumeFrame,
    SystemFrame,
    ThinkerPlanFrame,
    TickFrame,
    UserTurnFrame,
)
from anima.core.history import ConversationHistory
from anima.core.stage import DOWN, UP, Direction, Stage
from anima.thinker.base import Thinker, ThinkerContext

_turn_ids = itertools.count(1)


class ThinkerStage(Stage):
    """User turn in, action plan out. The thinker may block; clock ticks keep flowing meanwhile."""

    def __init__(self, thinker: Thinker, history: ConversationHistory | None = None, character: str | None = None, story_time: int | None = None) -> None:
        super().__init__(name="thinker")
        self.thinker = thinker
        self.history = history if history is not None else ConversationHistory()
        self.character, self.story_time = character, story_time
        self._pending: asyncio.Task[None] | None = None
        self._planned: dict[int, str] = {}

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        match frame:
            case UserTurnFrame() if direction is DOWN:
                self.history.add_user(frame.text, interrupted=bool(frame.cut_by_agent))
                self._pending = self.start_job(self._respond(frame))
            case TickFrame() if self._pending is not None and not self.clock.realtime:
                # Offline, thinking takes no media time: finish the reply before this tick passes.
                await self.settle(self._pending)
                self._pending = None
                await self.push_frame(frame, direction)
            case _:
                await self.push_frame(frame, direction)

    async def _respond(self, turn: UserTurnFrame) -> None:
        context = ThinkerContext(history=list(self.history.turns), character=self.character, story_time=self.story_time,
                                 interjection=turn.cut_by_agent)
        turn_id = next(_turn_ids)
        try:
            with self.timed():
                plan = await asyncio.to_thread(self.thinker.respond, turn.text, context)
        except Exception as exc:
            await self._report_error(exc)
            plan = None
        if plan is None or not plan.speech.strip():
            # Nothing to say: tell turn-taking the reply is over so the agent does not stay "thinking".
            await self.push_frame(AgentStoppedSpeakingFrame(turn_id=turn_id, pts_ns=self.clock.now_ns()), UP)
            if plan is None:
                return
        self._planned[turn_id] = plan.speech
        await self.push_frame(ThinkerPlanFrame(plan, turn_id, user_end_pts_ns=turn.end_pts_ns, pts_ns=self.clock.now_ns()))

    async def on_interruption(self, frame: Frame) -> None:
        self._pending = None

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        if isinstance(frame, AgentStoppedSpeakingFrame) and direction is UP:
            self.history.add_agent(frame.heard_text, frame.interrupted, self._planned.pop(frame.turn_id, ""))
        elif isinstance(frame, ResumeFrame) and direction is DOWN:
            self.history.add_backchannel(frame.heard)
        await self.push_frame(frame, direction)
