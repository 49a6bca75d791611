"""UniLS: one autoregressive transformer for the speaking *and* listening face of both parties.

The generator predicts the multi-scale motion codes of ``anima.face.model.quantizer`` one token at a
time. A sequence is two 4 s windows (the "past chunk" and the "next chunk" of the paper's
M[t:2t] = G(M[1:t], ...)), 2 x 181 tokens, in *time order*: at frame f the tokens of every
segment that starts at f are emitted coarse to fine (all five scales at f = 0, only the
per-frame scale at odd frames, 1.81 tokens per frame on average). A token's input is what is
already known about its frame (the sum of the coarser codes covering it) and the full latent of
the frame before, plus scale and frame embeddings; a style token (from a reference clip of the
speaker's motion) comes first.

- Stage 1 (``audio=False``): self-attention + MLP blocks; motion and style only. It learns the
  audio-free prior: blinks, nods, drift, micro-expressions.
- Stage 2 (``audio=True, lora_rank > 0``): every block gets two cross-attention layers, one on the
  speaker's own audio and one on the other party's, trained from scratch (zero-initialised
  output, so stage 2 starts as stage 1), while the stage-1 linears are frozen and adapted by LoRA.
- One-stage baseline: ``audio=True, lora_rank=0``, everything trained from scratch on dialogue.

Token n at frame f attends a causal window of audio frames ending at f (the own voice's last 6
frames, the other party's last 50, with a learned bias per offset; the features of tick f end with
the tick), so the model runs live: ``state = model.new_state(style_ref)`` makes a session's
streaming state (KV caches, the sequence so far, the sampling RNG; the caller owns it) and
``model.step(own, other, state)`` consumes one tick of both parties' features and returns one
frame of motion. The model holds weights only, so one model serves any number of sessions. At
each window boundary the cache is rebuilt from the last window's tokens, so streaming computes
exactly what the teacher-forced forward computes on the same sequence.

    model = UniLS.from_pretrained("anima/assets/weights/face/unils")   # once per process, shared
    state = model.new_state(style_ref, seed=0)                          # one per session
    frame = model.step(own_row, other_row, state)                       # (B, 50) normalised

Both parties come from the same weights with the two audio tracks swapped.
"""

from __future__ import annotations

import copy
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from anima.checkpoint import load_weights, read_config
from anima.face.model.quantizer import MultiScaleQuantizer, QuantizerConfig

# ---------------------------------------------------------------------------------------------
# Blocks


