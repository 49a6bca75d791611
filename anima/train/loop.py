"""A small resumable training loop with a progress bar, shared by every model's training script.

Each model script provides a ``step_fn(batch_index) -> dict of floats`` that does one optimisation
step (forward, backward, optimizer step) and returns its losses. The loop resumes from the last
checkpoint in ``out_dir``, checkpoints every ``save_every`` steps and at the end, and shows progress
with tqdm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from anima.train.checkpoint import load_checkpoint, save_checkpoint


@dataclass
class TrainState:
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def train_loop(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], dict[str, float]],
    total_steps: int,
    out_dir: str | Path,
    config: dict[str, Any],
    save_every: int = 500,
    resume: bool = True,
    desc: str = "training",
    extra: Callable[[], dict[str, Any]] | None = None,
    progress: bool = True,
) -> TrainState:
    """Run ``step_fn`` until ``total_steps``, resuming from ``out_dir`` if a checkpoint is there."""
    out_dir = Path(out_dir)
    state = TrainState()
    if resume and (out_dir / "config.json").is_file():
        meta = load_checkpoint(out_dir, model, optimizer)
        state.step = int(meta.get("step", 0))
        state.history = list(meta.get("extra", {}).get("history", []))
    model.train()
    bar = tqdm(total=total_steps, initial=state.step, desc=desc, disable=not progress, mininterval=0.5)
    try:
        while state.step < total_steps:
            losses = step_fn(state.step)
            state.step += 1
            if state.step % 10 == 0 or state.step == total_steps:
                state.history.append({"step": state.step, **{k: float(v) for k, v in losses.items()}})
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
            if state.step % save_every == 0 or state.step == total_steps:
                payload = {"history": state.history[-200:], **(extra() if extra else {})}
                save_checkpoint(out_dir, model, config, state.step, optimizer, payload)
    finally:
        bar.close()
    model.eval()
    return state
