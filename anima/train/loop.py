"""The one training loop: resumable, a progress bar, metrics.jsonl, data-parallel under torchrun.

Each model script provides a ``step_fn(step) -> dict of floats`` that does one optimisation
step (forward, backward, optimizer step) and returns its losses. The loop:

- resumes from the checkpoint in ``out_dir`` (weights, optimizer, and the random state of the
  torch generator and of the samplers' numpy generators passed as ``rngs``, so a resumed run
  continues exactly as an uninterrupted one would);
- checkpoints every ``save_every`` steps and at the end (atomically, ``anima.checkpoint``);
- appends one JSON line per step to ``out_dir/metrics.jsonl`` ({"step", losses..., "lr", "elapsed_s"}),
  cut back to the checkpoint's step on resume so the file never holds steps the weights do not;
- when distributed (``anima.train.distributed``), averages the logged losses over ranks, and only
  rank 0 shows the bar, writes metrics and saves, with barriers so no rank reads a half-saved
  checkpoint. The step_fn itself shards the batch and runs the DDP-wrapped model.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from anima.checkpoint import load_checkpoint, save_checkpoint
from anima.train import distributed

METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainState:
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # every 10th step's losses (kept in config.json)


def _tensor_to_text(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _text_to_tensor(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def random_state(rngs: Sequence[np.random.Generator]) -> dict[str, Any]:
    """The torch (CPU and current CUDA device) and numpy generators' states, as JSON."""
    state: dict[str, Any] = {"torch": _tensor_to_text(torch.get_rng_state()),
                             "numpy": [g.bit_generator.state for g in rngs]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = _tensor_to_text(torch.cuda.get_rng_state())
    return state


def set_random_state(state: dict[str, Any], rngs: Sequence[np.random.Generator]) -> None:
    torch.set_rng_state(_text_to_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(_text_to_tensor(state["cuda"]))
    saved = state.get("numpy", [])
    if len(saved) != len(rngs):
        raise ValueError(f"checkpoint holds {len(saved)} sampler generator state(s), the trainer has {len(rngs)}")
    for g, s in zip(rngs, saved, strict=True):
        g.bit_generator.state = s


def _cut_metrics(path: Path, step: int) -> None:
    """Drop the lines past ``step`` (steps run after the last checkpoint of an interrupted run)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


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
    rngs: Sequence[np.random.Generator] = (),
) -> TrainState:
    """Run ``step_fn`` until ``total_steps``, resuming from ``out_dir`` if a checkpoint is there.

    ``model`` is the bare module (not the DDP wrapper): it is what gets saved and loaded.
    ``rngs``: the numpy generators the step_fn samples with; their state is checkpointed.
    ``extra()`` adds entries to the checkpoint's "extra" (it runs on every rank before a save).
    """
    if save_every <= 0:
        raise ValueError(f"save_every must be positive, got {save_every}")
    out_dir = Path(out_dir)
    main = distributed.is_main()
    state = TrainState()
    distributed.barrier()  # a rank must not read a checkpoint rank 0 is still writing
    if resume and (out_dir / "config.json").is_file():
        meta = load_checkpoint(out_dir, model, optimizer)
        state.step = int(meta.get("step", 0))
        saved = meta.get("extra", {})
        state.history = list(saved.get("history", []))
        if "rng" in saved:
            set_random_state(saved["rng"], rngs)
    metrics = out_dir / METRICS_FILE
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _cut_metrics(metrics, state.step)
    distributed.barrier()
    model.train()
    bar = tqdm(total=total_steps, initial=state.step, desc=desc, disable=not (progress and main), mininterval=0.5)
    t0 = time.perf_counter()
    try:
        while state.step < total_steps:
            losses = distributed.mean_over_ranks({k: float(v) for k, v in step_fn(state.step).items()})
            state.step += 1
            if state.step % 10 == 0 or state.step == total_steps:
                state.history.append({"step": state.step, **losses})
            if main:
                finite = {k: (v if math.isfinite(v) else None) for k, v in losses.items()}  # strict JSON: NaN -> null
                line = {"step": state.step, **finite, "lr": optimizer.param_groups[0]["lr"],
                        "elapsed_s": round(time.perf_counter() - t0, 3)}
                with metrics.open("a") as f:  # opened per line: the file survives checkpoint swaps
                    f.write(json.dumps(line) + "\n")
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
            if state.step % save_every == 0 or state.step == total_steps:
                payload = {"history": state.history[-200:], **(extra() if extra else {})}
                payload["rng"] = random_state(rngs)
                if main:
                    save_checkpoint(out_dir, model, config, state.step, optimizer, payload)
                distributed.barrier()
    finally:
        bar.close()
    model.eval()
    return state
