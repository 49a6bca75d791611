"""The options every trainer shares, so each ``... train X --help`` reads the same (no torch import)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def add_common_arguments(parser: argparse.ArgumentParser, *, steps: int, corpus: Path | None = None,
                         out: Path | None = None, configs: Sequence[str] = ("tiny", "small"), config: str = "small",
                         save_every: int = 250) -> None:
    """--corpus --out --config --set --steps --save-every --seed --threads --device --quiet.

    ``out=None`` makes --out required; ``corpus=None`` leaves --corpus out (the trainer reads no corpus).
    """
    if corpus is not None:
        parser.add_argument("--corpus", type=Path, default=corpus, help="corpus folder (default %(default)s)")
    if out is None:
        parser.add_argument("--out", type=Path, required=True, help="run folder (resumed if it holds a checkpoint)")
    else:
        parser.add_argument("--out", type=Path, default=out, help="run folder, resumed if it holds a checkpoint (default %(default)s)")
    parser.add_argument("--config", choices=tuple(configs), default=config, help="model size (default %(default)s)")
    parser.add_argument("--steps", type=int, default=steps, help="total optimisation steps (default %(default)s)")
    parser.add_argument("--save-every", type=int, default=save_every, help="steps between checkpoints (default %(default)s)")
    add_run_arguments(parser)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--set --seed --threads --device --quiet: how a run goes, whatever it trains."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable, type-checked)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (gloo under torchrun) or cuda (one GPU per process, NCCL)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
