"""The codebook delay pattern (MusicGen, Moshi): codebook q is written ``delays[q]`` steps after its frame.

A 12.5 Hz frame holds 8 codes (codebooks 0-1 semantic, 2-7 acoustic). The language model writes one
*step* per position, all codebooks at once with parallel heads. Shifting codebook q right by
``delays[q]`` steps means that when the model writes a frame's acoustic codes it has already
written (and is conditioned on) that frame's lower codebooks: coarse-to-fine within a frame at the
cost of ``max(delays)`` extra steps. Positions a shift leaves empty hold ``pad`` (the codebook size,
an id no code uses). Undo the delay before decoding audio. See NOTES.md "Speech".

Patterns: ``"musicgen"`` = (0, 1, ..., K-1); ``"moshi"`` = semantic codebooks 0, acoustic 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PATTERNS = ("musicgen", "moshi", "none")


def delays_for(pattern: str, n_codebooks: int = 8, n_semantic: int = 2) -> tuple[int, ...]:
    """The per-codebook delays of a named pattern."""
    match pattern:
        case "musicgen":
            return tuple(range(n_codebooks))
        case "moshi":
            return (0,) * n_semantic + (1,) * (n_codebooks - n_semantic)
        case "none":
            return (0,) * n_codebooks
    raise ValueError(f"unknown delay pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")


def check_delays(delays: Sequence[int], n_codebooks: int) -> None:
    """Delays are one non-negative int per codebook and codebook 0 comes first (it decides the end)."""
    if len(delays) != n_codebooks:
        raise ValueError(f"delays {tuple(delays)}: expected one per codebook ({n_codebooks}), got {len(delays)}")
    if any(d < 0 for d in delays) or delays[0] != min(delays) or delays[0] != 0:
        raise ValueError(f"delays {tuple(delays)}: must be >= 0 with codebook 0 at delay 0")


def apply_delay(codes: torch.Tensor, delays: Sequence[int], pad: int) -> torch.Tensor:
    """(..., K, T) frames -> (..., K, T + max(delays)) steps; codebook q moved right by delays[q]."""
    K, T = codes.shape[-2:]
    check_delays(delays, K)
    out = codes.new_full((*codes.shape[:-1], T + max(delays)), pad)
    for q, d in enumerate(delays):
        out[..., q, d:d + T] = codes[..., q, :]
    return out


def undo_delay(steps: torch.Tensor, delays: Sequence[int]) -> torch.Tensor:
    """(..., K, S) steps -> (..., K, S - max(delays)) frames: the inverse of ``apply_delay``."""
    K, S = steps.shape[-2:]
    check_delays(delays, K)
    T = S - max(delays)
    if T < 0:
        raise ValueError(f"undo_delay: {S} steps are fewer than the largest delay {max(delays)}")
    return torch.stack([steps[..., q, d:d + T] for q, d in enumerate(delays)], dim=-2)
