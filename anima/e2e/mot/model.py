"""The mixture of transformers (HumanExpert, paper section 3.1): speech expert + behaviour expert, one attention.

Two experts of the same depth share every attention layer. The **text-speech expert** is the
Talker's Kodama TTS (``anima.talker.model.kodama_tts``), frozen; the **behaviour expert** has its
own (narrower) width, norms, QKV, output projection and FFN. At every position Q, K and V come from
the projection of the modality that owns the position (eq. 1: the sum of the modality-specific
projections, each zero outside its modality), and one softmax runs over all keys under the hybrid
mask (eq. 2)::

    speech queries    -> speech keys, strictly causal (exactly the TTS alone: never behaviour)
    behaviour queries -> every speech key up to the end of its chunk's audio (text always: it comes
                         first) and every behaviour key of its own chunk and earlier ones

Because speech queries never see behaviour keys, the mask is block-triangular and the forward runs
as two passes: ``speech_pass`` (the TTS, its keys and values kept per layer; the same tensors as the
TTS's KV cache at inference) and ``behaviour_pass`` (queries of the behaviour tokens against
[speech keys ; behaviour keys]). That is eq. 2 computed without the all-masked quadrant.

Behaviour tokens: one per 80 ms audio frame (12.5 Hz), ``anima.e2e.mot.behaviour`` packs two 25 fps
face frames and two body frames into a (750,) vector, normalised. A behaviour sequence may start
with ``history`` tokens before the speech (what the agent did before it spoke). Token t writes
frame f = t - history; its rotary position is the position of the audio step that writes frame f's
first codebook, so attention sees speech and behaviour on one time axis.

Diffusion forcing (eq. 5): every token has its own noise level s in [0, 1] (0 clean, 1 pure
noise; z = cos(pi s / 2) x + sin(pi s / 2) eps). The expert predicts v = alpha eps - sigma x
(Salimans & Ho's parametrisation of the paper's noise prediction: eps and x follow from v and z,
and it stays well-conditioned at s = 1 where eps-prediction divides by alpha = 0).

``mode`` selects the ablation of the paper's Table 3:
    expert  the behaviour expert above; the speech expert is frozen (the shipped design)
    dense   no behaviour expert: behaviour tokens run through the speech expert's own layers, and
            every weight trains (full fine-tuning)
    lora    as dense, but the speech weights stay frozen and low-rank adapters on every linear of
            its layers (applied at all positions, speech included, as LoRA does) learn behaviour
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anima.talker.model.kodama_tts import KodamaTTS

MODES = ("expert", "dense", "lora")


@dataclass
class MoTConfig:
    behaviour_dim: int = 750  # per token: 2 face frames (112) + 2 body frames (263) at 25 fps
    d_model: int = 128  # behaviour expert width (expert mode; dense/lora use the speech width)
    mode: str = "expert"
    lora_rank: int = 8
    chunk: int = 5  # behaviour tokens per chunk (0.4 s): bidirectional inside, causal across
    history: int = 10  # tokens of behaviour before the speech starts (0.8 s)
    max_tokens: int = 400  # behaviour tokens per sequence (history included)

    @classmethod
    def preset(cls, name: str, **overrides) -> MoTConfig:
        """``tiny`` (tests) or ``small`` (the shipped size, beside the small TTS)."""
        match name:
            case "tiny":
                base = dict(d_model=32, lora_rank=2, chunk=2, history=2, max_tokens=64)
            case "small":
                base = dict(d_model=128)
            case _:
                raise ValueError(f"unknown MoT config {name!r}; choose tiny or small")
        return cls(**{**base, **overrides})


# ---------------------------------------------------------------------------------------------
# Noise


def alpha_sigma(levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine variance-preserving schedule: level 0 = clean, 1 = pure noise. (...) -> (...), (...)"""
    angle = levels * (math.pi / 2)
    return torch.cos(angle), torch.sin(angle)


def add_noise(x: torch.Tensor, levels: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = alpha x + sigma eps per token. x, eps (B, T, D), levels (B, T)."""
    a, s = alpha_sigma(levels)
    return a[..., None] * x + s[..., None] * eps


def level_features(levels: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the noise level (scaled to 0..1000 like DDPM timesteps). (B, T) -> (B, T, dim)"""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=levels.device, dtype=torch.float32) / half)
    angles = levels[..., None].float() * 1000.0 * freqs  # (B, T, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