class LoRALinear(nn.Linear):
    """nn.Linear with an optional low-rank update ``x A^T B^T * alpha / r`` (B starts at zero)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rank: int = 0, alpha: float = 16.0) -> None:
        super().__init__(in_features, out_features, bias)
        self.rank = 0
        if rank > 0:
            self.add_lora(rank, alpha)

    def add_lora(self, rank: int, alpha: float) -> None:
        self.rank = rank
        self.lora_scale = alpha / rank
        self.lora_a = nn.Parameter(torch.randn(rank, self.in_features) / math.sqrt(self.in_features))
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank))

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the low-rank update into the weight (inference: one matmul instead of three)."""
        if self.rank:
            self.weight += (self.lora_b @ self.lora_a) * self.lora_scale
            del self.lora_a, self.lora_b
            self.rank = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.rank:
            y = y + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.lora_scale
        return y


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far in one layer. (B, H, max_len, hd)"""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0


class SelfAttention(nn.Module):
    def __init__(self, config: UniLSConfig) -> None:
        super().__init__()
        c = config
        self.n_head = c.n_head
        self.qkv = LoRALinear(c.n_embd, 3 * c.n_embd, rank=c.lora_rank, alpha=c.lora_alpha)
        self.proj = LoRALinear(c.n_embd, c.n_embd, rank=c.lora_rank, alpha=c.lora_alpha)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        if cache is None:
            # No attention dropout: it forces the slow math kernel on CPU (dropout sits on the MLP).
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            start = cache.length
            if start + T > cache.k.shape[2]:
                raise RuntimeError(f"KV cache overflow: {start} + {T} > {cache.k.shape[2]}")
            cache.k[:, :, start:start + T] = k
            cache.v[:, :, start:start + T] = v
            cache.length = start + T
            k, v = cache.k[:, :, :start + T], cache.v[:, :, :start + T]
            if T == 1:
                y = F.scaled_dot_product_attention(q, k, v)
            else:  # new tokens see the cache and each other causally
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.proj(y)


class CrossAttention(nn.Module):
    """Motion tokens attend to a causal window of audio frames; new in stage 2.

    A token at frame f sees the audio frames f - window + 1 ... f, with a learned per-head bias
    for each offset (an alignment prior, as FaceFormer's alignment mask: lips follow the last few
    hundred ms of the own voice, listening follows the last seconds of the other party's). The
    output projection starts at zero, so a stage-2 model starts as its stage-1 model.
    """

    def __init__(self, config: UniLSConfig, window: int) -> None:
        super().__init__()
        c = config
        self.n_head = c.n_head
        self.window = window
        self.q = nn.Linear(c.n_embd, c.n_embd)
        self.kv = nn.Linear(c.n_embd, 2 * c.n_embd)
        self.proj = nn.Linear(c.n_embd, c.n_embd)
        self.rel_bias = nn.Parameter(torch.zeros(c.n_head, window))
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def memory(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoded audio (B, L, C) -> keys and values (B, H, L, hd)."""
        B, L, C = audio.shape
        k, v = self.kv(audio).split(C, dim=2)
        return tuple(t.view(B, L, self.n_head, C // self.n_head).transpose(1, 2) for t in (k, v))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel: torch.Tensor | None) -> torch.Tensor:
        """rel: (T, L) frame offsets (query frame - key frame); None when streaming one token whose
        frame is the newest key (the last ``window`` keys are used)."""
        B, T, C = x.shape
        if rel is None:  # streaming: the newest key is this token's frame, offsets keep - 1 ... 0
            keep = min(self.window, k.shape[2])
            k, v = k[:, :, -keep:], v[:, :, -keep:]
            bias = self.rel_bias[:, :keep].flip(1)[None, :, None]  # (1, H, 1, keep)
        else:
            valid = (rel >= 0) & (rel < self.window)
            bias = self.rel_bias[:, rel.clamp(0, self.window - 1)].masked_fill(~valid, float("-inf"))[None]  # (1, H, T, L)
        q = self.q(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, hd)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: UniLSConfig) -> None:
        super().__init__()
        c = config
        self.fc = LoRALinear(c.n_embd, 4 * c.n_embd, rank=c.lora_rank, alpha=c.lora_alpha)
        self.proj = LoRALinear(4 * c.n_embd, c.n_embd, rank=c.lora_rank, alpha=c.lora_alpha)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: UniLSConfig) -> None:
        super().__init__()
        c = config
        self.ln_1 = nn.LayerNorm(c.n_embd)
        self.attn = SelfAttention(c)
        if c.audio:
            self.ln_own = nn.LayerNorm(c.n_embd)
            self.xattn_own = CrossAttention(c, c.own_window)
            self.ln_other = nn.LayerNorm(c.n_embd)
            self.xattn_other = CrossAttention(c, c.other_window)
        self.ln_2 = nn.LayerNorm(c.n_embd)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, audio: dict | None = None) -> torch.Tensor:
        """x: (B, T, C); audio: {"own": (k, v), "other": (k, v), "rel": (T, L) or None, "skip": n}.

        The first ``skip`` tokens (the style token) get no cross-attention: they precede all audio.
        """
        x = x + self.attn(self.ln_1(x), cache)
        if audio is not None and x.shape[1] > audio["skip"]:
            s = audio["skip"]
            h = x[:, s:]
            h = h + self.xattn_own(self.ln_own(h), *audio["own"], audio["rel"])
            h = h + self.xattn_other(self.ln_other(h), *audio["other"], audio["rel"])
            x = torch.cat([x[:, :s], h], dim=1) if s else h
        return x + self.mlp(self.ln_2(x))


