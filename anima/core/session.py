"""A session: the driver that runs a pipeline against the media clock.

Each tick it waits for the clock (live) or not (offline), feeds the input source's frames for the
tick, then the tick itself. Offline it also waits for the tick to clear the whole pipeline before
starting the next, which makes offline renders deterministic. The same loop drives a live avatar.

Error policy (STYLE E2): stages report failures as ``ErrorFrame`` s. Every error is listed in the
result; a permanent one also ends the session: the tick loop stops, the end of stream is sent so
sinks close their files, and ``run`` raises ``SessionError`` carrying the (failed) result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from anima.core.clock import MediaClock
from anima.core.frames import NS_PER_S, EndFrame, ErrorFrame, Frame, TickFrame
from anima.core.history import ConversationHistory
from anima.core.metrics import SessionMetrics
from anima.core.pipeline import Pipeline
from anima.core.stage import UP, Direction, Stage


class InputSource(Protocol):
    """Where user input comes from: a script, a microphone, a WebSocket."""

    def frames_for_tick(self, pts_ns: int, tick_ns: int) -> list[Frame]: ...
    def observe(self, frame: Frame) -> None: ...
    def finished(self, now_ns: int) -> bool: ...


class SessionError(RuntimeError):
    """A stage reported a permanent error and the session ended. ``result`` is what it did so far."""

    def __init__(self, message: str, result: SessionResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class SessionResult:
    media_s: float
    wall_s: float
    ticks: int
    metrics: SessionMetrics
    history: ConversationHistory
    errors: list[str] = field(default_factory=list)
    failure: str | None = None  # the permanent error that ended the session, if one did

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @property
    def rtf(self) -> float:
        """Wall seconds per media second for the whole path."""
        return self.wall_s / self.media_s if self.media_s else 0.0


class Session:
    """Runs stages as a pipeline for as long as the input source goes on."""

    def __init__(
        self,
        stages: list[Stage],
        source: InputSource,
        clock: MediaClock | None = None,
        history: ConversationHistory | None = None,
        max_duration_s: float = 3600.0,
        on_tick: Callable[[float], None] | None = None,
    ) -> None:
        self.clock = clock or MediaClock()
        self.source = source
        self.history = history if history is not None else ConversationHistory()
        self.max_ticks = int(max_duration_s * NS_PER_S // self.clock.tick_ns)
        self.on_tick = on_tick
        self.errors: list[str] = []
        self.failure: str | None = None
        self.pipeline = Pipeline(stages, self.clock, on_edge=self._on_edge)

    async def _on_edge(self, frame: Frame, direction: Direction) -> None:
        # Never raises: this runs inside whichever stage's task pushed the frame.
        if direction is not UP:
            return
        self.source.observe(frame)
        if isinstance(frame, ErrorFrame):
            message = f"{frame.stage}: {frame.message}"
            self.errors.append(message)
            if frame.permanent and self.failure is None:
                self.failure = message  # the tick loop stops before the next tick

    async def run(self) -> SessionResult:
        clock, tick_ns = self.clock, self.clock.tick_ns
        clock.start()
        wall0 = time.perf_counter()
        await self.pipeline.start()
        k = 0
        try:
            while k < self.max_ticks and self.failure is None and not self.source.finished(k * tick_ns):
                pts = k * tick_ns
                self.pipeline.metrics.add_tick_lateness(await clock.wait_until(pts), tick_ns)
                for frame in self.source.frames_for_tick(pts, tick_ns):
                    await self.pipeline.push(frame)
                await self.pipeline.push(TickFrame(k, tick_ns, pts_ns=pts))
                if not clock.realtime:
                    await self.pipeline.wait_tick(k)
                if self.on_tick is not None:
                    self.on_tick(tick_ns / NS_PER_S)
                k += 1
            await self.pipeline.push(EndFrame(pts_ns=k * tick_ns))
            await asyncio.wait_for(self.pipeline.wait_end(), timeout=60)
        finally:
            await self.pipeline.stop()
        metrics = self.pipeline.metrics
        metrics.media_s = k * tick_ns / NS_PER_S
        metrics.wall_s = time.perf_counter() - wall0
        result = SessionResult(metrics.media_s, metrics.wall_s, k, metrics, self.history, self.errors, self.failure)
        if self.failure is not None:
            raise SessionError(f"session ended by a permanent error in {self.failure}", result)
        return result
