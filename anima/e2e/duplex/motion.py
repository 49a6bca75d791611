"""The causal motion codec (Body of Her, paper section 3.2): face + body frames <-> per-frame continuous latents.

The decoder G predicts the agent's motion as continuous latent tokens with a MAR diffusion head, two
frames per 80 ms step. This module makes those latents: a causal temporal transformer encodes each
25 fps frame into one latent (no temporal compression) and a second one decodes the latents back to
frames, so the runtime turns every step's two sampled latents into face + body at once.

Frame layout (375 dims, raw units, 25 fps)::

    [face 112 (anima/face/params.py)][body263 263 (HumanML3D-263, resampled from 20 to 25 fps)]

Both transformers are causal with a bounded reach: each attention layer sees the current frame and
the ``window - 1`` before it (relative positions by RoPE over the keys in view, so nothing depends
on how long a stream has run), and ``encode_step``/``decode_step`` keep a per-layer KV cache of
``window - 1`` frames in a state the caller owns. Streaming one frame at a time gives what the
offline ``encode``/``decode`` give for the whole sequence. Stacking layers widens the reach: with L
layers an output depends on the last ``L * (window - 1) + 1`` frames.

Latents: the encoder's output is RMS-normalised per frame (so the training noise of std
``latent_noise`` has a fixed scale the encoder cannot grow past), then standardised per dimension
by ``latent_mean``/``latent_std``, measured on the training set after training, so ``encode`` gives
roughly zero-mean, unit-variance latents (what G's diffusion head assumes) and ``decode`` undoes it.

    codec = MotionCodec.from_pretrained("out/duplex/runs/motion")
    z = codec.encode(torch.from_numpy(frame_features(face, body263))[None])   # (1, T, 32)
    state = codec.new_state()
    frames = codec.decode_step(state, z_step)                                 # (B, 2, 375) per 80 ms step
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anima.e2e.mot.behaviour import BODY_DIM, FACE_DIM, STD_FLOOR, resample

FRAME_DIM = FACE_DIM + BODY_DIM  # 375
FPS, BODY_FPS = 25, 20
KIND = "motion_codec"


def frame_features(face: np.ndarray, body263: np.ndarray) -> np.ndarray:
    """(T, 112) face at 25 fps + (T20, 263) body at 20 fps -> (T, 375) codec frames at 25 fps."""
    face, body263 = np.asarray(face, np.float32), np.asarray(body263, np.float32)
    if face.ndim != 2 or face.shape[1] != FACE_DIM:
        raise ValueError(f"frame_features: face must be (frames, {FACE_DIM}) at 25 fps, got {face.shape}")
    if body263.ndim != 2 or body263.shape[1] != BODY_DIM:
        raise ValueError(f"frame_features: body263 must be (frames, {BODY_DIM}) at 20 fps, got {body263.shape}")
    body = resample(body263, BODY_FPS, FPS, frames=face.shape[0])  # (T, 263)
    return np.concatenate([face, body], axis=1)  # (T, 375)


def split_frame(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 375) codec frames -> face (T, 112) at 25 fps, body263 (round(0.8 T), 263) at 20 fps."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != FRAME_DIM:
        raise ValueError(f"split_frame: expected (frames, {FRAME_DIM}), got {x.shape}")
    return x[:, :FACE_DIM], resample(x[:, FACE_DIM:], FPS, BODY_FPS)


# -- the transformer ---------------------------------------------------------------------------------


def rope_tables(length: int, head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (length, head_dim / 2) for positions 0..length-1 (angles in float64: exact at any length)."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv[None]
    return angles.cos().float().to(device), angles.sin().float().to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, L, hd) by per-position angles (L, hd / 2), pairs (even, odd)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, block: int = 256) -> torch.Tensor:
    """Query i (the last n of L key positions) sees keys j with 0 <= pos_i - j < window.

    q (B, H, n, hd), k and v (B, H, L, hd) -> (B, H, n, hd). Query blocks of ``block`` see only the keys
    their band reaches, so a long offline sequence costs O(n * (block + window)), not O(n * L).
    """
    n, L = q.shape[2], k.shape[2]
    start = L - n  # position of the first query
    out = []
    for a in range(0, n, block):
        b = min(n, a + block)
        k0 = max(0, start + a - window + 1)
        qpos = torch.arange(start + a, start + b, device=q.device)[:, None]
        kpos = torch.arange(k0, start + b, device=q.device)[None]
        mask = (kpos <= qpos) & (kpos > qpos - window)  # (b - a, keys): never empty (the query's own frame)
        out.append(F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, k0:start + b], v[:, :, k0:start + b], attn_mask=mask))
    return torch.cat(out, dim=2)


class Attention(nn.Module):
    def __init__(self, config: MotionCodecConfig) -> None:
        super().__init__()
        self.n_head, self.window = config.n_head, config.window
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x (B, n, C) new frames; past: the raw (unrotated) keys and values of up to window - 1 earlier
        frames. Returns (B, n, C) and the keys/values to keep (the last window - 1)."""
        B, n, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, n, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, n, hd)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, H, L, hd)
        L = k.shape[2]
        cos, sin = rope_tables(L, C // self.n_head, x.device)  # positions 0..L-1 over the keys in view
        y = banded_attention(apply_rope(q, cos[L - n:], sin[L - n:]), apply_rope(k, cos, sin), v, self.window)
        y = y.transpose(1, 2).reshape(B, n, C)
        keep = max(0, L - (self.window - 1))
        return self.proj(y), (k[:, :, keep:], v[:, :, keep:])


class Block(nn.Module):
    def __init__(self, config: MotionCodecConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = Attention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, 4 * config.d_model), nn.GELU(),
                                 nn.Linear(4 * config.d_model, config.d_model))

    def forward(self, x: torch.Tensor, past=None):
        y, kv = self.attn(self.ln1(x), past)
        x = x + y
        return x + self.mlp(self.ln2(x)), kv


