"""The learning-rate schedule every trainer uses: linear warm-up, then a cosine down to a floor."""

from __future__ import annotations

import math


def lr_at(step: int, total: int, base: float, warmup: int, floor: float = 0.1) -> float:
    """The learning rate of ``step`` (0-based) of ``total``: ``base * (step + 1) / warmup`` while warming
    up, then a cosine from ``base`` down to ``floor * base`` at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
