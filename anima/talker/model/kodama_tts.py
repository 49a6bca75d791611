"""Kodama-style TTS: a decoder-only transformer that writes speech-tokenizer codes after phonemes (paper 2.2).

One sequence per utterance::

    [speaker] [emotion] [prompt phonemes] [phonemes] [BOA] [prompt audio steps] [audio steps ...] [EOA]

- ``speaker``: a (D_spk,) speaker vector (GE2E-style encoder) projected to one position; the zero
  vector means "unknown" (training drops it sometimes so the model learns that case).
- ``emotion``: a (len(EMOTIONS),) vector projected to one position: one-hot of the plan's emotion
  by default, or a real emotion2vec-style vector of the same size.
- Text tokens are **phonemes** (the espeak-ng mnemonics of the corpus inventory, ``phonemes.json``),
  not characters: with a few hours of speech the model should spend its capacity on prosody and
  voice, not on learning English spelling; espeak-ng's phonemiser is an offline G2P that already
  handles it (numbers, abbreviations, stress). Pause symbols (``_``, ``_:``: espeak's clause and
  phrase pauses, which ``phonemize`` also writes at commas and full stops) stand for punctuation;
  ``normalize_phonemes`` collapses repeats of them the same way for training and at run time.
- Audio: each 12.5 Hz frame is 8 codes (codebooks 0-1 semantic, 2-7 acoustic); one position per
  *step* of the delayed stream (``delay.py``), its 8 codes embedded in 8 tables (1024 codes + PAD +
  EOA each) and summed (MusicGen). 8 heads predict the next step's codes. ``EOA`` is a code id: the
  frame after the last is all-EOA, delayed like any frame; only codebook 0 decides it (the others'
  EOA is forced when their delay reaches that frame).
- Voice cloning (VALL-E's in-context scheme, the one Kodama's "acoustic exemplars" follow): the
  prompt utterance's phonemes go before the target phonemes and its codes are a prefix of the
  audio; generation continues the prompt's audio, so it keeps its voice. The loss skips the prompt.

Loss = NLL of the target's audio codes only (the paper's L_TTS): conditioning, text, prompt and
delay pads are masked. Inference keeps a KV cache in a caller-owned state (``model.new_state()``);
``stream`` yields each frame (8 codes, delay undone) as soon as its last codebook is written.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anima.checkpoint import CheckpointError, load_weights, read_config
from anima.core.plan import EMOTIONS
from anima.talker.model.delay import apply_delay, check_delays, delays_for

IGNORE = -100  # target id the loss skips


# ---------------------------------------------------------------------------------------------
# Blocks


class RotaryEmbedding(nn.Module):
    """Rotary positions (RoPE): relative, so a KV cache only needs the absolute offset of each step."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim), persistent=False)

    def forward(self, x: torch.Tensor, offset: int) -> torch.Tensor:  # (B, H, T, hd)
        T = x.shape[-2]
        angles = torch.arange(offset, offset + T, device=x.device, dtype=torch.float32)[:, None] * self.inv_freq  # (T, hd/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, config: KodamaTTSConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.d_model // config.n_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.rope = RotaryEmbedding(self.head_dim)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cache: LayerCache | None, offset: int,
                probs: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``probs``: when given (training, no cache), head 0's attention weights (B, T, T) are appended to it."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        q, k = self.rope(q, offset), self.rope(k, offset)
        if probs is not None:  # the alignment head, computed apart (SDPA does not return weights)
            scores = (q[:, 0] @ k[:, 0].transpose(1, 2)) / math.sqrt(self.head_dim)  # (B, T, T)
            causal_mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            probs.append(scores.masked_fill(~causal_mask, -math.inf).softmax(-1))
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, offset + T, hd)
        if offset == 0:
            mask, causal = None, True
        elif T == 1:
            mask, causal = None, False  # one new step sees every cached one
        else:  # a chunk after a cached prefix: row i sees keys up to offset + i
            mask = torch.ones(T, offset + T, dtype=torch.bool, device=x.device).tril(offset)
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, config: KodamaTTSConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.attn = Attention(config)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, 4 * config.d_model), nn.GELU(),
                                 nn.Linear(4 * config.d_model, config.d_model), nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor, cache: LayerCache | None, offset: int,
                probs: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, offset, probs)
        return x + self.mlp(self.ln2(x))


# ---------------------------------------------------------------------------------------------
# Config and state


