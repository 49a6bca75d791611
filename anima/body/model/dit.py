"""The FloodDiffusion denoiser: a small DiT over VAE latent tokens with per-token noise and text.

    model = MotionDiT(DiTConfig())
    v = model(z, level, text, has_text, pos, valid)    # (B, L, 4) predicted velocity x - eps

The input sequence is the visible history (clean tokens, level 0) followed by the tokens being
denoised, at most ``history + max_active`` of them, so a step costs the same however long the
stream has run. Attention is bidirectional over the whole sequence (the paper: causal attention
inside the window costs a lot). Each token carries its own conditioning vector: an embedding of
its noise level plus the projected MiniLM embedding of the prompt active at that token, or a
learned null embedding where ``has_text`` is False (classifier-free guidance drops the text of
whole examples in training). The conditioning enters every block through adaLN (shift, scale,
gate), per token. Positions are relative to the window: the first token being denoised sits at
index ``history``, history tokens before it.

The same network serves the two baselines (``DiTConfig.for_method``): only the noise schedule
and the number of tokens denoised at once differ (``anima.body.model.schedule``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from anima.body.text import TEXT_DIM


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class LevelEmbedding(nn.Module):
    """Sinusoidal features of the noise level (x1000, as a diffusion timestep) -> MLP."""

    def __init__(self, width: int, freq_dim: int = 128) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, level: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, width)
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=level.device) / half)
        angles = level.float()[..., None] * 1000.0 * freqs
        return self.mlp(torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1))


class Attention(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.proj = nn.Linear(config.width, config.width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, D), bidirectional
        return self.proj(y.transpose(1, 2).reshape(B, L, C))


class Block(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        w = config.width
        self.norm1 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(w, config.mlp_ratio * w), nn.GELU(approximate="tanh"), nn.Linear(config.mlp_ratio * w, w))
        self.modulation = nn.Linear(w, 6 * w)  # per-token adaLN from the conditioning vector

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)  # 6 x (B, L, W)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), mask)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


@dataclass
class DiTConfig:
    latent_dim: int = 4  # VAE latent channels
    text_dim: int = TEXT_DIM  # MiniLM sentence embedding
    width: int = 128  # transformer width
    depth: int = 6  # blocks
    heads: int = 4  # attention heads
    mlp_ratio: int = 4  # MLP hidden = mlp_ratio * width
    history: int = 20  # clean history tokens visible to a step (fixed: constant cost per step)
    max_active: int = 6  # most tokens denoised in one step (n_s + 1 for the triangular schedule)
    n_s: int = 5  # streaming step size of the triangular schedule (tokens per unit time)
    denoise_steps: int = 10  # Euler updates each token receives (dt = 1 / denoise_steps)
    chunk: int = 10  # tokens per chunk (chunk baseline)
    p_uncond: float = 0.1  # probability of dropping the text of a training example (CFG)
    guidance: float = 2.5  # classifier-free guidance weight w: v = w v_c - (w - 1) v_null
    guidance_floor: float = 0.5  # no guidance for tokens at noise level <= this (limited interval)
    level_power: float = 1.0  # inference levels = linear ** this (> 1: finer steps near clean; schedule.py)

    @classmethod
    def for_method(cls, method: str, **overrides) -> DiTConfig:
        """The config of "flood", "chunk" or "ar": same network, different active-token count, and
        each method's smoothest level spacing among uniform and squared (docs/body.md: FloodDiffusion
        2, the baselines 1)."""
        base = cls(**overrides)
        match method:
            case "flood":
                return cls(**{**asdict(base), "level_power": 2.0, **overrides})
            case "chunk":
                return cls(**{**asdict(base), "max_active": base.chunk, **overrides})
            case "ar":
                return cls(**{**asdict(base), "max_active": 1, **overrides})
        raise KeyError(f"unknown body method {method!r}; expected one of flood, chunk, ar")


class MotionDiT(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.input = nn.Linear(config.latent_dim, w)
        self.pos = nn.Embedding(config.history + config.max_active, w)
        self.level_embed = LevelEmbedding(w)
        self.text_proj = nn.Sequential(nn.Linear(config.text_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.null_text = nn.Parameter(torch.zeros(w))
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.depth)])
        self.final_norm = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(w, 2 * w)
        self.output = nn.Linear(w, config.latent_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.pos.weight, std=0.02)
        # adaLN-Zero: every block starts as the identity, the output as zero.
        for block in self.blocks:
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)
        for m in (self.final_modulation, self.output):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor, level: torch.Tensor, text: torch.Tensor, has_text: torch.Tensor,
                pos: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the velocity x - eps of every token.

        z (B, L, latent) noisy latents (history clean); level (B, L) noise levels in [0, 1];
        text (B, L, 384) prompt embedding per token; has_text (B, L) bool (False: null prompt);
        pos (B, L) positions in [0, history + max_active); valid (B, L) bool, False on padding.
        Returns (B, L, latent).
        """
        B, L, _ = z.shape
        c = self.config
        if L > c.history + c.max_active:
            raise ValueError(f"MotionDiT: {L} tokens > history + max_active = {c.history + c.max_active}")
        if text.shape != (B, L, c.text_dim):
            raise ValueError(f"MotionDiT: text must be (B, L, {c.text_dim}) = {(B, L, c.text_dim)}, got {tuple(text.shape)}")
        x = self.input(z) + self.pos(pos)  # (B, L, W)
        text_c = torch.where(has_text[..., None], self.text_proj(text), self.null_text)  # (B, L, W)
        cond = F.silu(self.level_embed(level) + text_c)  # (B, L, W)
        mask = None
        if valid is not None and not bool(valid.all()):
            mask = valid[:, None, None, :]  # (B, 1, 1, L): every query sees the valid keys
        for block in self.blocks:
            x = block(x, cond, mask)
        shift, scale = self.final_modulation(cond).chunk(2, dim=-1)
        return self.output(modulate(self.final_norm(x), shift, scale))  # (B, L, latent)

    def config_dict(self) -> dict:
        return asdict(self.config)