# -- the codec ---------------------------------------------------------------------------------------


@dataclass
class MotionCodecConfig:
    frame_dim: int = FRAME_DIM  # face 112 + body263 263 per 25 fps frame
    latent: int = 32  # one continuous latent of this size per frame (what G's diffusion head samples)
    d_model: int = 128
    n_layer_enc: int = 2  # encoder transformer layers
    n_layer_dec: int = 2  # decoder transformer layers
    n_head: int = 4
    window: int = 50  # each attention layer reaches back this many frames (itself included): bounded streaming state
    latent_noise: float = 0.1  # std of the noise on the (RMS-normalised) latents in training: the decoder tolerates sampled ones
    velocity_weight: float = 1.0  # weight of the first-difference (velocity) term of the loss

    def __post_init__(self) -> None:
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(f"MotionCodecConfig: d_model {self.d_model} must split into {self.n_head} heads of even size")
        if self.window < 1:
            raise ValueError(f"MotionCodecConfig: window must be >= 1, got {self.window}")


@dataclass
class MotionCodecState:
    """Streaming state of one batch of streams: each layer's KV cache (at most window - 1 frames)."""

    encoder: list[tuple[torch.Tensor, torch.Tensor] | None]
    decoder: list[tuple[torch.Tensor, torch.Tensor] | None]
    batch: int | None = None  # fixed by the first step
    encoded: int = 0  # frames encoded so far
    decoded: int = 0  # latents decoded so far

    def clone(self) -> MotionCodecState:
        """A snapshot: stepping the copy leaves this one as it is."""
        return dataclasses.replace(self, encoder=list(self.encoder), decoder=list(self.decoder))