# ---------------------------------------------------------------------------------------------
# Blocks


class BehaviourAttention(nn.Module):
    """The behaviour expert's QKV and output projections; attention itself is shared (the speech heads' size)."""

    def __init__(self, d_model: int, d_attn: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(d_model, 3 * d_attn, bias=False)
        self.proj = nn.Linear(d_attn, d_model, bias=False)


class BehaviourBlock(nn.Module):
    """Same shape of layer as the TTS's ``Block`` (ln1, attn.qkv, attn.proj, ln2, mlp), its own width."""

    def __init__(self, d_model: int, d_attn: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = BehaviourAttention(d_model, d_attn)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))


class LoRA(nn.Module):
    """A low-rank update W x + B A x of one frozen linear (B starts at zero: no change at step 0)."""

    def __init__(self, d_in: int, d_out: int, rank: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(rank, d_in) / math.sqrt(d_in))
        self.b = nn.Parameter(torch.zeros(d_out, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.a.T) @ self.b.T


class BehaviourExpert(nn.Module):
    """Everything the behaviour adds: token in/out, noise-level embedding, and (by mode) its layers or adapters.

    It is the trainable part in ``expert`` and ``lora`` modes and what their checkpoints hold; the
    normalisation of behaviour vectors lives here as buffers so a checkpoint carries it.
    """

    def __init__(self, config: MoTConfig, speech: KodamaTTS) -> None:
        super().__init__()
        sc = speech.config
        width = config.d_model if config.mode == "expert" else sc.d_model
        self.width = width
        self.in_proj = nn.Linear(config.behaviour_dim, width)
        self.level_mlp = nn.Sequential(nn.Linear(128, width), nn.SiLU(), nn.Linear(width, width))
        if config.mode == "expert":
            self.blocks = nn.ModuleList(BehaviourBlock(width, sc.d_model) for _ in range(sc.n_layer))
        if config.mode == "lora":
            d, r = sc.d_model, config.lora_rank
            self.lora = nn.ModuleList(nn.ModuleDict({"qkv": LoRA(d, 3 * d, r), "proj": LoRA(d, d, r),
                                                     "fc": LoRA(d, 4 * d, r), "out": LoRA(4 * d, d, r)})
                                      for _ in range(sc.n_layer))
        self.ln_out = nn.LayerNorm(width)
        self.out_proj = nn.Linear(width, config.behaviour_dim)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)
        self.register_buffer("mean", torch.zeros(config.behaviour_dim))
        self.register_buffer("std", torch.ones(config.behaviour_dim))


# ---------------------------------------------------------------------------------------------
# The model


