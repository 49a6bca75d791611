"""Shared training utilities: safetensors checkpoints with a JSON config, a resumable loop."""

from anima.train.checkpoint import load_checkpoint, load_weights, save_checkpoint
from anima.train.loop import TrainState, train_loop

__all__ = ["TrainState", "load_checkpoint", "load_weights", "save_checkpoint", "train_loop"]
