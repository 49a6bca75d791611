"""The session media clock: one timeline for every stream, in wall time or faster than real time.

Media time starts at 0 when the session starts and advances one tick (one video frame) at a time.
In real-time mode the driver waits for the wall clock before each tick; offline it does not wait,
and media time is simply the current tick. Stages read ``now_ns()`` the same way in both modes, so
the same code renders a file or drives a live avatar.

Offline, compute takes no media time: a stage whose result is not ready when a tick arrives waits
for it (``clock.realtime`` is False) instead of emitting a gap. Live, it emits what it has and the
gap is counted.
"""

from __future__ import annotations

import asyncio
import time

from anima.core.frames import NS_PER_S

VIDEO_FPS = 25
TICK_NS = NS_PER_S // VIDEO_FPS  # 40 ms


class MediaClock:
    """Media time for one session. ``realtime`` selects wall-clock pacing."""

    def __init__(self, realtime: bool = False, tick_ns: int = TICK_NS) -> None:
        if tick_ns <= 0:
            raise ValueError(f"tick_ns must be positive, got {tick_ns}")
        self.realtime = realtime
        self.tick_ns = tick_ns
        self._start_wall_ns: int | None = None
        self._media_ns = 0

    @property
    def fps(self) -> float:
        return NS_PER_S / self.tick_ns

    def start(self) -> None:
        self._start_wall_ns = time.perf_counter_ns()
        self._media_ns = 0

    def wall_ns(self) -> int:
        """Wall time since start (ns)."""
        if self._start_wall_ns is None:
            raise RuntimeError("MediaClock.wall_ns() before start(): call clock.start() first")
        return time.perf_counter_ns() - self._start_wall_ns

    def now_ns(self) -> int:
        """Current media time: the wall clock live, the current tick offline."""
        if self.realtime and self._start_wall_ns is not None:
            return self.wall_ns()
        return self._media_ns

    async def wait_until(self, pts_ns: int) -> int:
        """Advance to ``pts_ns``; live, sleep until then. Returns how late we are (ns, >= 0)."""
        self._media_ns = max(self._media_ns, pts_ns)
        if not self.realtime:
            return 0
        delay_ns = pts_ns - self.wall_ns()
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / NS_PER_S)
            return 0
        return -delay_ns

    def frames_in(self, duration_ns: int) -> int:
        """Number of ticks covering ``duration_ns`` (frame count = duration x rate)."""
        return -(-duration_ns // self.tick_ns)
