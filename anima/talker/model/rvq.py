"""Residual vector quantisation with factorised, l2-normalised codes (the DAC recipe).

Each stage projects its input to a low dimension (``codebook_dim``, ~8), l2-normalises it, picks
the nearest (cosine) of ``codebook_size`` l2-normalised entries, and projects the code back up.
Looking codes up in a tiny normalised space keeps most of a 1024-entry codebook in use even on a
small corpus; codes nobody picked for a while are restarted on random current inputs (dead-code
restart) during training. Gradients pass straight through the rounding; the commitment and
codebook terms are the usual VQ-VAE pair, measured in the normalised low-dimensional space.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class FactorizedVQ(nn.Module):
    """One codebook: ``dim`` -> ``codebook_dim`` (normalised) -> nearest entry -> ``dim``."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int, dead_after: float = 0.01) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.dead_after = dead_after  # restart a code whose running usage share falls below this / size
        self.in_proj = nn.Linear(dim, codebook_dim)
        self.out_proj = nn.Linear(codebook_dim, dim)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        self.register_buffer("usage", torch.ones(codebook_size))  # running count of picks per step (EMA)

    def _lookup(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, dim) -> normalised projection (B, T, d) and codes (B, T)."""
        z = F.normalize(self.in_proj(x), dim=-1)  # (B, T, d)
        book = F.normalize(self.codebook.weight, dim=-1)  # (K, d)
        codes = (z @ book.t()).argmax(-1)  # (B, T): max cosine == min l2 distance on the sphere
        return z, codes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, dim) -> (quantised (B, T, dim), codes (B, T), commitment loss, codebook loss)."""
        z, codes = self._lookup(x)
        zq = F.normalize(self.codebook(codes), dim=-1)  # (B, T, d)
        commitment = F.mse_loss(z, zq.detach())
        codebook = F.mse_loss(zq, z.detach())
        if self.training:
            self._restart_dead(z.detach(), codes)
        zq = z + (zq - z).detach()  # straight-through
        return self.out_proj(zq), codes, commitment, codebook

    @torch.no_grad()
    def _restart_dead(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """Move codes whose running usage fell below ``dead_after`` x the uniform share onto random inputs.

        The dead set is read from ``usage`` *before* this batch's counts are added: under DDP the
        buffer was just broadcast from rank 0, so every rank takes the same decision, and the new
        rows are then broadcast from rank 0 so the replicas stay identical.
        """
        expected = codes.numel() / self.codebook_size
        dead = (self.usage < self.dead_after * expected).nonzero().flatten()
        counts = torch.bincount(codes.flatten(), minlength=self.codebook_size).float()
        self.usage.mul_(0.99).add_(counts, alpha=0.01)
        if dead.numel() == 0:
            return
        pool = z.reshape(-1, z.shape[-1])
        pick = torch.randint(0, pool.shape[0], (dead.numel(),), device=pool.device)
        self.codebook.weight.data[dead] = pool[pick] + 0.01 * torch.randn_like(pool[pick])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(self.codebook.weight.data, 0)
        self.usage[dead] = expected  # give the new code time to be picked

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._lookup(x)[1]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T) -> (B, T, dim)."""
        return self.out_proj(F.normalize(self.codebook(codes), dim=-1))


class ResidualVQ(nn.Module):
    """``num_codebooks`` FactorizedVQ stages, each quantising what the previous ones left."""

    def __init__(self, dim: int, num_codebooks: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.stages = nn.ModuleList(FactorizedVQ(dim, codebook_size, codebook_dim) for _ in range(num_codebooks))

    def forward(self, x: torch.Tensor, n_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """x (B, T, dim) -> (quantised (B, T, dim), codes (B, Q, T), {"commitment", "codebook"}).

        ``n_q`` < num_codebooks uses only the first ``n_q`` stages (quantiser dropout); the codes
        of the unused stages are still computed (without gradients) so the shape stays (B, Q, T).
        """
        n_q = self.num_codebooks if n_q is None else n_q
        residual, out = x, torch.zeros_like(x)
        codes, commitment, codebook = [], x.new_zeros(()), x.new_zeros(())
        for i, stage in enumerate(self.stages):
            if i < n_q:
                q, c, l_commit, l_book = stage(residual)
                commitment, codebook = commitment + l_commit, codebook + l_book
                out = out + q
                residual = residual - q.detach()
            else:
                with torch.no_grad():
                    c = stage.encode(residual)
                    residual = residual - stage.decode(c)
            codes.append(c)
        return out, torch.stack(codes, 1), {"commitment": commitment, "codebook": codebook}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, dim) -> codes (B, Q, T) int64."""
        codes = []
        for stage in self.stages:
            c = stage.encode(x)
            x = x - stage.decode(c)
            codes.append(c)
        return torch.stack(codes, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, Q, T) -> (B, T, dim): the sum of every stage's code vector."""
        return sum(stage.decode(codes[:, i]) for i, stage in enumerate(self.stages))
