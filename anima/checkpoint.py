"""Checkpoints as safetensors plus a JSON config: never pickle.

A checkpoint directory holds::

    model.safetensors      the model's state_dict
    optimizer.safetensors  the optimizer's tensors (flattened), when saved for resuming
    config.json            {"config": {...model config...}, "step": N, "optimizer": {...scalars...}, "extra": {...}}

Writes go to a temporary directory that is renamed into place, so a crash mid-save never destroys
the previous checkpoint. Other files in the directory (the run's ``metrics.jsonl``, a VAE's
``feature_stats.npz``) are carried over to the new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CHECKPOINT_FILES = ("model.safetensors", "optimizer.safetensors", "config.json")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not match the model."""


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        scalars["state"][str(pid)] = {}
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars["state"][str(pid)][key] = value
    return tensors, scalars


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(values) for pid, values in scalars["state"].items()}
    for name, tensor in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = tensor
    return {"state": state, "param_groups": scalars["param_groups"]}


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    config: dict[str, Any],
    step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save atomically to ``directory`` (replacing what was there only once the new one is complete)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        weights, tied, seen = {}, {}, {}
        for k, v in model.state_dict().items():
            ptr = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
            if ptr in seen:  # a tied weight (a language model's output layer is its input embedding)
                tied[k] = seen[ptr]
                continue
            seen[ptr] = k
            weights[k] = v.detach().cpu().contiguous()
        save_file(weights, str(tmp / "model.safetensors"))
        meta: dict[str, Any] = {"config": config, "step": step, "extra": extra or {}}
        if tied:
            meta["tied"] = tied  # key -> the key it shares its tensor with (stored once)
        if optimizer is not None:
            tensors, scalars = _flatten_optimizer(optimizer.state_dict())
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            meta["optimizer"] = scalars
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        _carry_over(directory, tmp)
        old = directory.with_name(directory.name + ".old")
        if directory.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _carry_over(directory: Path, tmp: Path) -> None:
    """Keep the run's other files (metrics.jsonl, feature stats) in the new checkpoint directory.

    Hard links where the filesystem allows: free, and a writer appending to the file keeps
    appending to the same file after the swap.
    """
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.name in CHECKPOINT_FILES or not path.is_file() or (tmp / path.name).exists():
            continue
        try:
            os.link(path, tmp / path.name)
        except OSError:
            shutil.copy2(path, tmp / path.name)


def read_config(directory: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (model config under "config", "step", "extra")."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{directory}: no config.json (not a checkpoint directory)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from None


def load_weights(directory: str | Path, model: torch.nn.Module, strict: bool = True) -> dict[str, Any]:
    """Load model weights into ``model``; returns the checkpoint metadata."""
    meta = read_config(directory)
    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{directory}: no model.safetensors")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type for truncated or foreign files
        raise CheckpointError(f"{path}: unreadable weights ({type(exc).__name__}: {exc})") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise CheckpointError(f"{directory}: weights do not match the model ({str(exc)[:300]})") from None
    missing = [k for k in missing if k not in meta.get("tied", {})]  # restored by the model's own tying
    if strict and (missing or unexpected):
        raise CheckpointError(f"{directory}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return meta


def load_checkpoint(directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Load weights and, when present and asked for, the optimizer state (to resume training)."""
    meta = load_weights(directory, model)
    opt_path = Path(directory) / "optimizer.safetensors"
    if optimizer is not None and opt_path.is_file() and "optimizer" in meta:
        optimizer.load_state_dict(_unflatten_optimizer(load_file(str(opt_path)), meta["optimizer"]))
    return meta
