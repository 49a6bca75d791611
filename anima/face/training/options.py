"""The face training command line (no torch: ``anima --help`` stays light).

Shared by ``python -m anima.face.training.train`` and ``anima face train``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from anima.train.options import add_run_arguments


def add_arguments(sub: argparse._SubParsersAction, func_for: Callable[[str], Callable[[argparse.Namespace], int]]) -> None:
    """The four training commands; ``func_for(kind)`` is what each one runs."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--corpus", type=Path, default=Path("out/face_corpus"), help="corpus directory")
    common.add_argument("--out", type=Path, required=True, help="checkpoint directory (resumed if present)")
    common.add_argument("--steps", type=int, default=None)
    common.add_argument("--batch", type=int, default=None, help="global batch, split evenly over torchrun's processes")
    common.add_argument("--lr", type=float, default=None)
    add_run_arguments(common)
    p = sub.add_parser("quantizer", parents=[common], help="train the multi-scale motion quantiser")
    p.set_defaults(func=func_for("quantizer"))
    p = sub.add_parser("stage1", parents=[common], help="stage 1: audio-free motion prior")
    p.add_argument("--quantizer", type=Path, required=True)
    p.set_defaults(func=func_for("stage1"))
    p = sub.add_parser("stage2", parents=[common], help="stage 2: audio cross-attention + LoRA on stage 1")
    p.add_argument("--stage1", type=Path, required=True)
    p.add_argument("--lora-rank", type=int, default=8)
    p.set_defaults(func=func_for("stage2"))
    p = sub.add_parser("onestage", parents=[common], help="baseline: audio-conditioned from scratch")
    p.add_argument("--quantizer", type=Path, required=True)
    p.set_defaults(func=func_for("onestage"))
