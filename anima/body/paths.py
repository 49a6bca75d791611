"""Where the body module's data, training outputs and shipped weights live (no heavy imports)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MOCAP = REPO_ROOT.parent / "shared" / "data" / "mocap"  # ../shared/data/mocap
OUT = REPO_ROOT / "out" / "body"  # training outputs and caches (git-ignored)
DEFAULT_OUT = OUT / "dataset"  # the dataset cache
WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "weights" / "body"  # shipped vae/ and flood/
