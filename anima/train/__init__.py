"""Shared training: the one loop (resumable, metrics.jsonl, DDP under torchrun), checkpoints, config overrides.

Names load on first use (PEP 562), so ``anima.train.options`` (argparse only) does not pull in torch.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "load_checkpoint": "anima.checkpoint", "load_weights": "anima.checkpoint", "save_checkpoint": "anima.checkpoint",
    "ConfigError": "anima.train.config", "apply_overrides": "anima.train.config",
    "TrainState": "anima.train.loop", "train_loop": "anima.train.loop",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'anima.train' has no attribute {name!r}")
