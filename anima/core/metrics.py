"""Session metrics every stage writes to: compute time per stage, latencies, glitches."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from anima.core.frames import NS_PER_S


@dataclass
class Lateness:
    """How late a stream of events came against their deadlines (seconds; <= 0 = on time)."""

    count: int = 0
    over_60ms: int = 0  # later than 60 ms: an audible or visible stall
    over_200ms: int = 0
    max_s: float = 0.0  # the latest one

    def add(self, late_s: float) -> None:
        self.count += 1
        self.over_60ms += late_s > 0.060
        self.over_200ms += late_s > 0.200
        self.max_s = max(self.max_s, late_s)


@dataclass
class SessionMetrics:
    """Counters a session collects; all times in seconds."""

    compute_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    reply_latency_s: list[float] = field(default_factory=list)
    barge_in_latency_s: list[float] = field(default_factory=list)
    barge_in_wall_latency_s: list[float] = field(default_factory=list)
    underrun_ticks: int = 0  # ticks where the agent was mid-utterance but audio was missing
    late_ticks: int = 0  # live: ticks the driver started after their deadline
    tick_lateness: Lateness = field(default_factory=Lateness)  # live: when each tick started against its deadline
    dropped_frames: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    media_s: float = 0.0
    wall_s: float = 0.0

    def add_tick_lateness(self, late_ns: int, tick_ns: int) -> None:
        """Record how late (ns, <= 0 = on time) the driver started a tick."""
        if late_ns > tick_ns // 2:
            self.late_ticks += 1
        self.tick_lateness.add(late_ns / NS_PER_S)

    def add_compute(self, stage: str, ns: int) -> None:
        self.compute_s[stage] += ns / NS_PER_S

    def rtf(self) -> dict[str, float]:
        """Real-time factor per stage and in total: seconds of compute per second of media."""
        if self.media_s <= 0:
            return {}
        out = {name: s / self.media_s for name, s in sorted(self.compute_s.items())}
        out["total"] = sum(self.compute_s.values()) / self.media_s
        return out
