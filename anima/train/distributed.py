"""Data-parallel training under ``torchrun``: one process per device, the same global batch at any size.

``torchrun`` (or ``python -m torch.distributed.run``) starts the processes and sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. ``init()`` reads them and joins the
process group: NCCL when CUDA is there (one GPU per process, picked by LOCAL_RANK), gloo on CPU.
Without those variables it does nothing and everything below degrades to the single-process
case (``wrap`` returns a plain call, ``shard`` returns the whole batch, reductions are identities),
so a plain ``python -m ...`` run computes exactly what it did before.

How a step stays the same at any world size: every rank draws the *whole* global batch from the
same seeded sampler (data sampling is cheap next to the model), keeps its ``1/world_size`` slice
(``shard``), and DDP averages the gradients, which for a mean loss over equal slices is the
gradient of the global batch. So world size 2 trains the same weights as world size 1 (up to
float summation order) and a checkpoint from one resumes at the other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # this process among all (0 = the one that logs and saves)
    world_size: int = 1  # processes in the job
    local_rank: int = 0  # this process on its node (picks the GPU)
    device: torch.device = torch.device("cpu")  # where this process's model and batches live

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by torchrun's environment; single-process without it.

    ``device``: "cpu" or "cuda" to force one (default: CUDA when available). The backend follows
    the device: NCCL for CUDA, gloo for CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device cuda asked for, but CUDA is not available")
    where = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(where)
    if world > 1 and not dist.is_initialized():
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set: start the job with torchrun")
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
    return DistInfo(rank, world, local, where)


def close() -> None:
    """Leave the process group (a no-op when none was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


class _Forward(nn.Module):
    """``fn(module, *args)`` as a forward, so DDP can sync the gradients of a loss that is not ``forward``."""

    def __init__(self, module: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.module, self.fn = module, fn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(self.module, *args, **kwargs)


def wrap(model: nn.Module, fn: Callable[..., Any] | None = None,
         find_unused_parameters: bool = False) -> Callable[..., Any]:
    """The callable a training step runs: ``fn(model, *args)`` (or ``model(*args)``), under DDP when distributed.

    Save and load ``model`` itself, not the wrapper (its state_dict keys stay unprefixed).
    """
    call = _Forward(model, fn) if fn is not None else model
    if world_size() == 1:
        return call
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("wrap: the model has no trainable parameters")
    device = next(model.parameters()).device
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(call, device_ids=ids, find_unused_parameters=find_unused_parameters)


def shard(batch: Any, dim: int = 0) -> Any:
    """This rank's equal slice of a global batch (a tensor, or a dict / list / tuple of them).

    The global batch size must divide by the world size: unequal slices would weigh samples unequally.
    """
    world = world_size()
    if world == 1:
        return batch
    if isinstance(batch, dict):
        return {k: shard(v, dim) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(shard(v, dim) for v in batch)
    if not torch.is_tensor(batch):
        raise TypeError(f"shard: expected tensors, got {type(batch).__name__}")
    size = batch.shape[dim]
    if size % world:
        raise ValueError(f"global batch {size} does not divide by the world size {world}: "
                         f"use a batch that is a multiple of {world}")
    per = size // world
    return batch.narrow(dim, rank() * per, per)


def _reduce_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each logged number over ranks (every rank must pass the same keys)."""
    if world_size() == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t)
    t /= world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def mean_denominator(count: torch.Tensor) -> torch.Tensor:
    """For a masked mean ``sum / count``: the count summed over ranks / world size, so that DDP's
    average of the per-rank losses equals the global batch's masked mean (slices can differ in count)."""
    if world_size() == 1:
        return count
    total = count.detach().clone()
    dist.all_reduce(total)
    return total / world_size()
