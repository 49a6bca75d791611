"""The body training command line: defaults per model and the arguments (no torch: ``anima --help`` stays light).

Shared by ``python -m anima.body.training.train`` and ``anima body train``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from anima.body.paths import DEFAULT_MOCAP, DEFAULT_OUT, OUT
from anima.train.options import add_run_arguments

TRAIN_DEFAULTS = {  # what: (steps, global batch, lr)
    "vae": (3000, 32, 1e-3), "dit": (3000, 64, 5e-4), "chunk": (3000, 64, 5e-4), "ar": (3000, 64, 5e-4),
    "evaluator": (2000, 64, 1e-3),
}


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=sorted(TRAIN_DEFAULTS), help="vae, dit (FloodDiffusion), chunk, ar, evaluator")
    p.add_argument("--out", type=Path, default=None, help="checkpoint directory (default out/body/WHAT)")
    p.add_argument("--data", type=Path, default=DEFAULT_OUT, help="dataset cache (built if missing)")
    p.add_argument("--mocap", type=Path, default=DEFAULT_MOCAP, help="mocap folder (for building the cache)")
    p.add_argument("--vae", type=Path, default=OUT / "vae", help="VAE checkpoint (diffusion models)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="global batch, split evenly over torchrun's processes")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--window", type=int, default=48, help="VAE/evaluator training window, frames")
    p.add_argument("--init", type=Path, default=None, help="VAE: start from this checkpoint's weights")
    p.add_argument("--decoder-only", action="store_true", help="VAE: freeze the encoder (fine-tune the decoder)")
    p.add_argument("--save-every", type=int, default=250)
    add_run_arguments(p)