class MotionCodec(nn.Module):
    """Causal encoder (B, T, 375) -> (B, T, latent) and decoder back; offline or streamed."""

    def __init__(self, config: MotionCodecConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.frame_dim))  # raw-frame normalisation (training set)
        self.register_buffer("std", torch.ones(config.frame_dim))
        self.register_buffer("latent_mean", torch.zeros(config.latent))  # latent standardisation (after training)
        self.register_buffer("latent_std", torch.ones(config.latent))
        d = config.d_model
        self.enc_in = nn.Linear(config.frame_dim, d)
        self.encoder = nn.ModuleList(Block(config) for _ in range(config.n_layer_enc))
        self.enc_ln = nn.LayerNorm(d)
        self.to_latent = nn.Linear(d, config.latent)
        self.dec_in = nn.Linear(config.latent, d)
        self.decoder = nn.ModuleList(Block(config) for _ in range(config.n_layer_dec))
        self.dec_ln = nn.LayerNorm(d)
        self.to_frame = nn.Linear(d, config.frame_dim)

    # -- the two transformers (normalised units) ---------------------------------------------------

    def _encode(self, xn: torch.Tensor, caches: list | None = None) -> tuple[torch.Tensor, list]:
        """Normalised frames (B, n, 375) -> RMS-normalised latents (B, n, latent), new caches."""
        h = self.enc_in(xn)  # (B, n, C)
        new = []
        for i, block in enumerate(self.encoder):
            h, kv = block(h, None if caches is None else caches[i])
            new.append(kv)
        z = self.to_latent(self.enc_ln(h))  # (B, n, latent)
        return z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + 1e-6), new

    def _decode(self, zr: torch.Tensor, caches: list | None = None) -> tuple[torch.Tensor, list]:
        """RMS-normalised latents (B, n, latent) -> normalised frames (B, n, 375), new caches."""
        h = self.dec_in(zr)
        new = []
        for i, block in enumerate(self.decoder):
            h, kv = block(h, None if caches is None else caches[i])
            new.append(kv)
        return self.to_frame(self.dec_ln(h)), new

    def _check(self, name: str, x: torch.Tensor, dim: int) -> None:
        if not torch.is_tensor(x):
            raise TypeError(f"MotionCodec.{name}: expected a torch tensor (B, T, {dim}), got {type(x).__name__}")
        if x.ndim != 3 or x.shape[-1] != dim:
            raise ValueError(f"MotionCodec.{name}: expected (B, T, {dim}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"MotionCodec.{name}: expected floating point values, got {x.dtype}")

    # -- offline -----------------------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Raw frames (B, T, 375) -> standardised latents (B, T, latent); frame t sees only frames <= t."""
        self._check("encode", x, self.config.frame_dim)
        zr, _ = self._encode((x - self.mean) / self.std)
        return (zr - self.latent_mean) / self.latent_std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised latents (B, T, latent) -> raw frames (B, T, 375); frame t sees only latents <= t."""
        self._check("decode", z, self.config.latent)
        xn, _ = self._decode(z * self.latent_std + self.latent_mean)
        return xn * self.std + self.mean

    # -- streaming ---------------------------------------------------------------------------------

    def new_state(self) -> MotionCodecState:
        """A fresh streaming state (the caller owns it; one per batch of streams)."""
        return MotionCodecState(encoder=[None] * self.config.n_layer_enc, decoder=[None] * self.config.n_layer_dec)

    def _check_state(self, name: str, state: MotionCodecState, x: torch.Tensor) -> None:
        if not isinstance(state, MotionCodecState):
            raise TypeError(f"MotionCodec.{name}: state must come from codec.new_state(), got {type(state).__name__}")
        if state.batch is not None and x.shape[0] != state.batch:
            raise RuntimeError(f"MotionCodec.{name}: this state streams a batch of {state.batch}, got {x.shape[0]}; "
                               "use a new_state() per batch")

    def encode_step(self, state: MotionCodecState, x: torch.Tensor) -> torch.Tensor:
        """The next raw frames (B, n, 375) of a stream -> their latents (B, n, latent), as ``encode`` gives them."""
        self._check("encode_step", x, self.config.frame_dim)
        self._check_state("encode_step", state, x)
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.config.latent)
        zr, state.encoder = self._encode((x - self.mean) / self.std, state.encoder)
        state.batch, state.encoded = x.shape[0], state.encoded + x.shape[1]
        return (zr - self.latent_mean) / self.latent_std

    def decode_step(self, state: MotionCodecState, z: torch.Tensor) -> torch.Tensor:
        """The next latents (B, n, latent) of a stream -> their raw frames (B, n, 375), as ``decode`` gives them."""
        self._check("decode_step", z, self.config.latent)
        self._check_state("decode_step", state, z)
        if z.shape[1] == 0:
            return z.new_zeros(z.shape[0], 0, self.config.frame_dim)
        xn, state.decoder = self._decode(z * self.latent_std + self.latent_mean, state.decoder)
        state.batch, state.decoded = z.shape[0], state.decoded + z.shape[1]
        return xn * self.std + self.mean

    # -- training ----------------------------------------------------------------------------------

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction loss of raw frames (B, T, 375): MSE of the normalised frame + velocity_weight x MSE of
        its first difference in time. In training mode the latents get Gaussian noise of std latent_noise."""
        self._check("loss", x, self.config.frame_dim)
        xn = (x - self.mean) / self.std  # (B, T, 375)
        zr, _ = self._encode(xn)
        if self.training and self.config.latent_noise > 0:
            zr = zr + self.config.latent_noise * torch.randn_like(zr)
        rec, _ = self._decode(zr)
        mse = F.mse_loss(rec, xn)
        vel = F.mse_loss(rec.diff(dim=1), xn.diff(dim=1)) if x.shape[1] > 1 else torch.zeros((), device=x.device)
        loss = mse + self.config.velocity_weight * vel
        return loss, {"loss": loss.item(), "mse": mse.item(), "vel": vel.item()}

    def set_normalisation(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> None:
        """Raw-frame statistics (375,) of the training set; std is floored at STD_FLOOR."""
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"set_normalisation: expected ({self.config.frame_dim},) each, got {tuple(mean.shape)}, {tuple(std.shape)}")
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=STD_FLOOR))

    def set_latent_stats(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> None:
        """Per-dimension statistics (latent,) of the encoder's RMS-normalised latents over the training set."""
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != self.latent_mean.shape or std.shape != self.latent_std.shape:
            raise ValueError(f"set_latent_stats: expected ({self.config.latent},) each, got {tuple(mean.shape)}, {tuple(std.shape)}")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp(min=STD_FLOOR))

    @torch.no_grad()
    def raw_latents(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's latents before standardisation (B, T, latent): what ``set_latent_stats`` measures."""
        self._check("raw_latents", x, self.config.frame_dim)
        return self._encode((x - self.mean) / self.std)[0]

    # -- checkpoints -------------------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "model": dataclasses.asdict(self.config)}

    def save(self, directory: str | Path, step: int = 0, extra: dict[str, Any] | None = None) -> Path:
        """Weights and config to ``directory`` (safetensors + JSON, atomically; ``anima.checkpoint``)."""
        from anima.checkpoint import save_checkpoint

        return save_checkpoint(directory, self, self.config_dict(), step=step, extra=extra)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> MotionCodec:
        """A codec (eval mode) from a checkpoint folder (a training run's or a saved one); CheckpointError if
        the folder is missing, corrupt, not a motion codec or does not match its config."""
        from anima.checkpoint import CheckpointError, load_weights, read_config

        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError(f"{directory}: no such motion codec checkpoint folder")
        cfg = read_config(directory).get("config")
        if not isinstance(cfg, dict) or cfg.get("kind") != KIND or not isinstance(cfg.get("model"), dict):
            kind = cfg.get("kind") if isinstance(cfg, dict) else None
            raise CheckpointError(f"{directory}: not a motion codec checkpoint (config kind {kind!r}, expected {KIND!r})")
        fields = {f.name for f in dataclasses.fields(MotionCodecConfig)}
        unknown = sorted(set(cfg["model"]) - fields)
        if unknown:
            raise CheckpointError(f"{directory}: config has fields this code does not know: {unknown}")
        try:
            config = MotionCodecConfig(**cfg["model"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{directory}: bad motion codec config ({exc})") from None
        model = cls(config)
        load_weights(directory, model)
        if not all(math.isfinite(v) for v in torch.cat([model.std, model.latent_std]).tolist()):
            raise CheckpointError(f"{directory}: normalisation statistics are not finite")
        return model.eval()
