"""The session's error policy: a permanent error ends the session, other errors are listed and skipped."""

import asyncio

import pytest

from anima.core.clock import MediaClock
from anima.core.frames import EndFrame, ErrorFrame, Frame, TickFrame
from anima.core.session import Session, SessionError
from anima.core.stage import UP, Stage
from anima.testing import FrameRecorder

pytestmark = pytest.mark.unit


class Silence:
    """An input source that says nothing for ``n_ticks`` ticks."""

    def __init__(self, n_ticks: int) -> None:
        self.n_ticks = n_ticks
        self.observed: list[Frame] = []

    def frames_for_tick(self, pts_ns: int, tick_ns: int) -> list[Frame]:
        return []

    def observe(self, frame: Frame) -> None:
        self.observed.append(frame)

    def finished(self, now_ns: int) -> bool:
        return now_ns >= self.n_ticks * MediaClock().tick_ns


class Breaks(Stage):
    """Reports an error on tick ``at``, permanent or not."""

    def __init__(self, at: int, permanent: bool) -> None:
        super().__init__("camera")
        self.at, self.permanent = at, permanent

    async def process_frame(self, frame, direction):
        if isinstance(frame, TickFrame) and frame.index == self.at:
            await self.push_frame(ErrorFrame(message="device unplugged", stage=self.name, permanent=self.permanent), UP)
        await self.push_frame(frame, direction)


def run(stages, n_ticks=50, realtime=False):
    return asyncio.run(Session(stages, Silence(n_ticks), MediaClock(realtime=realtime)).run())


def test_a_permanent_error_ends_the_session_with_a_clear_message():
    tap = FrameRecorder("tap")
    with pytest.raises(SessionError, match="camera: device unplugged") as caught:
        run([Breaks(at=3, permanent=True), tap])
    result = caught.value.result
    assert result.errors == ["camera: device unplugged"]  # once, not re-reported as a second error
    assert result.failed and result.ticks == 4  # ticks 0..3, then the loop stopped
    # Ended cleanly: the end of stream passed every stage (sinks close their files).
    assert len(tap.of_type(EndFrame)) == 1
    assert [t.index for t in tap.of_type(TickFrame)] == [0, 1, 2, 3]


def test_a_permanent_error_ends_a_live_session_too():
    with pytest.raises(SessionError, match="device unplugged") as caught:
        run([Breaks(at=1, permanent=True)], n_ticks=25, realtime=True)
    # Live ticks are not waited for, so the loop may push one more before it sees the error.
    assert 2 <= caught.value.result.ticks < 25


def test_other_errors_are_listed_and_the_session_runs_on():
    tap = FrameRecorder("tap")
    result = run([Breaks(at=3, permanent=False), tap], n_ticks=10)
    assert result.errors == ["camera: device unplugged"]
    assert not result.failed and result.ticks == 10
    assert len(tap.of_type(TickFrame)) == 10