@dataclass
class KodamaTTSConfig:
    symbols: tuple[str, ...] = ("_",)  # phoneme inventory (corpus phonemes.json; index 0 = silence)
    n_codebooks: int = 8  # codes per 12.5 Hz frame (0-1 semantic, 2-7 acoustic)
    codebook_size: int = 1024  # codes per codebook; PAD = codebook_size, EOA = codebook_size + 1
    delay: str = "musicgen"  # delay pattern (delay.py): musicgen (q steps) | moshi (semantic 0, acoustic 1) | none
    n_semantic: int = 2  # semantic codebooks (the moshi pattern leaves them undelayed)
    d_speaker: int = 128  # speaker vector size (0 vector = unknown voice)
    d_emotion: int = len(EMOTIONS)  # emotion vector size (one-hot of anima.core.plan.EMOTIONS by default)
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    dropout: float = 0.0
    max_phonemes: int = 400  # text positions (prompt + target phonemes) the model accepts
    max_frames: int = 600  # audio frames (prompt + generated) = 48 s at 12.5 Hz
    tie_heads: bool = True  # output heads share the audio embedding tables (a quarter fewer weights)
    align_layers: tuple[int, ...] = ()  # layers whose head 0 training guides onto the phoneme being spoken

    @property
    def delays(self) -> tuple[int, ...]:
        return delays_for(self.delay, self.n_codebooks, self.n_semantic)

    @property
    def pad(self) -> int:
        return self.codebook_size

    @property
    def eoa(self) -> int:
        return self.codebook_size + 1

    @property
    def boa(self) -> int:  # text-vocabulary id of the begin-of-audio token
        return len(self.symbols)

    @classmethod
    def preset(cls, name: str, **overrides) -> KodamaTTSConfig:
        """``tiny`` (tests: seconds) or ``small`` (sized for < 40 ms per frame on one CPU thread)."""
        match name:
            case "tiny":
                base = dict(n_layer=2, n_head=2, d_model=64, max_phonemes=128, max_frames=256, align_layers=(1,))
            case "small":  # measured: ~10 ms per frame, first frame ~130 ms for 80 phonemes (1 thread, musicgen delay)
                base = dict(n_layer=6, n_head=4, d_model=256, align_layers=(2, 3))
            case _:
                raise ValueError(f"unknown config {name!r}; choose tiny or small")
        return cls(**{**base, **overrides})