class StyleEncoder(nn.Module):
    """A reference clip of the speaker's motion -> one style token (mean and spread of its frames
    and frame-to-frame changes, so amplitude and rate of motion both show)."""

    def __init__(self, config: UniLSConfig) -> None:
        super().__init__()
        c = config
        self.frame = nn.Sequential(nn.Linear(2 * c.motion_dim, c.style_dim), nn.GELU(), nn.Linear(c.style_dim, c.style_dim))
        self.out = LoRALinear(2 * c.style_dim, c.n_embd, rank=c.lora_rank, alpha=c.lora_alpha)

    def forward(self, ref: torch.Tensor) -> torch.Tensor:
        """ref: (B, T_ref, motion_dim) normalised motion -> (B, 1, C)."""
        delta = torch.cat([torch.zeros_like(ref[:, :1]), ref[:, 1:] - ref[:, :-1]], dim=1) * 4.0
        h = self.frame(torch.cat([ref, delta], dim=-1))  # (B, T_ref, style_dim)
        return self.out(torch.cat([h.mean(1), h.std(1)], dim=-1))[:, None]  # (B, 1, C)


class AudioEncoder(nn.Module):
    """Log-mel rows (B, L, audio_dim) -> (B, L, C); causal 3-tap convolution, so frame f sees <= f."""

    def __init__(self, config: UniLSConfig) -> None:
        super().__init__()
        c = config
        self.conv = nn.Conv1d(c.audio_dim, c.n_embd, kernel_size=3)
        self.proj = nn.Linear(c.n_embd, c.n_embd)
        self.party = nn.Embedding(2, c.n_embd)  # 0 = own voice, 1 = the other party
        self.pos = nn.Embedding(c.n_windows * c.window, c.n_embd)

    def encode(self, feats: torch.Tensor, party: int, first_pos: int, context: torch.Tensor | None = None) -> torch.Tensor:
        """Encode frames at sequence positions ``first_pos ...``; ``context`` is the (B, 2, audio_dim)
        rows before them (zeros at the start of a sequence). -> (B, L, C)"""
        B, L, _ = feats.shape
        if context is None:
            context = feats.new_zeros(B, 2, feats.shape[2])
        h = self.conv(torch.cat([context, feats], dim=1).transpose(1, 2)).transpose(1, 2)  # (B, L, C)
        pos = torch.arange(first_pos, first_pos + L, device=feats.device)
        return self.proj(F.gelu(h)) + self.party.weight[party] + self.pos(pos)


# ---------------------------------------------------------------------------------------------
# The model


@dataclass
class UniLSConfig:
    motion_dim: int = 50  # anima.face.motion.MOTION_DIM
    code_dim: int = 64  # quantiser code size
    codebook_size: int = 256
    window: int = 100  # frames per quantiser window
    scales: tuple[int, ...] = (1, 5, 25, 50, 100)
    n_windows: int = 2  # sequence = past window + next window
    audio_dim: int = 80  # AudioFeatureConfig().dim
    style_dim: int = 64  # style encoder width
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 96
    dropout: float = 0.1
    audio: bool = False  # two cross-attention layers per block (stage 2 / one-stage)
    own_window: int = 6  # audio frames the own-voice cross-attention sees (f - 5 ... f: 240 ms)
    other_window: int = 50  # ... and the other-party cross-attention (2 s)
    lora_rank: int = 0  # > 0: LoRA adapters on the stage-1 linears
    lora_alpha: float = 16.0

    def __post_init__(self) -> None:
        self.scales = tuple(int(s) for s in self.scales)
        if self.n_embd % self.n_head:
            raise ValueError(f"UniLSConfig: n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")

    @property
    def tokens_per_window(self) -> int:
        return sum(self.scales)


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0  # 0 = the whole codebook


