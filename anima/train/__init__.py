"""Shared training: the one loop (resumable, metrics.jsonl, DDP under torchrun), checkpoints, config overrides."""

from anima.checkpoint import load_checkpoint, load_weights, save_checkpoint
from anima.train.config import ConfigError, apply_overrides
from anima.train.loop import TrainState, train_loop

__all__ = ["ConfigError", "TrainState", "apply_overrides", "load_checkpoint", "load_weights", "save_checkpoint",
           "train_loop"]