class LayerCache:
    """One layer's keys and values, grown in place (capacity doubles) so a step copies nothing old."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[2]
        if self.k is None or end > self.k.shape[2]:
            cap = max(64, 2 * end)
            nk, nv = k.new_empty(*k.shape[:2], cap, k.shape[3]), v.new_empty(*v.shape[:2], cap, v.shape[3])
            if self.k is not None:
                nk[:, :, :self.length], nv[:, :, :self.length] = self.k[:, :, :self.length], self.v[:, :, :self.length]
            self.k, self.v = nk, nv
        self.k[:, :, self.length:end], self.v[:, :, self.length:end] = k, v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


@dataclass
class TTSState:
    """A caller-owned KV cache: one per utterance being generated (``model.new_state()``)."""

    layers: list[LayerCache] = field(default_factory=list)
    length: int = 0  # positions already in the cache

    def reset(self) -> None:
        self.layers = [LayerCache() for _ in self.layers]
        self.length = 0


@dataclass
class Sampling:
    """Per-codebook sampling: a float/int applies to all codebooks, a sequence gives one per codebook."""

    temperature: float | Sequence[float] = 0.8  # 0 = greedy
    top_k: int | Sequence[int] = 50  # 0 = no cut


# ---------------------------------------------------------------------------------------------
# Sequence layout (shared by training batches and inference)


def make_sequence(config: KodamaTTSConfig, text: Sequence[int], codes: torch.Tensor | None,
                  prompt_text: Sequence[int] = (), prompt_codes: torch.Tensor | None = None,
                  text_align: Sequence[int] | None = None, prompt_align: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """One utterance as model inputs; the two conditioning positions come first and are not in these tensors.

    ``text``/``prompt_text``: phoneme ids. ``codes``: (K, T) target frames (None at inference: the
    sequence then ends at the prompt's last complete step). Returns ``text`` (L,) text ids (0 at audio
    positions), ``audio`` (L, K) codes (PAD at text positions), ``is_audio`` (L,) bool and, with
    ``codes``, ``target`` (2 + L, K): the code each position's logits must predict, IGNORE elsewhere.
    With ``text_align`` (T,) (and ``prompt_align`` (P,) for a prompt): the index of the phoneme spoken
    in each frame; adds ``align`` (2 + L,): for each position that predicts a step, the sequence
    position of the phoneme of the frame it writes first (its codebook-0 frame), -1 elsewhere.
    """
    K, delays = config.n_codebooks, config.delays
    P = 0 if prompt_codes is None else prompt_codes.shape[1]
    frames = [prompt_codes] if prompt_codes is not None else []
    if codes is not None:
        frames += [codes, torch.full((K, 1), config.eoa, dtype=torch.long)]  # the all-EOA frame ends it
    full = torch.cat(frames, dim=1).long() if frames else torch.zeros(K, 0, dtype=torch.long)
    steps = apply_delay(full, delays, config.pad)  # (K, S)
    if codes is None:
        steps = steps[:, :P]  # steps 0..P-1 are fully known; later ones mix in frames still to write
    words = list(prompt_text) + list(text) + [config.boa]
    n_text, S = len(words), steps.shape[1]
    n_in = S - 1 if codes is not None else S  # the last step is only ever a target
    L = n_text + n_in
    out = {
        "text": torch.tensor(words + [0] * n_in, dtype=torch.long),
        "audio": torch.cat([torch.full((n_text, K), config.pad, dtype=torch.long), steps[:, :n_in].T], dim=0),  # (L, K)
        "is_audio": torch.arange(L) >= n_text,
    }
    if codes is not None:
        target = torch.full((2 + L, K), IGNORE, dtype=torch.long)
        frame = torch.arange(S)[:, None] - torch.tensor(delays)[None]  # (S, K) frame index each step holds
        keep = (frame >= P) & (steps.T != config.pad)  # the target's codes and EOA; not the prompt, not pads
        boa = 2 + n_text - 1  # position of BOA in the full sequence: its logits predict step 0
        target[boa:boa + S] = torch.where(keep, steps.T, IGNORE)
        out["target"] = target
        if text_align is not None:
            n_prompt_text, T = len(prompt_text), codes.shape[1]
            if len(text_align) != T or (P and (prompt_align is None or len(prompt_align) != P)):
                raise ValueError(f"alignment: {len(text_align)} target / {0 if prompt_align is None else len(prompt_align)} "
                                 f"prompt frames for {T} / {P} frames of codes")
            spoken = list(prompt_align or [])[:P] + [n_prompt_text + int(a) for a in text_align] + [n_prompt_text + len(text) - 1]
            align = torch.full((2 + L,), -1, dtype=torch.long)
            spoken += [spoken[-1]] * (S - len(spoken))  # the delay tail: later codebooks finish the last frames
            align[boa:boa + S] = 2 + torch.tensor(spoken[:S], dtype=torch.long)  # the position predicting step j writes frame j first
            out["align"] = align
    return out


# ---------------------------------------------------------------------------------------------
# The model


class KodamaTTS(nn.Module):
    def __init__(self, config: KodamaTTSConfig) -> None:
        super().__init__()
        check_delays(config.delays, config.n_codebooks)
        if any(not 0 <= i < config.n_layer for i in config.align_layers):
            raise ValueError(f"align_layers {config.align_layers}: the model has layers 0..{config.n_layer - 1}")
        if config.d_model % config.n_head:
            raise ValueError(f"d_model {config.d_model} does not divide into {config.n_head} heads")
        if not config.symbols or config.symbols[0] != "_":
            raise ValueError(f"symbols must start with the silence symbol '_', got {config.symbols[:3]}")
        self.config = config
        K, V, d = config.n_codebooks, config.codebook_size + 2, config.d_model  # + PAD, EOA
        self.speaker_proj = nn.Linear(config.d_speaker, d)
        self.emotion_proj = nn.Linear(config.d_emotion, d)
        self.text_emb = nn.Embedding(len(config.symbols) + 1, d)  # phonemes + BOA
        self.audio_emb = nn.Parameter(torch.randn(K, V, d) * 0.02)  # one table per codebook
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(d)
        if not config.tie_heads:
            self.heads = nn.Linear(d, K * V, bias=False)  # the 8 heads as one matmul
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by depth
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        self._symbol_ids = {s: i for i, s in enumerate(config.symbols)}

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def new_state(self) -> TTSState:
        return TTSState([LayerCache() for _ in self.blocks])

    def embed(self, text: torch.Tensor, audio: torch.Tensor, is_audio: torch.Tensor) -> torch.Tensor:
        """(B, L) text ids, (B, L, K) codes, (B, L) bool -> (B, L, d): each position is a phoneme or a summed step."""
        K = self.config.n_codebooks
        steps = self.audio_emb[torch.arange(K, device=audio.device), audio].sum(-2)  # (B, L, K, d) -> (B, L, d)
        return torch.where(is_audio[..., None], steps, self.text_emb(text))

    def forward(self, speaker: torch.Tensor | None, emotion: torch.Tensor | None, text: torch.Tensor,
                audio: torch.Tensor, is_audio: torch.Tensor, state: TTSState | None = None,
                last_only: bool = False, attn_probs: list[torch.Tensor] | None = None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the next step's codes at every position: (B, n, K, V), V = codebook_size + 2.

        ``speaker`` (B, D_spk) and ``emotion`` (B, D_emo) are given for the first call of a sequence
        (they fill positions 0 and 1) and None for later chunks of a cached one. ``text`` (B, L),
        ``audio`` (B, L, K), ``is_audio`` (B, L): the positions after them (``make_sequence``).
        n = L (+ 2 with the conditioning), or 1 with ``last_only`` (generation: the 8 heads are the
        largest matmul, so a prefill computes them for its last position only). With ``state``, keys
        and values are appended to its cache. ``attn_probs``: a list that receives head 0's attention
        weights (B, n, n) of each layer in ``config.align_layers`` (training). ``rows`` (B, n) bool:
        logits only at these positions, as (1, M, K, V) (training: the positions with a target; the
        heads are the largest matmul and most positions are phonemes or the voice prompt).
        """
        x = self.embed(text, audio, is_audio)  # (B, L, d)
        if speaker is not None:
            cond = torch.stack([self.speaker_proj(speaker), self.emotion_proj(emotion)], dim=1)  # (B, 2, d)
            x = torch.cat([cond, x], dim=1)  # (B, 2 + L, d)
        offset = state.length if state is not None else 0
        for i, block in enumerate(self.blocks):
            x = block(x, state.layers[i] if state is not None else None, offset,
                      attn_probs if i in self.config.align_layers else None)
        if state is not None:
            state.length += x.shape[1]
        x = self.ln_f(x[:, -1:] if last_only else x)
        if rows is not None:
            x = x[rows][None]  # (1, M, d)
        B, n, _ = x.shape
        if self.config.tie_heads:  # each codebook's head is its embedding table (GPT-2's weight tying)
            return torch.einsum("bnd,kvd->bnkv", x, self.audio_emb)  # (B, n, K, V)
        return self.heads(x).view(B, n, self.config.n_codebooks, -1)  # (B, n, K, V)

    def loss(self, batch: dict[str, torch.Tensor], align_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
        """L_TTS: mean NLL over the target's audio codes (``batch``: padded ``make_sequence`` outputs).

        With ``align_weight`` > 0 and ``batch["align"]``, adds the guided-attention term: head 0 of each
        ``config.align_layers`` layer should put its weight on the phoneme being spoken (+-1 phoneme),
        -log of that mass averaged over the audio positions. It only shapes training (DC-TTS's guided
        attention, with the corpus's phoneme timings instead of a diagonal prior): inference is unchanged.
        """
        guide = align_weight > 0 and "align" in batch and bool(self.config.align_layers)
        probs: list[torch.Tensor] | None = [] if guide else None
        rows = (batch["target"] != IGNORE).any(-1)  # (B, n) positions with something to predict
        logits = self(batch["speaker"], batch["emotion"], batch["text"], batch["audio"], batch["is_audio"],
                      attn_probs=probs, rows=rows)[0]  # (M, K, V)
        target = batch["target"][rows]  # (M, K)
        nll = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE, reduction="none").view_as(target)
        valid = target != IGNORE
        loss = nll.sum() / valid.sum().clamp(min=1)
        ns = self.config.n_semantic
        stats = {"loss": loss.item()}
        if guide:
            align = batch["align"]  # (B, n) key position of the spoken phoneme, -1 = not an audio query
            rows = align >= 0
            keys = torch.arange(align.shape[1], device=align.device)  # (n,)
            window = (keys[None, None] - align[..., None]).abs() <= 1  # (B, n, n)
            mass = torch.stack([(p * window).sum(-1) for p in probs])  # (layers, B, n)
            align_loss = -(mass.clamp_min(1e-6).log() * rows).sum() / (rows.sum() * len(probs)).clamp(min=1)
            stats["align"] = align_loss.item()
            loss = loss + align_weight * align_loss
        with torch.no_grad():
            stats.update({"semantic_nll": (nll[..., :ns].sum() / valid[..., :ns].sum().clamp(min=1)).item(),
                          "acoustic_nll": (nll[..., ns:].sum() / valid[..., ns:].sum().clamp(min=1)).item()})
        return loss, stats

    # -- inputs -----------------------------------------------------------------------------------

    def phoneme_ids(self, phonemes: Sequence[str], what: str = "text") -> list[int]:
        """Ids of espeak-ng phoneme symbols; a clear error for empty input or symbols not in the inventory."""
        if isinstance(phonemes, str):
            raise TypeError(f"{what}: expected a list of phoneme symbols, got a string (phonemize the text first)")
        if len(phonemes) == 0:
            raise ValueError(f"{what}: empty (nothing to say)")
        unknown = sorted({p for p in phonemes if p not in self._symbol_ids})
        if unknown:
            raise ValueError(f"{what}: unknown phoneme symbol(s) {unknown[:10]}; the model knows {len(self.config.symbols)} "
                             f"symbols ({' '.join(self.config.symbols[:40])}{' ...' if len(self.config.symbols) > 40 else ''})")
        return [self._symbol_ids[p] for p in phonemes]

    def condition(self, speaker: torch.Tensor | None, emotion: str | torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, D_spk) and (1, D_emo) vectors: None speaker = zeros (unknown), emotion name = one-hot."""
        c = self.config
        if speaker is None:
            speaker = torch.zeros(c.d_speaker)
        speaker = torch.as_tensor(speaker, dtype=torch.float32)
        if speaker.shape != (c.d_speaker,):
            raise ValueError(f"speaker vector: expected shape ({c.d_speaker},), got {tuple(speaker.shape)}")
        if emotion is None:
            emotion = "neutral"
        if isinstance(emotion, str):
            emotion = emotion_vector(emotion, c.d_emotion)
        emotion = torch.as_tensor(emotion, dtype=torch.float32)
        if emotion.shape != (c.d_emotion,):
            raise ValueError(f"emotion vector: expected shape ({c.d_emotion},) (one per emotion: {', '.join(EMOTIONS)}), "
                             f"got {tuple(emotion.shape)}")
        return speaker[None], emotion[None]

    # -- generation -------------------------------------------------------------------------------

    @torch.no_grad()
    def stream(self, phonemes: Sequence[str], speaker: torch.Tensor | None = None, emotion: str | torch.Tensor | None = None,
               prompt_phonemes: Sequence[str] = (), prompt_codes: torch.Tensor | None = None,
               state: TTSState | None = None, sampling: Sampling | None = None, seed: int | None = None,
               max_frames: int | None = None, cancel: threading.Event | None = None) -> Iterator[torch.Tensor]:
        """Yield the utterance's frames, each (K,) codes with the delay undone, as soon as it is complete.

        ``prompt_phonemes`` + ``prompt_codes`` (K, P): another utterance of the voice to clone
        (its frames are not yielded). Stops at EOA, after ``max_frames`` new frames (default: the
        room left in the context), or when ``cancel`` is set (checked before every step).
        ``state``: an empty cache (``new_state()`` or after ``state.reset()``); it holds this
        utterance afterwards. ``seed`` makes the sampling reproducible.
        """
        c, K, delays = self.config, self.config.n_codebooks, self.config.delays
        D = max(delays)
        text = self.phoneme_ids(phonemes, "text")
        prompt_text = self.phoneme_ids(prompt_phonemes, "prompt phonemes") if len(prompt_phonemes) else []
        text = [self._symbol_ids[p] for p in normalize_phonemes([c.symbols[i] for i in text])]
        prompt_text = [self._symbol_ids[p] for p in normalize_phonemes([c.symbols[i] for i in prompt_text])]
        if len(text) + len(prompt_text) > c.max_phonemes:
            raise ValueError(f"text too long: {len(text) + len(prompt_text)} phonemes (prompt included), "
                             f"the model takes at most {c.max_phonemes}; split it into sentences")
        P = 0
        if prompt_codes is not None:
            if prompt_codes.dim() != 2 or prompt_codes.shape[0] != K:
                raise ValueError(f"prompt codes: expected ({K}, frames), got {tuple(prompt_codes.shape)}")
            if not prompt_text:
                raise ValueError("prompt codes need their transcript (prompt_phonemes): the model continues the prompt")
            bad = (prompt_codes < 0) | (prompt_codes >= c.codebook_size)
            if bad.any():
                raise ValueError(f"prompt codes must lie in [0, {c.codebook_size}), got {int(prompt_codes[bad][0])}")
            P = prompt_codes.shape[1]
        room = c.max_frames - P
        if room <= 0:
            raise ValueError(f"voice prompt too long: {P} frames, the model takes at most {c.max_frames} in all")
        max_frames = room if max_frames is None else min(max_frames, room)
        spk, emo = self.condition(speaker, emotion)
        spk, emo = spk.to(self.audio_emb.device), emo.to(self.audio_emb.device)
        sampling = sampling or Sampling()
        temps = torch.tensor(_per_codebook(sampling.temperature, K, "temperature"), dtype=torch.float32, device=self.audio_emb.device)
        top_ks = _per_codebook(sampling.top_k, K, "top_k")
        gen = torch.Generator(device=self.audio_emb.device)
        gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        if state is None:
            state = self.new_state()
        if state.length:
            raise RuntimeError("stream: the state already holds a sequence; call state.reset() or model.new_state()")

        seq = make_sequence(c, text, None, prompt_text, prompt_codes.long().cpu() if prompt_codes is not None else None)
        dev = self.audio_emb.device
        logits = self(spk, emo, seq["text"][None].to(dev), seq["audio"][None].to(dev), seq["is_audio"][None].to(dev), state,
                        last_only=True)
        logits = logits[0, -1]  # (K, V): the next step's codes
        written: list[torch.Tensor] = []  # (K,) per step of the delayed stream, prompt steps included
        prompt_list = prompt_codes.long().tolist() if prompt_codes is not None else []
        for s in range(P):
            written.append(seq["audio"][len(seq["text"]) - P + s].to(dev))
        end: int | None = None  # the EOA frame, once codebook 0 writes it
        s = P
        while True:
            if cancel is not None and cancel.is_set():
                return
            row = logits.clone()  # (K, V)
            row[:, c.pad] = -math.inf  # pads are placed, never sampled
            row[1:, c.eoa] = -math.inf  # only codebook 0 ends the utterance
            sampled = _sample(row, temps, top_ks, gen).tolist()  # (K,) all at once; forced ones overwritten below
            codes: list[int] = []
            for q in range(K):
                frame = s - delays[q]
                if frame < 0:
                    codes.append(c.pad)  # before this codebook's first frame
                elif frame < P:
                    codes.append(prompt_list[q][frame])  # the prompt's codes, teacher-forced
                elif end is not None and frame >= end:
                    codes.append(c.eoa if frame == end else c.pad)
                elif q == 0 and frame - P >= max_frames:
                    codes.append(c.eoa)  # out of room: end here
                else:
                    codes.append(sampled[q])
                if q == 0 and codes[0] == c.eoa and end is None:
                    end = frame  # codebook 0 wrote EOA; the codebooks with delay 0 follow it at once
            step = torch.tensor(codes, dtype=torch.long, device=dev)
            written.append(step)
            done = s - D  # the frame whose last codebook this step wrote
            if done >= P and (end is None or done < end):
                yield torch.stack([written[done + d][q] for q, d in enumerate(delays)])  # (K,)
            if end is not None and max(done + 1, P) >= end:
                return  # every frame before the EOA frame is out
            s += 1
            logits = self(None, None, torch.zeros(1, 1, dtype=torch.long, device=dev), step[None, None],
                          torch.ones(1, 1, dtype=torch.bool, device=dev), state, last_only=True)[0, -1]

    def generate(self, phonemes: Sequence[str], **kwargs) -> torch.Tensor:
        """All frames of ``stream`` at once: (K, T) codes, delay undone, ready for the tokenizer's decode."""
        frames = list(self.stream(phonemes, **kwargs))
        if not frames:
            return torch.zeros(self.config.n_codebooks, 0, dtype=torch.long)
        return torch.stack(frames, dim=1)

    # -- loading ----------------------------------------------------------------------------------

    def config_dict(self) -> dict:
        return {"kind": "kodama_tts", "model": dataclasses.asdict(self.config)}

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> KodamaTTS:
        """The shared inference model of a checkpoint directory: loaded once per process, eval, no grads.

        Thread-safe; every session uses its own ``new_state()``. For a copy to train, use ``load_kodama_tts``.
        """
        key = Path(directory).resolve()
        with _PRETRAINED_LOCK:
            model = _PRETRAINED.get(key)
            if model is None:
                model, _ = load_kodama_tts(key)
                model.requires_grad_(False)
                _PRETRAINED[key] = model
        return model


