"""The duplex decoder G (Body of Her, paper 4.1): one transformer writes the agent's next step.

One position per 80 ms step i (one 12.5 Hz speech frame, carrying the two 25 fps motion frames of
the same instant). Its input is the sum of what has happened up to the step and the controls for it::

    agent audio   row i-1 of the agent's delayed code stream (delay.py), one table per codebook
    user audio    the user's frame i-1 (all 8 codebooks; the user's frame i is still being spoken)
    agent motion  the motion codec's latents of step i-1 (2 frames x latent), or the empty token
    user motion   the slot for the user's video/motion (V^h; our corpus has none: always empty)
    prompt        a MiniLM embedding of the text prompt for step i, or the empty token
    trajectory    the agent's joint velocities for step i (2 frames x 22 x 3), or the empty token
    identity      a learnable embedding per character, or the empty one

and its output is row i of the agent's codes (a categorical head per codebook, tied to the
embedding tables as in the Talker's TTS) and the motion latents of step i, all of a step's frames
sampled together by a MAR-style diffusion head (an MLP of adaLN blocks conditioned on the
transformer output). Streaming keeps a rolling window of ``context`` steps in a caller-owned
state (``model.new_state()``); positions are rotary, so the window slides without re-encoding.

The blocks have the Talker TTS's layout and names, so ``init_from_tts`` copies its transformer,
its audio tables and its final norm where shapes allow (the paper starts G from an LLM).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anima.talker.model.delay import check_delays, delays_for
from anima.talker.model.kodama_tts import RotaryEmbedding

# ---------------------------------------------------------------------------------------------
# Config and state


@dataclass
class DuplexConfig:
    n_codebooks: int = 8  # codes per 12.5 Hz frame (0-1 semantic, 2-7 acoustic)
    codebook_size: int = 1024
    delay: str = "moshi"  # semantic codebooks at 0, acoustic at 1: a frame is playable one step after it starts
    n_semantic: int = 2
    frames_per_step: int = 2  # 25 fps motion frames per 80 ms step
    latent: int = 32  # motion codec latent per frame (anima/e2e/duplex/motion.py)
    share_tables: bool = True  # the user's codes read the agent's tables through a learned d x d map (halves the size)
    d_user_motion: int = 0  # per-step size of the user's motion features (0: the corpus has none, the slot stays empty)
    d_prompt: int = 384  # text prompt embedding (anima.embed MiniLM)
    d_traj: int = 66  # joint velocities per frame (22 joints x 3)
    traj_scale: float = 1.0  # joint velocities are divided by this (their std in the training data)
    n_identity: int = 4  # learnable identities; index n_identity = empty
    identities: tuple[str, ...] = ()  # the character each identity index stands for (persona keys)
    n_layer: int = 6
    n_head: int = 4
    d_model: int = 256
    dropout: float = 0.0
    context: int = 250  # steps the model attends to (20 s); training windows are at most this long
    diff_depth: int = 3  # adaLN residual blocks of the diffusion head
    diff_width: int = 192
    diff_mul: int = 4  # noise draws per step in training (MAR's diffusion batch multiplier)
    sample_steps: int = 10  # DDIM steps at inference

    @property
    def delays(self) -> tuple[int, ...]:
        return delays_for(self.delay, self.n_codebooks, self.n_semantic)

    @property
    def pad(self) -> int:  # an empty slot of the delayed stream
        return self.codebook_size

    @property
    def start(self) -> int:  # the row before the first step
        return self.codebook_size + 1

    @property
    def motion_dim(self) -> int:  # latents of one step
        return self.frames_per_step * self.latent

    @classmethod
    def preset(cls, name: str, **overrides) -> DuplexConfig:
        """``tiny`` (tests) or ``small`` (the shipped size: the Talker TTS's transformer shape)."""
        match name:
            case "tiny":
                base = dict(n_layer=2, n_head=2, d_model=64, codebook_size=64, latent=8, d_prompt=16, context=32,
                            diff_depth=2, diff_width=64, diff_mul=2, sample_steps=4)
            case "small":
                base = {}
            case _:
                raise ValueError(f"unknown config {name!r}; choose tiny or small")
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


def config_dict(config: DuplexConfig) -> dict:
    """What a checkpoint's config.json holds under "config"."""
    return {"kind": "duplex", "model": config.to_dict()}


class WindowCache:
    """One layer's keys and values for the last ``size`` steps (older ones fall out of the window)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.k, self.v = k[:, :, -self.size:], v[:, :, -self.size:]
        return k, v


@dataclass
class DuplexState:
    """Everything a running stream carries from one step to the next (``model.new_state(batch)``)."""

    layers: list[WindowCache]
    agent_row: torch.Tensor  # (B, K) the row written last (inputs of the next step)
    user_frame: torch.Tensor  # (B, K) the user's last frame fed (pad = none yet)
    motion: torch.Tensor | None = None  # (B, frames_per_step * latent) the motion written last
    steps: int = 0  # steps done (the rotary offset)
    rows: list[torch.Tensor] = field(default_factory=list)  # the last max(delay) + 1 rows, to undo the delay


@dataclass
class StepOutput:
    row: torch.Tensor  # (B, K) the delayed row just written
    frame: torch.Tensor | None  # (B, K) the speech frame this row completed (None while the delay fills)
    motion: torch.Tensor  # (B, frames_per_step, latent) the motion latents of this step


# ---------------------------------------------------------------------------------------------
# Transformer (the TTS's block layout and rotary positions: ln1, attn.qkv, attn.proj, ln2, mlp.0, mlp.2)


class Attention(nn.Module):
    def __init__(self, config: DuplexConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.d_model // config.n_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.rope = RotaryEmbedding(self.head_dim)
        self.dropout = config.dropout
        self.context = config.context

    def forward(self, x: torch.Tensor, cache: WindowCache | None, offset: int) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        q, k = self.rope(q, offset), self.rope(k, offset)
        n_old = 0
        if cache is not None:
            n_old = 0 if cache.k is None else cache.k.shape[2]
            k, v = cache.append(k, v)  # (B, H, n_old + T, hd), n_old <= context
        i = torch.arange(T, device=x.device)[:, None] + n_old  # query's index among the keys
        j = torch.arange(k.shape[2], device=x.device)[None, :]
        mask = (j <= i) & (j > i - self.context)  # causal, at most `context` steps back (itself included)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, config: DuplexConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.attn = Attention(config)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, 4 * config.d_model), nn.GELU(),
                                 nn.Linear(4 * config.d_model, config.d_model), nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor, cache: WindowCache | None, offset: int) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, offset)
        return x + self.mlp(self.ln2(x))


# ---------------------------------------------------------------------------------------------
# The MAR diffusion head


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(N,) noise levels in [0, 1] -> (N, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class AdaLNBlock(nn.Module):
    """x + gate * MLP(modulate(LN(x), shift, scale)), the three from the condition (DiT / MAR)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class DiffusionHead(nn.Module):
    """Predicts v for noisy motion latents x_t (N, D) at level t (N,) given the transformer output c (N, d)."""

    def __init__(self, dim_x: int, dim_c: int, width: int, depth: int) -> None:
        super().__init__()
        self.width = width
        self.x_in = nn.Linear(dim_x, width)
        self.t_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.c_in = nn.Linear(dim_c, width)
        self.blocks = nn.ModuleList(AdaLNBlock(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, dim_x)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, c_in: torch.Tensor | None = None) -> torch.Tensor:
        """``c_in``: ``self.c_in(c)`` when the caller has it already (sampling reuses it at every level)."""
        cond = self.t_mlp(timestep_embedding(t, self.width)) + (self.c_in(c) if c_in is None else c_in)  # (N, width)
        h = self.x_in(x)
        for block in self.blocks:
            h = block(h, cond)
        shift, scale = self.ada(cond).chunk(2, dim=-1)
        return self.out(self.norm(h) * (1 + scale) + shift)  # (N, D)


def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine schedule: x_t = alpha x_0 + sigma eps, alpha = cos(pi t / 2), sigma = sin(pi t / 2)."""
    return torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)


# ---------------------------------------------------------------------------------------------
# The decoder


class DuplexDecoder(nn.Module):
    def __init__(self, config: DuplexConfig) -> None:
        super().__init__()
        check_delays(config.delays, config.n_codebooks)
        if config.d_model % config.n_head:
            raise ValueError(f"d_model {config.d_model} does not divide into {config.n_head} heads")
        if config.context < 2:
            raise ValueError(f"context must be at least 2 steps, got {config.context}")
        self.config = config
        K, V, d = config.n_codebooks, config.codebook_size + 2, config.d_model  # + PAD, START
        self.agent_emb = nn.Parameter(torch.randn(K, V, d) * 0.02)  # also the output heads (tied)
        if config.share_tables:  # same codes, another party: the map tells them apart
            self.user_proj = nn.Linear(d, d, bias=True)
        else:
            self.user_emb = nn.Parameter(torch.randn(K, V, d) * 0.02)
        self.motion_in = nn.Linear(config.motion_dim, d)
        self.user_motion_in = nn.Linear(config.d_user_motion, d) if config.d_user_motion else None
        self.prompt_in = nn.Linear(config.d_prompt, d)
        self.traj_in = nn.Linear(config.frames_per_step * config.d_traj, d)
        self.identity = nn.Embedding(config.n_identity + 1, d)
        # the empty tokens of absent inputs: agent motion, user motion, prompt, trajectory
        self.empty = nn.Parameter(torch.randn(4, d) * 0.02)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.diffusion = DiffusionHead(config.motion_dim, d, config.diff_width, config.diff_depth)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by depth
            if name.startswith("blocks.") and (name.endswith("proj.weight") or name.endswith("mlp.2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.share_tables:
            nn.init.eye_(self.user_proj.weight)
        for block in self.diffusion.blocks:  # adaLN-zero: each block starts as the identity
            nn.init.zeros_(block.ada[1].weight)
            nn.init.zeros_(block.ada[1].bias)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # -- inputs ------------------------------------------------------------------------------

    def embed(self, agent_rows: torch.Tensor, user_frames: torch.Tensor, motion: torch.Tensor | None,
              has_motion: torch.Tensor | None, prompt: torch.Tensor | None, has_prompt: torch.Tensor | None,
              traj: torch.Tensor | None, has_traj: torch.Tensor | None, identity: torch.Tensor | None,
              user_motion: torch.Tensor | None = None) -> torch.Tensor:
        """The summed input of each position. ``agent_rows``/``user_frames`` (B, S, K) codes of step i-1
        (START / PAD where none); ``motion`` (B, S, motion_dim) latents of step i-1; ``prompt``
        (B, S, d_prompt); ``traj`` (B, S, frames_per_step * d_traj); ``has_*`` (B, S) bool: False
        puts the empty token there; None for a whole input = empty everywhere. ``identity`` (B,),
        n_identity = empty. Returns (B, S, d)."""
        K = self.config.n_codebooks
        ks = torch.arange(K, device=agent_rows.device)
        if self.config.share_tables:
            user = self.user_proj(self.agent_emb[ks, user_frames].sum(-2))
        else:
            user = self.user_emb[ks, user_frames].sum(-2)
        x = self.agent_emb[ks, agent_rows].sum(-2) + user  # (B, S, d)
        x = x + self._optional(self.motion_in, motion, has_motion, 0, x)
        x = x + self._optional(self.user_motion_in, user_motion, None, 1, x)
        x = x + self._optional(self.prompt_in, prompt, has_prompt, 2, x)
        x = x + self._optional(self.traj_in, traj / self.config.traj_scale if traj is not None else None, has_traj, 3, x)
        if identity is None:
            identity = torch.full(x.shape[:1], self.config.n_identity, dtype=torch.long, device=x.device)
        return x + self.identity(identity)[:, None]

    def _optional(self, proj: nn.Module | None, value: torch.Tensor | None, present: torch.Tensor | None,
                  slot: int, like: torch.Tensor) -> torch.Tensor:
        empty = self.empty[slot].expand_as(like)
        if value is None or proj is None:
            return empty
        out = proj(value)
        return out if present is None else torch.where(present[..., None], out, empty)

    # -- forward -----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, state: DuplexState | None = None) -> torch.Tensor:
        """(B, S, d) embedded inputs -> (B, S, d) hidden states (``state``: append to its window)."""
        offset = state.steps if state is not None else 0
        if state is None and x.shape[1] > self.config.context:
            raise ValueError(f"sequence of {x.shape[1]} steps is longer than the context ({self.config.context})")
        for i, block in enumerate(self.blocks):
            x = block(x, state.layers[i] if state is not None else None, offset)
        if state is not None:
            state.steps += x.shape[1]
        return self.ln_f(x)

    def audio_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., K, V): each codebook's head is its embedding table."""
        return torch.einsum("...d,kvd->...kv", h, self.agent_emb)

    def loss(self, inputs: dict[str, torch.Tensor], targets: torch.Tensor, motion_target: torch.Tensor | None,
             motion_mask: torch.Tensor | None = None, motion_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 3 (NLL of the agent's codes) + eq. 4's denoising term for the motion latents.

        ``inputs``: keyword arguments of ``embed``. ``targets`` (B, S, K): the row each position
        writes, -100 where nothing is to be predicted (the delay's empty slots, padding).
        ``motion_target`` (B, S, motion_dim) latents of step i (None: audio-only stage),
        ``motion_mask`` (B, S) bool which of them count.
        """
        h = self(self.embed(**inputs))  # (B, S, d)
        rows = (targets != -100).any(-1)  # (B, S)
        logits = self.audio_logits(h[rows])  # (M, K, V)
        nll_k = F.cross_entropy(logits.flatten(0, 1), targets[rows].flatten(), ignore_index=-100, reduction="none")
        nll_k = nll_k.view(-1, self.config.n_codebooks)  # (M, K)
        valid = (targets[rows] != -100).float()
        nll = (nll_k * valid).sum() / valid.sum().clamp(min=1)
        ns, d = self.config.n_semantic, (nll_k * valid).detach()
        metrics = {"nll": float(nll.detach()), "semantic_nll": float(d[:, :ns].sum() / valid[:, :ns].sum().clamp(min=1)),
                   "acoustic_nll": float(d[:, ns:].sum() / valid[:, ns:].sum().clamp(min=1))}
        loss = nll
        if motion_target is not None:
            keep = motion_mask if motion_mask is not None else torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
            x0, c = motion_target[keep], h[keep]  # (N, D), (N, d)
            if x0.shape[0]:
                m = self.config.diff_mul
                x0, c = x0.repeat(m, 1), c.repeat(m, 1)
                t = torch.rand(x0.shape[0], device=x0.device)
                alpha, sigma = (a[:, None] for a in alpha_sigma(t))
                eps = torch.randn_like(x0)
                v_pred = self.diffusion(alpha * x0 + sigma * eps, t, c)
                diff = F.mse_loss(v_pred, alpha * eps - sigma * x0)
                loss = loss + motion_weight * diff
                metrics["diffusion"] = float(diff.detach())
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    # -- sampling ----------------------------------------------------------------------------

    @torch.no_grad()
    def sample_motion(self, c: torch.Tensor, steps: int | None = None, temperature: float = 1.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """DDIM (eta 0) from noise: (N, d) conditions -> (N, motion_dim) latents."""
        steps = steps or self.config.sample_steps
        x = torch.randn(c.shape[0], self.config.motion_dim, generator=generator, device=c.device) * temperature
        ts = torch.linspace(1.0, 0.0, steps + 1, device=c.device)
        c_in = self.diffusion.c_in(c)  # (N, width): the same at every level
        for a, b in zip(ts[:-1], ts[1:], strict=True):
            alpha, sigma = alpha_sigma(a)
            v = self.diffusion(x, a.expand(x.shape[0]), c, c_in)
            x0, eps = alpha * x - sigma * v, sigma * x + alpha * v
            alpha_b, sigma_b = alpha_sigma(b)
            x = alpha_b * x0 + sigma_b * eps
        return x

    def new_state(self, batch: int = 1, device: torch.device | str = "cpu") -> DuplexState:
        """A fresh stream (the caller owns it; one per conversation)."""
        K, c = self.config.n_codebooks, self.config
        return DuplexState(layers=[WindowCache(c.context - 1) for _ in self.blocks],
                           agent_row=torch.full((batch, K), c.start, dtype=torch.long, device=device),
                           user_frame=torch.full((batch, K), c.pad, dtype=torch.long, device=device))

    @torch.no_grad()
    def step(self, state: DuplexState, user_frame: torch.Tensor | None, prompt: torch.Tensor | None = None,
             traj: torch.Tensor | None = None, identity: torch.Tensor | None = None, temperature: float = 0.8,
             top_k: int = 50, motion_temperature: float = 1.0, generator: torch.Generator | None = None,
             force_row: torch.Tensor | None = None) -> StepOutput:
        """Write step i: feed the user's frame i-1 (B, K) (None: not heard yet), the controls of step i
        (``prompt`` (B, d_prompt), ``traj`` (B, frames_per_step * d_traj), ``identity`` (B,)), sample
        the agent's row i and motion i. ``force_row`` (B, K): write this row instead of sampling it
        (teacher forcing, e.g. to replay a recorded agent)."""
        c = self.config
        B = state.agent_row.shape[0]
        if user_frame is not None:
            if user_frame.shape != (B, c.n_codebooks):
                raise ValueError(f"user_frame: expected ({B}, {c.n_codebooks}), got {tuple(user_frame.shape)}")
            if ((user_frame < 0) | (user_frame >= c.codebook_size)).any():
                raise ValueError(f"user_frame codes must lie in [0, {c.codebook_size})")
            state.user_frame = user_frame.long()
        else:
            state.user_frame = torch.full_like(state.agent_row, c.pad)
        one = torch.ones(B, 1, dtype=torch.bool, device=state.agent_row.device)
        x = self.embed(state.agent_row[:, None], state.user_frame[:, None],
                       state.motion[:, None] if state.motion is not None else None, None,
                       prompt[:, None] if prompt is not None else None, one if prompt is not None else None,
                       traj[:, None] if traj is not None else None, one if traj is not None else None, identity)
        h = self(x, state)[:, 0]  # (B, d)
        if force_row is not None:
            row = force_row.long()
        else:
            logits = self.audio_logits(h)[..., :c.codebook_size] / max(temperature, 1e-5)  # (B, K, codebook_size)
            if top_k and top_k < c.codebook_size:
                kth = logits.topk(top_k, dim=-1).values[..., -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            row = torch.multinomial(logits.softmax(-1).flatten(0, 1), 1, generator=generator).view(B, c.n_codebooks)
        delays = c.delays
        row = torch.where(torch.tensor([state.steps - 1 < d for d in delays], device=row.device), c.pad, row)
        motion = self.sample_motion(h, temperature=motion_temperature, generator=generator)  # (B, motion_dim)
        state.agent_row, state.motion = row, motion
        state.rows = (state.rows + [row])[-(max(delays) + 1):]
        frame = None
        if state.steps > max(delays):  # the frame that started max(delays) steps ago is now complete
            frame = torch.stack([state.rows[-1 - (max(delays) - d)][:, k] for k, d in enumerate(delays)], dim=1)
        return StepOutput(row=row, frame=frame, motion=motion.view(B, c.frames_per_step, c.latent))


# ---------------------------------------------------------------------------------------------
# Sequences for training


def delayed_rows(codes: torch.Tensor, delays: tuple[int, ...], pad: int) -> torch.Tensor:
    """(B, K, S) frames -> (B, S, K) rows: row i holds codebook k of frame i - delays[k] (pad before 0)."""
    B, K, S = codes.shape
    out = codes.new_full((B, S, K), pad)
    for k, d in enumerate(delays):
        out[:, d:, k] = codes[:, k, :S - d]
    return out


def shift_right(x: torch.Tensor, fill: torch.Tensor | float | int) -> torch.Tensor:
    """(B, S, ...) -> the same with position i holding x[i - 1] and position 0 ``fill``."""
    out = torch.empty_like(x)
    out[:, 1:] = x[:, :-1]
    out[:, 0] = fill
    return out


def init_from_tts(model: DuplexDecoder, tts: nn.Module) -> list[str]:
    """Copy the Talker TTS's transformer blocks, final norm and audio tables (inputs and tied heads)
    into ``model`` where the shapes agree. Returns the names copied."""
    own = model.state_dict()
    copied = []
    for name, value in tts.state_dict().items():
        target = {"audio_emb": "agent_emb"}.get(name, name)
        if target in own and own[target].shape == value.shape and (target.startswith(("blocks.", "ln_f.")) or target == "agent_emb"):
            own[target] = value.to(own[target].dtype)
            copied.append(target)
    if "agent_emb" in copied and "user_emb" in own:
        own["user_emb"] = own["agent_emb"].clone()  # the user speaks the same codes
        copied.append("user_emb")
    model.load_state_dict(own)
    return copied


def load_duplex(directory: str | Path) -> DuplexDecoder:
    """A trained decoder (eval mode) from its checkpoint folder; clear errors otherwise."""
    from anima.checkpoint import CheckpointError, load_weights, read_config

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such duplex decoder checkpoint folder")
    cfg = read_config(directory).get("config", {})
    if not isinstance(cfg, dict) or cfg.get("kind") != "duplex":
        raise CheckpointError(f"{directory}: not a duplex decoder checkpoint (config kind "
                              f"{cfg.get('kind') if isinstance(cfg, dict) else None!r})")
    known = {f.name for f in dataclasses.fields(DuplexConfig)}
    unknown = sorted(set(cfg.get("model", {})) - known)
    if unknown:
        raise CheckpointError(f"{directory}: config has fields this code does not know: {unknown}")
    fields = dict(cfg["model"])
    fields["identities"] = tuple(fields.get("identities", ()))  # JSON has lists
    model = DuplexDecoder(DuplexConfig(**fields))
    load_weights(directory, model)
    return model.eval()
