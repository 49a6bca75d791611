"""The core's flush rules and failure handling, through the shipped harness (``run_frames``)."""

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest

from anima.core.frames import DataFrame, ErrorFrame, InterruptionFrame, TickFrame, UserAudioFrame
from anima.core.stage import UP, Stage
from anima.testing import FrameRecorder, run_frames

pytestmark = pytest.mark.unit

TICK_NS = 40_000_000


@dataclass
class Item(DataFrame):
    """An interruptible frame belonging to the agent's reply."""

    name: str


def ticks(*indices: int) -> list[TickFrame]:
    return [TickFrame(i, TICK_NS, pts_ns=i * TICK_NS) for i in indices]


def names(recorder: FrameRecorder) -> list[str]:
    return [f.name for f in recorder.of_type(Item)]


def test_interruption_flushes_interruptible_frames_and_keeps_the_rest_in_order():
    head = Stage("head")
    audio = UserAudioFrame(np.zeros(960, np.float32))
    # Pushed back to back, so all four are still in the head's queue when the interruption arrives.
    frames = [Item("a"), audio, Item("b"), InterruptionFrame(), *ticks(0, 1)]
    out = asyncio.run(run_frames([head], frames))
    kinds = [type(f).__name__ for f, _ in out.frames]
    assert kinds == ["InterruptionFrame", "UserAudioFrame", "TickFrame", "TickFrame"]
    assert out.of_type(UserAudioFrame)[0] is audio
    assert out.metrics.dropped_frames["head"] == 2


def test_frames_are_not_dropped_without_an_interruption():
    out = asyncio.run(run_frames([Stage("head")], [Item("a"), Item("b"), *ticks(0)]))
    assert names(out) == ["a", "b"]
    assert sum(out.metrics.dropped_frames.values()) == 0


class Gate(Stage):
    """Holds the first item it processes until an interruption, with a one-frame queue."""

    def __init__(self) -> None:
        super().__init__("gate", queue_size=1)
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def process_frame(self, frame, direction):
        if isinstance(frame, Item) and not self.release.is_set():
            self.holding.set()
            await self.release.wait()
        await self.push_frame(frame, direction)

    async def on_interruption(self, frame):
        self.release.set()


class Source(Stage):
    """On tick 0: starts a reply of three items, then the user barges in while they are on their way."""

    def __init__(self, gate: Gate) -> None:
        super().__init__("source")
        self.gate = gate

    async def process_frame(self, frame, direction):
        if isinstance(frame, TickFrame) and frame.index == 0:
            await self.push_frame(Item("a"))
            await self.gate.holding.wait()  # the gate is busy with "a"
            await self.push_frame(Item("b"))  # fills the gate's one-frame queue
            blocked = asyncio.create_task(self.push_frame(Item("c")))  # stamped, waiting for room
            await asyncio.sleep(0)
            assert not blocked.done()
            await self.push_frame(InterruptionFrame())  # "b" is flushed, which lets "c" in
            await blocked
            await self.push_frame(UserAudioFrame(np.zeros(960, np.float32)))
        await self.push_frame(frame, direction)


def test_frames_in_flight_from_before_an_interruption_are_dropped():
    gate = Gate()
    out = asyncio.run(run_frames([Source(gate), gate], ticks(0, 1)))
    assert names(out) == []  # "a" was mid-processing, "b" queued, "c" in flight: none comes out
    assert len(out.of_type(InterruptionFrame)) == 1
    assert len(out.of_type(UserAudioFrame)) == 1
    assert [t.index for t in out.of_type(TickFrame)] == [0, 1]
    # "b" by the flush; "c" (in flight) by its old epoch when dequeued; "a" by the next stage.
    assert out.metrics.dropped_frames["gate"] == 2
    assert out.metrics.dropped_frames["recorder"] == 1


def test_frames_after_an_interruption_get_the_new_epoch_and_pass():
    frames = [InterruptionFrame(), Item("after"), *ticks(0)]
    out = asyncio.run(run_frames([Stage("head")], frames))
    assert names(out) == ["after"]


class Faulty(Stage):
    """Raises on tick 1 and on every item: a bug in a stage's model code."""

    async def process_frame(self, frame, direction):
        if isinstance(frame, Item) or (isinstance(frame, TickFrame) and frame.index == 1):
            raise RuntimeError(f"model blew up on {type(frame).__name__}")
        await self.push_frame(frame, direction)


def test_ticks_keep_flowing_after_a_stage_fails():
    upstream = FrameRecorder("upstream")
    frames = [*ticks(0, 1), Item("x"), *ticks(2, 3)]
    out = asyncio.run(run_frames([upstream, Faulty("faulty")], frames))
    assert [t.index for t in out.of_type(TickFrame)] == [0, 1, 2, 3]
    assert names(out) == []  # the frame it failed on is not passed on
    errors = upstream.of_type(ErrorFrame, UP)
    assert [e.message for e in errors] == ["RuntimeError: model blew up on TickFrame", "RuntimeError: model blew up on Item"]
    assert all(e.stage == "faulty" and not e.permanent for e in errors)
