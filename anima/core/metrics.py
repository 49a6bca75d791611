"""Session metrics every stage writes to: compute time per stage, latencies, glitches."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from anima.core.frames import NS_PER_S


@dataclass
class SessionMetrics:
    """Counters a session collects; all times in seconds."""

    compute_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    reply_latency_s: list[float] = field(default_factory=list)
    barge_in_latency_s: list[float] = field(default_factory=list)
    barge_in_wall_latency_s: list[float] = field(default_factory=list)
    underrun_ticks: int = 0  # ticks where the agent was mid-utterance but audio was missing
    late_ticks: int = 0  # live: ticks the driver started after their deadline
    tick_lateness_max_s: float = 0.0  # live: the latest a tick started after its deadline
    ticks_late_60ms: int = 0  # live: ticks started more than 60 ms late (an audible or visible stall)
    ticks_late_200ms: int = 0
    dropped_frames: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    media_s: float = 0.0
    wall_s: float = 0.0

    def add_tick_lateness(self, late_ns: int, tick_ns: int) -> None:
        """Record how late (ns, <= 0 = on time) the driver started a tick."""
        if late_ns > tick_ns // 2:
            self.late_ticks += 1
        self.tick_lateness_max_s = max(self.tick_lateness_max_s, late_ns / NS_PER_S)
        self.ticks_late_60ms += late_ns > 60_000_000
        self.ticks_late_200ms += late_ns > 200_000_000

    def add_compute(self, stage: str, ns: int) -> None:
        self.compute_s[stage] += ns / NS_PER_S

    def rtf(self) -> dict[str, float]:
        """Real-time factor per stage and in total: seconds of compute per second of media."""
        if self.media_s <= 0:
            return {}
        out = {name: s / self.media_s for name, s in sorted(self.compute_s.items())}
        out["total"] = sum(self.compute_s.values()) / self.media_s
        return out
