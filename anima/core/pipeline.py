"""A pipeline: stages in a line, a head to push input into and a tail that reports each tick.

Frames leaving the tail (downstream) or the head (upstream) are handed to ``on_edge`` so the
session can observe them (the scripted user listens to the agent's turn events there). The
pipeline appends a small tail stage that records the last tick to pass, which is how an offline
driver knows a tick has been fully processed before it starts the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from anima.core.clock import MediaClock
from anima.core.frames import EndFrame, Frame, TickFrame
from anima.core.metrics import SessionMetrics
from anima.core.stage import DOWN, Direction, Stage

EdgeCallback = Callable[[Frame, Direction], Awaitable[None] | None]


class _TickTail(Stage):
    """Last stage: notes each tick that made it through the whole pipeline."""

    def __init__(self) -> None:
        super().__init__(name="tail")
        self.last_tick = -1
        self._changed = asyncio.Event()
        self.ended = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        await self.push_frame(frame, direction)
        if isinstance(frame, TickFrame):
            self.last_tick = frame.index
            self._changed.set()
        elif isinstance(frame, EndFrame):
            self.ended.set()

    async def wait_tick(self, index: int) -> None:
        while self.last_tick < index:
            self._changed.clear()
            await self._changed.wait()


class Pipeline:
    """Stages joined in order, sharing one clock and one metrics object."""

    def __init__(self, stages: Sequence[Stage], clock: MediaClock | None = None, on_edge: EdgeCallback | None = None) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.clock = clock or MediaClock()
        self.metrics = SessionMetrics()
        self._tail = _TickTail()
        self.stages = [*stages, self._tail]
        self._on_edge = on_edge
        for i, stage in enumerate(self.stages):
            prev = self.stages[i - 1] if i > 0 else None
            nxt = self.stages[i + 1] if i + 1 < len(self.stages) else None
            stage.attach(self, prev, nxt)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage named {name!r}; stages: {[s.name for s in self.stages]}")

    async def start(self) -> None:
        for stage in self.stages:
            await stage.start()

    async def stop(self) -> None:
        for stage in reversed(self.stages):
            await stage.stop()

    async def push(self, frame: Frame) -> None:
        """Feed a frame into the head of the pipeline."""
        await self.stages[0].queue_frame(frame, DOWN)

    async def wait_tick(self, index: int) -> None:
        """Wait until tick ``index`` has passed every stage."""
        await self._tail.wait_tick(index)

    async def wait_end(self) -> None:
        """Wait until an EndFrame has passed every stage."""
        await self._tail.ended.wait()

    async def on_edge(self, frame: Frame, direction: Direction) -> None:
        if self._on_edge is not None:
            result = self._on_edge(frame, direction)
            if result is not None:
                await result