_PRETRAINED: dict[Path, KodamaTTS] = {}  # resolved checkpoint directory -> shared inference model
_PRETRAINED_LOCK = threading.Lock()


def load_kodama_tts(directory: str | Path) -> tuple[KodamaTTS, dict]:
    """A fresh model with a checkpoint's weights (eval mode) and its metadata; clear errors otherwise."""
    if not Path(directory).is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    meta = read_config(directory)
    cfg = meta.get("config", {})
    if not isinstance(cfg, dict) or cfg.get("kind") != "kodama_tts":
        raise CheckpointError(f"{directory}: not a Kodama TTS checkpoint (config kind {cfg.get('kind') if isinstance(cfg, dict) else None!r})")
    fields = {f.name for f in dataclasses.fields(KodamaTTSConfig)}
    unknown = sorted(set(cfg["model"]) - fields)
    if unknown:
        raise CheckpointError(f"{directory}: config has fields this code does not know: {unknown}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["model"].items()}
    model = KodamaTTS(KodamaTTSConfig(**values))
    load_weights(directory, model)  # CheckpointError for a corrupt file or tensors of the wrong shape
    return model.eval(), meta


# ---------------------------------------------------------------------------------------------
# Helpers


def normalize_phonemes(symbols: Sequence[str]) -> list[str]:
    """The phonemes the model reads: a repeated pause symbol (``_``, ``_:``) kept once.

    espeak's events report a phrase pause as ``_: _:`` where ``phonemize`` writes one ``_:``;
    training (manifest timings) and run time (``phonemize``) both go through this.
    """
    out: list[str] = []
    for s in symbols:
        if s.startswith("_") and out and out[-1] == s:
            continue
        out.append(s)
    return out


def emotion_vector(name: str, size: int = len(EMOTIONS)) -> torch.Tensor:
    """One-hot (len(EMOTIONS),) of a plan emotion."""
    if name not in EMOTIONS:
        raise ValueError(f"unknown emotion {name!r}; choose one of {', '.join(EMOTIONS)}")
    if size != len(EMOTIONS):
        raise ValueError(f"this model's emotion vectors have {size} dims, not one per plan emotion: pass a vector")
    v = torch.zeros(size)
    v[EMOTIONS.index(name)] = 1.0
    return v


def _per_codebook(value: float | int | Sequence, K: int, name: str) -> list:
    if isinstance(value, (int, float)):
        return [value] * K
    if len(value) != K:
        raise ValueError(f"{name}: one value or one per codebook ({K}), got {len(value)}")
    return list(value)


def _sample(logits: torch.Tensor, temperature: torch.Tensor, top_k: list[int], gen: torch.Generator) -> torch.Tensor:
    """One code per row of (K, V) logits: softmax(logits / T) over the row's top k; greedy where T is 0.

    ``temperature`` (K,), ``top_k`` K ints (0 = no cut).
    """
    K, V = logits.shape
    k_max = max(top_k)
    if 0 < k_max < V:  # cut each row below its own k-th largest logit
        values = torch.topk(logits, k_max, dim=-1).values  # (K, k_max)
        ks = torch.tensor([k if 0 < k <= k_max else k_max for k in top_k], device=logits.device)
        kth = values.gather(1, (ks - 1)[:, None])  # (K, 1)
        cut = torch.tensor([k > 0 for k in top_k], device=logits.device)[:, None]
        logits = logits.masked_fill(cut & (logits < kth), -math.inf)
    greedy = temperature <= 0
    probs = torch.softmax(logits / torch.where(greedy, 1.0, temperature)[:, None], dim=-1)  # (K, V)
    drawn = torch.multinomial(probs, 1, generator=gen)[:, 0]  # (K,)
    return torch.where(greedy, logits.argmax(-1), drawn)
