"""The dataset as every body training reads it (under torchrun, rank 0 builds the cache first)."""

from __future__ import annotations

import argparse

from anima.body.data.dataset import MotionDataset, load_dataset
from anima.train import distributed


def load_data(args: argparse.Namespace) -> MotionDataset:
    """The dataset cache; under torchrun rank 0 builds it (if missing) before the others read it."""
    main = distributed.is_main()
    if not main:
        distributed.barrier()
    data = load_dataset(args.data, args.mocap, progress=not args.quiet and main)
    if main:
        distributed.barrier()
    return data
