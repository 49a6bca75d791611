"""Garbage-collector pauses of this process: how many collections of each generation, how long.

The server freezes everything it loaded at start-up out of the collector (``gc.freeze``); what is
left to scan is what sessions allocate. This records each collection's duration through
``gc.callbacks`` so the load benchmark can show that no pause approaches a frame's budget.
"""

from __future__ import annotations

import gc
import time


class GCPauses:
    """Counts and times collections per generation (thread-safe enough: the GC holds the GIL)."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.max_ns = [0, 0, 0]
        self.total_ns = [0, 0, 0]
        self._t0 = 0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter_ns()
            return
        generation = info.get("generation", 2)
        elapsed = time.perf_counter_ns() - self._t0
        self.counts[generation] += 1
        self.total_ns[generation] += elapsed
        self.max_ns[generation] = max(self.max_ns[generation], elapsed)

    def start(self) -> GCPauses:
        gc.callbacks.append(self._callback)
        return self

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def summary(self) -> dict:
        return {
            "collections": {f"gen{g}": self.counts[g] for g in range(3)},
            "max_ms_by_generation": {f"gen{g}": round(self.max_ns[g] / 1e6, 2) for g in range(3)},
            "max_ms": round(max(self.max_ns) / 1e6, 2),
            "frozen_objects": gc.get_freeze_count(),
        }