def token_schedule(window: int, scales: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Time order of one window's tokens: (scale index, segment index, start frame), each (N,)."""
    entries = []
    for si, s in enumerate(scales):
        seg = window // s
        entries += [(i * seg, si, i) for i in range(s)]
    entries.sort()
    start, scale, segment = zip(*entries, strict=True)
    return torch.tensor(scale), torch.tensor(segment), torch.tensor(start)


class UniLSGenerator(nn.Module):
    """The transformer; ``UniLS`` wraps it with the quantiser and the streaming state."""

    def __init__(self, config: UniLSConfig) -> None:
        super().__init__()
        self.config = c = config
        self.style = StyleEncoder(c)
        self.inp = LoRALinear(2 * c.code_dim, c.n_embd, rank=c.lora_rank, alpha=c.lora_alpha)
        self.scale_emb = nn.Embedding(len(c.scales), c.n_embd)
        self.frame_emb = nn.Embedding(c.n_windows * c.window, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = LoRALinear(c.n_embd, c.codebook_size, bias=False, rank=c.lora_rank, alpha=c.lora_alpha)
        if c.audio:
            self.audio_enc = AudioEncoder(c)
        self.apply(self._init_weights)
        for block in self.blocks:
            if c.audio:
                for xa in (block.xattn_own, block.xattn_other):
                    nn.init.zeros_(xa.proj.weight)
        scale, segment, start = token_schedule(c.window, c.scales)
        n = c.n_windows
        self.register_buffer("tok_scale", scale.repeat(n), persistent=False)  # (n * 181,)
        self.register_buffer("tok_frame", torch.cat([start + w * c.window for w in range(n)]), persistent=False)
        # Index of each stream token in the per-scale code arrays (B, n * s) of the quantiser.
        self.register_buffer("tok_segment", torch.cat([segment + w * torch.tensor(c.scales)[scale] for w in range(n)]),
                             persistent=False)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def token_inputs(self, partial: torch.Tensor, prev: torch.Tensor, scale: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """partial, prev: (B, N, code_dim); scale, frame: (N,) -> (B, N, C)."""
        return self.inp(torch.cat([partial, prev], dim=-1)) + self.scale_emb(scale) + self.frame_emb(frame)

    def audio_memory(self, own: torch.Tensor, other: torch.Tensor, first_pos: int = 0,
                     context: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[dict]:
        """Per-layer cross-attention keys/values of both tracks (B, L, audio_dim) each."""
        ctx = context or (None, None)
        enc_own = self.audio_enc.encode(own, 0, first_pos, ctx[0])
        enc_other = self.audio_enc.encode(other, 1, first_pos, ctx[1])
        return [{"own": b.xattn_own.memory(enc_own), "other": b.xattn_other.memory(enc_other)} for b in self.blocks]

    def forward(self, x: torch.Tensor, caches: list[KVCache] | None = None, memory: list[dict] | None = None,
                rel: torch.Tensor | None = None, skip: int = 0) -> torch.Tensor:
        """Token embeddings (B, T, C) -> logits (B, T, codebook_size).

        With ``caches`` the T tokens continue the cached sequence. ``memory``/``rel`` feed the
        cross-attention (audio models only); the first ``skip`` tokens get none.
        """
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            audio = None
            if self.config.audio:
                if memory is None:
                    raise ValueError("UniLSGenerator: an audio model needs the audio memory")
                audio = {**memory[i], "rel": rel, "skip": skip}
            x = block(x, None if caches is None else caches[i], audio)
        return self.head(self.ln_f(x))

    def merge_lora(self) -> None:
        """Fold every LoRA update into its weight (for inference; training state is lost)."""
        for module in self.modules():
            if isinstance(module, LoRALinear):
                module.merge()

    # -- stage 2 ---------------------------------------------------------------------------------

    def trainable_stage2(self) -> list[nn.Parameter]:
        """Freeze the stage-1 weights; return what stage 2 trains (LoRA, cross-attention, audio)."""
        keep = []
        for name, p in self.named_parameters():
            new = "lora_" in name or "xattn_" in name or ".ln_own" in name or ".ln_other" in name or name.startswith("audio_enc")
            p.requires_grad_(new)
            if new:
                keep.append(p)
        return keep


class UniLSState:
    """One streaming session of a ``UniLS`` (made by ``UniLS.new_state``; the caller owns it).

    Holds everything a session changes: the KV caches, the current sequence's codes, latents and
    audio rows, the cross-attention memory, the decoder's last frames and the sampling RNG.
    ``reset`` starts the session over (same style, sampling and seed); ``clone`` is a snapshot
    that continues exactly as the original would.
    """

    def __init__(self, style: torch.Tensor, sampling: SamplingConfig, seed: int | None) -> None:
        self.batch = style.shape[0]
        self.style = style  # (B, 1, C) style token
        self.sampling = sampling
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.reset()

    def reset(self) -> None:
        """Back to the start of the session: empty sequence, RNG re-seeded."""
        if self.generator is not None:
            self.generator.manual_seed(self.seed)
        self.caches: list[KVCache] = []  # empty: the next step starts a sequence
        self.slot = 0  # which window of the sequence the current frame is in (0 or n_windows - 1)
        self.frame = 0  # frame within the current window
        self.codes: list[torch.Tensor] = []  # per window in sequence: (B, 181) stream order
        self.latents: list[torch.Tensor] = []  # per window: (B, window, code_dim) full latents
        self.partial: torch.Tensor | None = None  # (B, S, window, code_dim) per-scale sums, current window
        self.own: list[torch.Tensor] = []  # per window: (B, <=window, audio_dim) raw rows
        self.other: list[torch.Tensor] = []
        self.memory: list[dict] | None = None  # per layer: {"own": (k, v), "other": (k, v)} growing along L
        self.decoder_history: torch.Tensor | None = None  # (B, 2, code_dim) latents of the last two frames
        self.frames_out = 0

    def clone(self) -> UniLSState:
        """An independent copy (tensors and RNG state copied)."""
        generator = None
        if self.generator is not None:
            generator = torch.Generator()
            generator.set_state(self.generator.get_state())
        return copy.deepcopy(self, memo={id(self.generator): generator})


class UniLS(nn.Module):
    """Quantiser (frozen) + generator, with training losses, streaming and offline generation."""

    def __init__(self, quantizer: MultiScaleQuantizer, config: UniLSConfig) -> None:
        super().__init__()
        q = quantizer.config
        for name in ("motion_dim", "code_dim", "codebook_size", "window"):
            if getattr(q, name) != getattr(config, name):
                raise ValueError(f"UniLS: quantiser {name}={getattr(q, name)} but generator {name}={getattr(config, name)}")
        if tuple(q.scales) != tuple(config.scales):
            raise ValueError(f"UniLS: quantiser scales {q.scales} != generator scales {config.scales}")
        self.config = config
        self.quantizer = quantizer
        self.quantizer.requires_grad_(False)
        self.generator = UniLSGenerator(config)
        scale, _, start = token_schedule(config.window, config.scales)
        self._by_frame = [[] for _ in range(config.window)]  # window frame -> [(stream index, scale index)]
        for n, (si, f) in enumerate(zip(scale.tolist(), start.tolist(), strict=True)):
            self._by_frame[f].append((n, si))

    def train(self, mode: bool = True) -> UniLS:
        super().train(mode)
        self.quantizer.eval()  # frozen: no EMA updates, no dropout
        return self

    # -- teacher forcing --------------------------------------------------------------------------

    def _stream_inputs(self, codes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-scale codes [(B, W * s)] of W windows -> stream-order targets (B, N), partial latents
        and previous-frame latents (B, N, D), N = W * 181."""
        g, q = self.generator, self.quantizer
        c = self.config
        n = codes[-1].shape[1] // c.window * c.tokens_per_window
        scale, frame, segment = g.tok_scale[:n], g.tok_frame[:n], g.tok_segment[:n]
        offsets = torch.tensor([0] + [x.shape[1] for x in codes[:-1]]).cumsum(0)
        ups = torch.stack([q.codebook[idx].repeat_interleave(c.window // s, dim=1) for s, idx in zip(c.scales, codes, strict=True)])  # (S, B, L, D)
        before = torch.cumsum(ups, dim=0) - ups  # sum of the coarser scales, (S, B, L, D)
        full = ups.sum(0)  # (B, L, D)
        prev = torch.cat([torch.zeros_like(full[:, :1]), full[:, :-1]], dim=1)  # latent of frame f - 1
        targets = torch.cat(codes, dim=1)[:, offsets[scale] + segment]  # (B, N)
        partial = before[scale, :, frame].transpose(0, 1)  # (B, N, D)
        return targets, partial, prev[:, frame]

    def audio_offsets(self, n_tokens: int | None = None, n_frames: int | None = None) -> torch.Tensor:
        """(N, L) frame offsets of each token to each audio frame (token frame - audio frame)."""
        c = self.config
        frames = torch.arange(n_frames or c.n_windows * c.window)
        return self.generator.tok_frame[:n_tokens, None] - frames[None, :]

    def forward(self, motion: torch.Tensor, style_ref: torch.Tensor, own: torch.Tensor | None = None,
                other: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits and targets for whole sequences.

        motion: (B, n_windows * window, motion_dim) normalised; style_ref: (B, T_ref, motion_dim)
        normalised; own / other: (B, n_windows * window, audio_dim) log-mel rows (audio models).
        Returns logits (B, N, codebook_size) and target codes (B, N), N = n_windows * 181.
        """
        c = self.config
        L = c.n_windows * c.window
        if motion.ndim != 3 or motion.shape[1:] != (L, c.motion_dim):
            raise ValueError(f"UniLS: motion must be (B, {L}, {c.motion_dim}), got {tuple(motion.shape)}")
        with torch.no_grad():
            codes = self.quantizer.encode(motion)
            targets, partial, prev = self._stream_inputs(codes)
        g = self.generator
        x = torch.cat([g.style(style_ref), g.token_inputs(partial, prev, g.tok_scale, g.tok_frame)], dim=1)  # (B, 1 + N, C)
        memory = rel = None
        if c.audio:
            for name, a in (("own", own), ("other", other)):
                if a is None or a.shape != (motion.shape[0], L, c.audio_dim):
                    raise ValueError(f"UniLS: {name} audio must be ({motion.shape[0]}, {L}, {c.audio_dim}), "
                                     f"got {None if a is None else tuple(a.shape)}")
                if not torch.isfinite(a).all():
                    raise ValueError(f"UniLS: {name} audio features contain NaN or inf")
            memory = g.audio_memory(own, other)
            rel = self.audio_offsets()
        logits = g(x, memory=memory, rel=rel, skip=1)[:, 1:]
        return logits, targets

    def loss(self, motion, style_ref, own=None, other=None) -> tuple[torch.Tensor, dict[str, float]]:
        logits, targets = self(motion, style_ref, own, other)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        with torch.no_grad():
            acc = (logits.argmax(-1) == targets).float().mean().item()
        return loss, {"loss": loss.item(), "acc": acc}

    # -- streaming --------------------------------------------------------------------------------

    @torch.no_grad()
    def new_state(self, style_ref: torch.Tensor, sampling: SamplingConfig | None = None,
                  seed: int | None = 0) -> UniLSState:
        """A streaming session for a batch of B sessions; ``step`` then makes one frame per call.

        style_ref: (B, T_ref, motion_dim) normalised reference motion; seed: of the code sampling
        (None: torch's global RNG).
        """
        if style_ref.ndim != 3 or style_ref.shape[2] != self.config.motion_dim:
            raise ValueError(f"UniLS.new_state: style_ref must be (B, T_ref, {self.config.motion_dim}), got {tuple(style_ref.shape)}")
        return UniLSState(self.generator.style(style_ref), sampling or SamplingConfig(), seed)

    def _new_caches(self, st: UniLSState) -> list[KVCache]:
        c = self.config
        max_len = 1 + c.n_windows * c.tokens_per_window
        hd = c.n_embd // c.n_head
        return [KVCache(torch.zeros(st.batch, c.n_head, max_len, hd), torch.zeros(st.batch, c.n_head, max_len, hd))
                for _ in range(c.n_layer)]

    def _start_sequence(self, st: UniLSState, prefill: int | None) -> None:
        """Fresh caches holding the style token and, when ``prefill`` is a window index, that
        window's tokens (teacher-forced with its sampled codes) as the sequence's first window."""
        c, g = self.config, self.generator
        st.caches = self._new_caches(st)
        g(st.style, caches=st.caches, memory=self._empty_memory(st) if c.audio else None, skip=1)
        if prefill is None:
            st.codes, st.latents, st.own, st.other, st.slot = [], [], [], [], 0
            st.memory = self._empty_memory(st) if c.audio else None
        else:
            keep = slice(prefill, prefill + 1)
            st.codes, st.latents, st.own, st.other = st.codes[keep], st.latents[keep], st.own[keep], st.other[keep]
            n = c.tokens_per_window
            codes = st.codes[0]  # (B, 181) stream order
            per_scale = self._per_scale(codes)
            _, partial, prev = self._stream_inputs(per_scale)  # window-0 positions only
            x = g.token_inputs(partial, prev, g.tok_scale[:n], g.tok_frame[:n])
            if c.audio:
                st.memory = g.audio_memory(st.own[0], st.other[0], 0)
                g(x, caches=st.caches, memory=st.memory, rel=self.audio_offsets(n, c.window), skip=0)
            else:
                g(x, caches=st.caches)
            st.slot = 1
        self._open_window(st)

    def _open_window(self, st: UniLSState) -> None:
        """Empty buffers for the window about to be generated in the current slot."""
        c = self.config
        st.frame = 0
        st.codes.append(torch.zeros(st.batch, c.tokens_per_window, dtype=torch.long))
        st.latents.append(torch.zeros(st.batch, c.window, c.code_dim))
        st.own.append(torch.zeros(st.batch, 0, c.audio_dim))
        st.other.append(torch.zeros(st.batch, 0, c.audio_dim))
        st.partial = torch.zeros(st.batch, len(c.scales), c.window, c.code_dim)

    def _empty_memory(self, st: UniLSState) -> list[dict]:
        c = self.config
        hd = c.n_embd // c.n_head
        empty = torch.zeros(st.batch, c.n_head, 0, hd)
        return [{"own": (empty, empty), "other": (empty, empty)} for _ in range(c.n_layer)]

    def _per_scale(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """Stream-order codes of one window (B, 181) -> per-scale arrays [(B, s)]."""
        c, g = self.config, self.generator
        n = c.tokens_per_window
        out = [torch.zeros(codes.shape[0], s, dtype=torch.long) for s in c.scales]
        for i, (si, seg) in enumerate(zip(g.tok_scale[:n].tolist(), g.tok_segment[:n].tolist(), strict=True)):
            out[si][:, seg] = codes[:, i]
        return out

    @torch.inference_mode()
    def step(self, own: torch.Tensor | None, other: torch.Tensor | None, state: UniLSState) -> torch.Tensor:
        """One frame for each of the B sessions of ``state``. own / other: (B, audio_dim) this tick's
        log-mel rows (None for audio-free models). Returns normalised motion (B, motion_dim)."""
        if not isinstance(state, UniLSState):
            raise RuntimeError(f"UniLS.step: state must be a UniLSState from model.new_state(style_ref), got {type(state).__name__}")
        if self.training:
            raise RuntimeError("UniLS.step: the model is in training mode (dropout on); call model.eval() first")
        st = state
        c, g, q = self.config, self.generator, self.quantizer
        if not st.caches:  # a new (or reset) session
            self._start_sequence(st, prefill=None)
        elif st.frame == c.window:  # the window is complete: the next one starts
            if st.slot + 1 < c.n_windows:
                st.slot += 1
                self._open_window(st)
            else:  # rebuild the cache from the window just finished, so it becomes the sequence's first
                self._start_sequence(st, prefill=len(st.codes) - 1)
        f, slot = st.frame, st.slot
        pos = slot * c.window + f  # frame position in the sequence
        if c.audio:
            for name, a in (("own", own), ("other", other)):
                if a is None or a.shape != (st.batch, c.audio_dim):
                    raise ValueError(f"UniLS.step: {name} must be ({st.batch}, {c.audio_dim}), got {None if a is None else tuple(a.shape)}")
            own, other = torch.nan_to_num(own.float()), torch.nan_to_num(other.float())
            rows = []
            for name, a, party in (("own", own, 0), ("other", other, 1)):
                hist = getattr(st, name)
                seq = torch.cat(hist, dim=1)  # (B, pos, audio_dim) this sequence's rows so far
                ctx = torch.cat([seq.new_zeros(st.batch, 2, c.audio_dim), seq], dim=1)[:, -2:]
                rows.append(g.audio_enc.encode(a[:, None], party, pos, ctx))  # (B, 1, C)
                hist[-1] = torch.cat([hist[-1], a[:, None]], dim=1)
            for layer, block in zip(st.memory, g.blocks, strict=True):
                for key, xa, row in (("own", block.xattn_own, rows[0]), ("other", block.xattn_other, rows[1])):
                    k, v = xa.memory(row)
                    keep = xa.window - 1  # streaming attends to the last `window` frames only
                    old_k, old_v = layer[key]
                    layer[key] = (torch.cat([old_k[:, :, old_k.shape[2] - min(keep, old_k.shape[2]):], k], dim=2),
                                  torch.cat([old_v[:, :, old_v.shape[2] - min(keep, old_v.shape[2]):], v], dim=2))
        prev = st.latents[-1][:, f - 1] if f > 0 else (st.latents[-2][:, -1] if slot > 0 else torch.zeros(st.batch, c.code_dim))
        pos_emb = g.frame_emb.weight[pos]
        for n, si in self._by_frame[f]:
            partial = st.partial[:, :si, f].sum(1)  # (B, D) coarser codes covering this frame
            x = (g.inp(torch.cat([partial, prev], dim=-1)) + g.scale_emb.weight[si] + pos_emb)[:, None]  # (B, 1, C)
            logits = g(x, caches=st.caches, memory=st.memory, rel=None, skip=0)[:, -1]  # (B, K)
            code = self._sample(logits, st)
            st.codes[-1][:, n] = code
            seg = c.window // c.scales[si]
            st.partial[:, si, f:f + seg] = q.codebook[code][:, None]
        latent = st.partial[:, :, f].sum(1)  # (B, D)
        st.latents[-1][:, f] = latent
        hist = st.decoder_history if st.decoder_history is not None else torch.zeros(st.batch, 2, c.code_dim)
        window = torch.cat([hist, latent[:, None]], dim=1)  # (B, 3, D)
        h = q.decoder_conv(window.transpose(1, 2)).transpose(1, 2)[:, -1]  # (B, hidden)
        st.decoder_history = window[:, 1:]
        st.frame += 1
        st.frames_out += 1
        return q.decoder(h)

    def _sample(self, logits: torch.Tensor, st: UniLSState) -> torch.Tensor:
        s = st.sampling
        if s.temperature <= 0:
            return logits.argmax(-1)
        logits = logits / s.temperature
        if s.top_k:
            kth = torch.topk(logits, min(s.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=st.generator)[:, 0]

    @torch.no_grad()
    def generate(self, style_ref: torch.Tensor, n_frames: int, own: torch.Tensor | None = None,
                 other: torch.Tensor | None = None, sampling: SamplingConfig | None = None,
                 seed: int | None = 0) -> torch.Tensor:
        """Offline generation through the streaming path: (B, n_frames, motion_dim) normalised motion.

        own / other: (B, >= n_frames, audio_dim) for audio models. Puts the model in eval mode.
        """
        self.eval()
        state = self.new_state(style_ref, sampling, seed)
        out = []
        for f in range(n_frames):
            a = own[:, f] if own is not None else None
            b = other[:, f] if other is not None else None
            out.append(self.step(a, b, state))
        return torch.stack(out, dim=1)

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> UniLS:
        """The inference model of a checkpoint directory, loaded once per process and shared.

        Eval mode, LoRA merged, no gradients: read-only, so every session (``new_state``) can use
        the same object. Thread-safe. For a model to train, use ``load_unils`` (a fresh copy).
        """
        key = Path(directory).resolve()
        with _PRETRAINED_LOCK:
            model = _PRETRAINED.get(key)
            if model is None:
                model, _ = load_unils(key)
                model.generator.merge_lora()  # inference only: one matmul per LoRA layer
                model.requires_grad_(False)
                _PRETRAINED[key] = model
        return model


_PRETRAINED: dict[Path, UniLS] = {}  # resolved checkpoint directory -> shared inference model
_PRETRAINED_LOCK = threading.Lock()  # sessions are built in worker threads


def load_unils(directory: str | Path) -> tuple[UniLS, dict]:
    """A new UniLS (quantiser included) with a checkpoint's weights, in eval mode, and its metadata.

    Each call builds a fresh model (training and export change it); the runtime uses the shared
    ``UniLS.from_pretrained``.
    """
    meta = read_config(directory)
    cfg = meta["config"]
    model = UniLS(MultiScaleQuantizer(QuantizerConfig(**cfg["quantizer"])), UniLSConfig(**cfg["generator"]))
    load_weights(directory, model)
    return model.eval(), meta
