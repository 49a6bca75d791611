"""The stage: one step of the streaming pipeline, joined to its neighbours by bounded queues.

A stage overrides ``process_frame`` (queued frames, in order) and may override
``on_interruption`` (reset its model state). The base class does the rest:

- System frames bypass the queue: ``queue_frame`` handles them at once in the caller's task.
- An ``InterruptionFrame`` going downstream bumps the stage's epoch, drops every interruptible frame
  still in its queue, cancels its background jobs and calls ``on_interruption`` before passing the
  interruption on. A frame that was already on its way (pushed before the stage saw the interruption)
  carries the older epoch and is dropped when dequeued, so nothing from an interrupted turn is
  emitted later.
- Long work (an LLM call, speech synthesis) runs as a background job (``start_job``) so that clock
  ticks keep flowing: the face and body never freeze while the agent thinks.
- A failure in ``process_frame`` or a job is reported upstream as an ``ErrorFrame`` and skipped (a
  tick is still passed on). A stage that cannot go on pushes ``ErrorFrame(permanent=True)``
  upstream instead; the session then ends (``anima.core.session``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from anima.core.clock import MediaClock
from anima.core.frames import EndFrame, ErrorFrame, Frame, InterruptionFrame, SystemFrame, TickFrame
from anima.core.metrics import SessionMetrics

if TYPE_CHECKING:
    from anima.core.pipeline import Pipeline

log = logging.getLogger(__name__)


class Direction(enum.Enum):
    DOWNSTREAM = "down"
    UPSTREAM = "up"


DOWN = Direction.DOWNSTREAM
UP = Direction.UPSTREAM


class Stage:
    """Base class of every pipeline stage."""

    def __init__(self, name: str | None = None, queue_size: int = 64) -> None:
        self.name = name or type(self).__name__
        self._queue: asyncio.Queue[tuple[Frame, Direction]] = asyncio.Queue(maxsize=queue_size)
        self._next: Stage | None = None
        self._prev: Stage | None = None
        self._pipeline: Pipeline | None = None
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[Any]] = set()
        self.epoch = 0
        self.clock = MediaClock()
        self.metrics = SessionMetrics()

    # -- wiring --------------------------------------------------------------------------------
    def attach(self, pipeline: Pipeline, prev: Stage | None, next_: Stage | None) -> None:
        self._pipeline, self._prev, self._next = pipeline, prev, next_
        self.clock, self.metrics = pipeline.clock, pipeline.metrics

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"stage:{self.name}")

    async def stop(self) -> None:
        self._cancel_jobs()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # -- frame flow ----------------------------------------------------------------------------
    async def queue_frame(self, frame: Frame, direction: Direction = DOWN) -> None:
        """Hand a frame to this stage: system frames are handled now, others wait in the queue."""
        if isinstance(frame, SystemFrame):
            await self._handle_system(frame, direction)
        else:
            await self._queue.put((frame, direction))  # blocks when full: backpressure

    async def push_frame(self, frame: Frame, direction: Direction = DOWN) -> None:
        """Send a frame to the next stage (or the previous one, upstream)."""
        if frame.epoch < 0:
            frame.epoch = self.epoch
        target = self._next if direction is DOWN else self._prev
        if target is not None:
            await target.queue_frame(frame, direction)
        elif self._pipeline is not None:
            await self._pipeline.on_edge(frame, direction)

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        """Handle one queued frame. Default: pass it on."""
        await self.push_frame(frame, direction)

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        """Handle a system frame (after interruption bookkeeping). Default: pass it on."""
        await self.push_frame(frame, direction)

    async def on_interruption(self, frame: InterruptionFrame) -> None:
        """Reset model state after an interruption. Jobs are already cancelled, queue flushed."""

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Count the enclosed work as this stage's compute (for per-stage real-time factors).

        Only model work is wrapped, not time spent waiting on queues, so the per-stage numbers add
        up to what the stages cost rather than to how long they waited for each other.
        """
        t0 = time.perf_counter_ns()
        try:
            yield
        finally:
            self.metrics.add_compute(self.name, time.perf_counter_ns() - t0)

    async def settle(self, job: asyncio.Task[Any] | None) -> None:
        """Wait for a background job to end, however it ends (its failure is reported elsewhere).

        Used offline, where compute takes no media time: a tick waits for the result it needs.
        If this stage's own task is being cancelled, that cancellation propagates.
        """
        if job is None:
            return
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:
            pass

    def start_job(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; it is cancelled by the next interruption."""
        task = asyncio.create_task(coro)
        self._jobs.add(task)
        task.add_done_callback(self._job_done)
        return task

    # -- internals -----------------------------------------------------------------------------
    def _job_done(self, task: asyncio.Task[Any]) -> None:
        self._jobs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("%s: background job failed: %r", self.name, exc)
            asyncio.get_running_loop().create_task(self._report_error(exc))

    async def _report_error(self, exc: BaseException, permanent: bool = False) -> None:
        await self.push_frame(ErrorFrame(message=f"{type(exc).__name__}: {exc}", stage=self.name, permanent=permanent), UP)

    def _cancel_jobs(self) -> None:
        for task in list(self._jobs):
            task.cancel()
        self._jobs.clear()

    def _flush_queue(self) -> int:
        """Drop interruptible frames from the queue, keep the rest in order. Returns how many dropped."""
        kept: list[tuple[Frame, Direction]] = []
        dropped = 0
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item[0].interruptible:
                dropped += 1
            else:
                kept.append(item)
        for item in kept:
            self._queue.put_nowait(item)
        return dropped

    async def _handle_system(self, frame: SystemFrame, direction: Direction) -> None:
        if isinstance(frame, InterruptionFrame) and direction is DOWN:
            # Order matters: bump the epoch first so frames already handed to us (or being put
            # into our queue right now by the previous stage) are recognised as stale.
            self.epoch += 1
            dropped = self._flush_queue()
            if dropped:
                self.metrics.dropped_frames[self.name] += dropped
            self._cancel_jobs()
            await self.on_interruption(frame)
        await self.process_system(frame, direction)

    async def _run(self) -> None:
        while True:
            frame, direction = await self._queue.get()
            if frame.interruptible and 0 <= frame.epoch < self.epoch:
                self.metrics.dropped_frames[self.name] += 1
                continue
            try:
                await self.process_frame(frame, direction)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a stage never raises through the pipeline (STYLE E2)
                log.exception("%s failed on %s", self.name, frame)
                await self._report_error(exc)
                if isinstance(frame, (TickFrame, EndFrame)):
                    await self.push_frame(frame, direction)  # the clock must never stall on a failure
