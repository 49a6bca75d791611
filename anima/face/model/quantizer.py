"""Multi-scale residual motion quantiser (ARTalk-style) over 100-frame (4 s) windows.

A window of motion (normalised 50-D frames) is encoded frame by frame into 64-D latents
(layer-normalised, which keeps them from drifting away from the codes: without it the EMA codebook
lost track of the encoder after ~500 steps). For each
scale s in [1, 5, 25, 50, 100] the *residual* latent is area-downsampled to s segments (the mean of
each 100/s frames), each segment is replaced by its nearest entry of one shared 256 x 64 codebook,
the codes are upsampled back to 100 frames and subtracted from the residual. The window's latent is
the sum over scales, so a window is 1 + 5 + 25 + 50 + 100 = 181 tokens, coarse to fine.

Upsampling repeats a segment's code over its frames (nearest), where ARTalk interpolates: that
keeps decoding causal, so the latent of frame f needs only codes whose segment starts at or before
f, and a streaming generator can emit the finest codes frame by frame. The decoder is per frame
plus a causal 3-tap convolution over the latents.

The codebook learns by exponential moving averages (k-means style) with dead codes restarted on
random residuals; encoder and decoder learn by reconstruction with a commitment loss. Motion is
normalised by the corpus mean / std stored in the module (buffers), so a checkpoint is self-contained.

    python -m anima.face.training.train quantizer --corpus out/face_corpus --out out/face/quantizer
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class QuantizerConfig:
    motion_dim: int = 50  # anima.face.motion.MOTION_DIM
    code_dim: int = 64  # latent / code size
    codebook_size: int = 256
    window: int = 100  # frames per window (4 s at 25 fps)
    scales: tuple[int, ...] = (1, 5, 25, 50, 100)  # segments per window at each scale, coarse to fine
    hidden: int = 256  # encoder / decoder width
    beta: float = 0.5  # commitment loss weight
    latent_norm: bool = True  # layer-normalise the encoder output (keeps latents from drifting away from the codes)
    ema_decay: float = 0.99  # codebook EMA
    dead_code_threshold: float = 0.05  # EMA usage below this restarts a code on a random residual

    def __post_init__(self) -> None:
        self.scales = tuple(int(s) for s in self.scales)
        bad = [s for s in self.scales if self.window % s]
        if bad or list(self.scales) != sorted(self.scales) or self.scales[-1] != self.window:
            raise ValueError(f"QuantizerConfig: scales {self.scales} must increase, divide the window "
                             f"{self.window} and end at it")

    @property
    def tokens_per_window(self) -> int:
        return sum(self.scales)


class MultiScaleQuantizer(nn.Module):
    """Encoder -> multi-scale residual VQ -> causal decoder; see the module docstring."""

    def __init__(self, config: QuantizerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder = nn.Sequential(
            nn.Linear(c.motion_dim, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.hidden), nn.GELU(),
            nn.Linear(c.hidden, c.code_dim),
        )
        self.decoder_conv = nn.Conv1d(c.code_dim, c.hidden, kernel_size=3)  # causal: left-padded by 2
        self.decoder = nn.Sequential(nn.GELU(), nn.Linear(c.hidden, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.motion_dim))
        self.register_buffer("codebook", torch.randn(c.codebook_size, c.code_dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(c.codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("motion_mean", torch.zeros(c.motion_dim))
        self.register_buffer("motion_std", torch.ones(c.motion_dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    # -- normalisation ----------------------------------------------------------------------------

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor, floor: float = 0.01) -> None:
        self.motion_mean.copy_(mean)
        self.motion_std.copy_(std.clamp_min(floor))

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.motion_std + self.motion_mean

    # -- quantisation -----------------------------------------------------------------------------

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook entry. (..., D) -> (...,)"""
        flat = z.reshape(-1, z.shape[-1])
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.pow(2).sum(1)[None]
        return d.argmin(1).reshape(z.shape[:-1])

    def _check_frames(self, x: torch.Tensor, name: str) -> None:
        if x.ndim != 3 or x.shape[1] % self.config.window:
            raise ValueError(f"{name}: expected (B, T, D) with T a multiple of {self.config.window}, got {tuple(x.shape)}")

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Residual multi-scale quantisation of latents.

        z: (B, T, D), T a multiple of the window. Returns the quantised latent (B, T, D), the codes
        per scale [(B, n_windows * s)], and the pre-quantisation segment means per scale (for EMA).
        """
        self._check_frames(z, "quantize")
        c = self.config
        B, T, D = z.shape
        residual = z.reshape(B * (T // c.window), c.window, D)  # one row per window
        total = torch.zeros_like(residual)
        codes, targets = [], []
        for s in c.scales:
            seg = c.window // s
            r = residual.reshape(-1, s, seg, D).mean(2)  # (Bw, s, D) area downsample
            idx = self.nearest(r)  # (Bw, s)
            up = self.codebook[idx].repeat_interleave(seg, dim=1)  # (Bw, window, D) nearest upsample
            total = total + up
            residual = residual - up
            codes.append(idx.reshape(B, -1))
            targets.append(r.reshape(B, -1, D))
        return total.reshape(B, T, D), codes, targets

    def latents_from_codes(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Codes per scale [(B, n_windows * s)] -> summed latents (B, T, D)."""
        c = self.config
        total = 0
        for s, idx in zip(c.scales, codes, strict=True):
            total = total + self.codebook[idx].repeat_interleave(c.window // s, dim=1)
        return total

    def decode_latents(self, zq: torch.Tensor) -> torch.Tensor:
        """(B, T, D) latents -> (B, T, motion_dim) normalised motion (causal in T)."""
        h = self.decoder_conv(F.pad(zq.transpose(1, 2), (2, 0))).transpose(1, 2)  # (B, T, hidden)
        return self.decoder(h)

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised motion (B, T, motion_dim) -> latents (B, T, code_dim) before quantisation."""
        z = self.encoder(x)
        return F.layer_norm(z, (self.config.code_dim,)) if self.config.latent_norm else z

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised motion (B, T, motion_dim) -> codes per scale."""
        return self.quantize(self.encode_latents(x))[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruct normalised motion (B, T, motion_dim); returns (reconstruction, losses)."""
        self._check_frames(x, "MultiScaleQuantizer")
        z = self.encode_latents(x)  # (B, T, D)
        if self.training and not bool(self.initialized):
            self._init_codebook(z.detach())
        zq, codes, targets = self.quantize(z)
        commit = F.mse_loss(z, zq.detach())
        zq = z + (zq - z).detach()  # straight-through
        recon = self.decode_latents(zq)
        loss_recon = F.mse_loss(recon, x)
        if self.training:
            self._ema_update(codes, targets)
        return recon, {"loss": loss_recon + self.config.beta * commit, "recon": loss_recon, "commit": commit}

    @torch.no_grad()
    def _init_codebook(self, z: torch.Tensor) -> None:
        """Start the codes on residuals of the first batch, taken from every scale."""
        _, _, targets = self.quantize(z)
        vec = torch.cat([t.reshape(-1, self.config.code_dim) for t in targets])
        pick = torch.randint(0, vec.shape[0], (self.config.codebook_size,))
        self.codebook.copy_(vec[pick])
        self.ema_sum.copy_(vec[pick])
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, codes: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
        c = self.config
        idx = torch.cat([i.reshape(-1) for i in codes])
        vec = torch.cat([t.reshape(-1, c.code_dim) for t in targets]).detach()
        onehot = F.one_hot(idx, c.codebook_size).type_as(vec)  # (N, K)
        self.ema_count.mul_(c.ema_decay).add_(onehot.sum(0), alpha=1 - c.ema_decay)
        self.ema_sum.mul_(c.ema_decay).add_(onehot.T @ vec, alpha=1 - c.ema_decay)
        n = self.ema_count.sum()
        count = (self.ema_count + 1e-5) / (n + c.codebook_size * 1e-5) * n  # Laplace smoothing
        self.codebook.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < c.dead_code_threshold
        if dead.any():
            pick = torch.randint(0, vec.shape[0], (int(dead.sum()),), device=vec.device)
            self.codebook[dead] = vec[pick]
            self.ema_sum[dead] = vec[pick]
            self.ema_count[dead] = 1.0

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Encode, quantise and decode normalised motion (B, T, motion_dim) without training effects."""
        return self.decode_latents(self.quantize(self.encode_latents(x))[0])