class MixtureOfTransformers(nn.Module):
    def __init__(self, config: MoTConfig, speech: KodamaTTS) -> None:
        super().__init__()
        if config.mode not in MODES:
            raise ValueError(f"unknown mode {config.mode!r}; choose one of {', '.join(MODES)}")
        if config.chunk < 1 or config.history < 0 or config.history % config.chunk:
            raise ValueError(f"chunk {config.chunk} must be >= 1 and history {config.history} a multiple of it")
        self.config = config
        self.speech = speech
        self.behaviour = BehaviourExpert(config, speech)
        sc = speech.config
        self.n_head, self.head_dim = sc.n_head, sc.d_model // sc.n_head
        self.lookahead = max(sc.delays)  # audio steps after a frame until all its codebooks are in the input
        if config.mode != "dense":
            speech.requires_grad_(False)

    @property
    def frozen_speech(self) -> bool:
        return self.config.mode != "dense"

    # -- the two passes ---------------------------------------------------------------------------

    def _linear(self, layer: int, name: str, module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """A speech-expert linear, plus its LoRA update in lora mode."""
        y = module(x)
        if self.config.mode == "lora":
            y = y + self.behaviour.lora[layer][name](x)
        return y

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, T, H * hd) -> (B, H, T, hd)
        B, T, _ = t.shape
        return t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)

    def _rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """RoPE at explicit positions, the TTS's convention. x (B, H, T, hd), positions (B, T)."""
        inv_freq = self.speech.blocks[0].attn.rope.inv_freq  # (hd/2,)
        angles = positions[:, None, :, None].float() * inv_freq  # (B, 1, T, hd/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)

    def speech_pass(self, speaker: torch.Tensor, emotion: torch.Tensor, text: torch.Tensor, audio: torch.Tensor,
                    is_audio: torch.Tensor, logits: bool = False
                    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None]:
        """The text-speech expert over [speaker][emotion] + ``make_sequence`` positions (right-padded).

        Returns each layer's rotated keys and values ((B, H, Ls, hd) each; Ls = 2 + L) and, with
        ``logits``, the next-step code logits (B, Ls, K, V). In expert mode this is the TTS's own
        forward (tested equal); frozen, it runs without building a graph.
        """
        sp = self.speech
        with torch.set_grad_enabled(torch.is_grad_enabled() and not (self.config.mode == "expert")):
            x = sp.embed(text, audio, is_audio)  # (B, L, d)
            cond = torch.stack([sp.speaker_proj(speaker), sp.emotion_proj(emotion)], dim=1)  # (B, 2, d)
            x = torch.cat([cond, x], dim=1)  # (B, Ls, d)
            B, Ls, _ = x.shape
            positions = torch.arange(Ls, device=x.device).expand(B, Ls)
            kv = []
            for i, blk in enumerate(sp.blocks):
                q, k, v = self._linear(i, "qkv", blk.attn.qkv, blk.ln1(x)).split(x.shape[-1], dim=2)
                q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, H, Ls, hd)
                q, k = self._rotate(q, positions), self._rotate(k, positions)
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # speech sees speech only, causally
                x = x + self._linear(i, "proj", blk.attn.proj, y.transpose(1, 2).reshape(B, Ls, -1))
                h = self._linear(i, "fc", blk.mlp[0], blk.ln2(x))
                x = x + self._linear(i, "out", blk.mlp[2], blk.mlp[1](h))
                kv.append((k, v))
            out = None
            if logits:
                out = torch.einsum("bnd,kvd->bnkv", sp.ln_f(x), sp.audio_emb)  # (B, Ls, K, V) tied heads
        return kv, out

    def behaviour_pass(self, z: torch.Tensor, levels: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor,
                       valid: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Predict v for every behaviour token.

        z (B, T, D) noisy normalised tokens; levels (B, T) in [0, 1]; positions (B, T) rotary
        positions; visible (B, T): how many speech positions (from the start) each token may attend
        to, 0 = none (the condition dropped); valid (B, T) bool (padding is False); kv: the speech
        pass's keys and values per layer, (B, H, Ls, hd). Returns (B, T, D).
        """
        c, be = self.config, self.behaviour
        B, T, _ = z.shape
        Ls = kv[0][0].shape[2]
        h = be.in_proj(z) + be.level_mlp(level_features(levels, 128))  # (B, T, W)
        chunk = torch.arange(T, device=z.device) // c.chunk  # (T,)
        see_speech = torch.arange(Ls, device=z.device)[None, None, :] < visible[..., None]  # (B, T, Ls)
        see_behaviour = (chunk[None, :, None] >= chunk[None, None, :]) & valid[:, None, :]  # (B, T, T) own chunk and earlier
        see_behaviour = see_behaviour | torch.eye(T, dtype=torch.bool, device=z.device)[None]  # a padded row still sees itself
        mask = torch.cat([see_speech, see_behaviour], dim=2)[:, None]  # (B, 1, T, Ls + T)
        blocks = be.blocks if c.mode == "expert" else self.speech.blocks
        for i, blk in enumerate(blocks):
            if c.mode == "expert":
                q, k, v = blk.attn.qkv(blk.ln1(h)).chunk(3, dim=2)
            else:
                q, k, v = self._linear(i, "qkv", blk.attn.qkv, blk.ln1(h)).chunk(3, dim=2)
            q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (B, H, T, hd)
            q, k = self._rotate(q, positions), self._rotate(k, positions)
            keys, values = torch.cat([kv[i][0], k], dim=2), torch.cat([kv[i][1], v], dim=2)  # (B, H, Ls + T, hd)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask).transpose(1, 2).reshape(B, T, -1)
            if c.mode == "expert":
                h = h + blk.attn.proj(y)
                h = h + blk.mlp(blk.ln2(h))
            else:
                h = h + self._linear(i, "proj", blk.attn.proj, y)
                h = h + self._linear(i, "out", blk.mlp[2], blk.mlp[1](self._linear(i, "fc", blk.mlp[0], blk.ln2(h))))
        return be.out_proj(be.ln_out(h))  # (B, T, D)

    # -- layout -----------------------------------------------------------------------------------

    def layout(self, boa: torch.Tensor, n_speech: torch.Tensor, T: int, silent: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary positions and visible speech lengths of T behaviour tokens per sequence.

        boa (B,): index of BOA in the full speech sequence (2 + number of phonemes); n_speech (B,):
        its real length (padding excluded). Token t writes frame f = t - history; its chunk ends at
        frame f_end, whose codebooks are all in the input by audio step f_end + lookahead, at
        position boa + 1 + f_end + lookahead. A ``silent`` sequence (a command: no audio at all)
        sees all of its speech positions. Returns positions (B, T), visible (B, T).
        """
        c = self.config
        t = torch.arange(T, device=boa.device)
        frame = t - c.history  # (T,)
        chunk_end = (t // c.chunk + 1) * c.chunk - 1 - c.history  # (T,) last frame of each token's chunk
        positions = boa[:, None] + 1 + frame[None]  # (B, T)
        visible = boa[:, None] + 2 + chunk_end[None] + self.lookahead  # (B, T) keys 0 .. that position
        visible = torch.where(chunk_end[None] < 0, boa[:, None] + 1, visible)  # before the speech: the text
        visible = torch.minimum(visible, n_speech[:, None])
        if silent is not None:
            visible = torch.where(silent[:, None], n_speech[:, None], visible)
        return positions, visible

    # -- checkpoints ------------------------------------------------------------------------------

    def trainable(self) -> nn.Module:
        """What trains and what a checkpoint holds: the behaviour part, or everything in dense mode."""
        return self if self.config.mode == "dense" else self.behaviour

    def config_dict(self) -> dict:
        return {"kind": "mot", "model": dataclasses.asdict(self.config), "speech": self.speech.config_dict(),
                "speech_digest": speech_digest(self.speech)}


def speech_digest(speech: KodamaTTS) -> str:
    """A digest of the speech expert's weights: a behaviour expert is trained against one speech expert."""
    h = hashlib.sha256()
    for name, p in sorted(speech.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_mot(directory: str | Path, speech: str | Path | KodamaTTS | None = None) -> MixtureOfTransformers:
    """A trained mixture (eval mode) from its checkpoint folder; clear errors otherwise.

    ``speech``: the speech expert (a Kodama TTS folder or model). None = the folder recorded at
    training time. In expert and lora modes the checkpoint holds only the behaviour part and must
    meet the very speech expert it was trained against (its weight digest); a dense checkpoint
    holds everything, the speech expert's fine-tuned weights included.
    """
    from anima.checkpoint import CheckpointError, load_weights, read_config
    from anima.talker.model.kodama_tts import load_kodama_tts

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such MoT checkpoint folder")
    meta = read_config(directory)
    cfg = meta.get("config", {})
    if not isinstance(cfg, dict) or cfg.get("kind") != "mot":
        raise CheckpointError(f"{directory}: not a mixture-of-transformers checkpoint (config kind "
                              f"{cfg.get('kind') if isinstance(cfg, dict) else None!r})")
    fields = {f.name for f in dataclasses.fields(MoTConfig)}
    unknown = sorted(set(cfg["model"]) - fields)
    if unknown:
        raise CheckpointError(f"{directory}: config has fields this code does not know: {unknown}")
    config = MoTConfig(**cfg["model"])
    if speech is None:
        speech = cfg.get("speech_dir")
        if speech is None:
            raise CheckpointError(f"{directory}: the checkpoint does not say where its speech expert is; pass it")
    if not isinstance(speech, KodamaTTS):
        speech, _ = load_kodama_tts(speech)
    model = MixtureOfTransformers(config, speech)
    if config.mode == "dense":
        load_weights(directory, model)
    else:
        found = speech_digest(speech)
        if found != cfg.get("speech_digest"):
            raise CheckpointError(f"{directory}: trained against the speech expert {cfg.get('speech_digest')}, "
                                  f"given {found}: retrain the behaviour expert for this TTS")
        load_weights(directory, model.behaviour)
    return model.eval()
