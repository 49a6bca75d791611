"""anima phoneme judge: a small CTC phoneme recogniser that scores the intelligibility of speech.

PocketSphinx cannot judge espeak-ng speech (86-95 % WER on clean espeak clips), so the talker's
intelligibility metric is the phoneme error rate (PER) of this recogniser, trained on the speech
corpus's own ground truth: log-mel (80 x 100 Hz) -> two convolutions (stride 2, 50 Hz) -> pre-norm
transformer blocks (self-attention, depthwise convolution for position, feed-forward) -> CTC over
the corpus phoneme inventory (``phonemes.json``) plus one extra blank index. There is no absolute
position embedding, so a model trained on 3 s crops reads whole utterances of any length.

Silence symbols (``_``, ``_:``, ...) are never targets; they are output units that learn never to fire,
kept so the output index of a phoneme is its index in ``phonemes.json``.

    judge = PhonemeJudge.from_pretrained("out/talker/runs/judge")
    judge.recognize(samples)  # ['h', '@', 'l', 'oU', ...] from (N,) float32 at 24 kHz
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from anima.checkpoint import CheckpointError, load_weights, read_config
from anima.talker.model.features import N_MELS, judge_features

MODEL_NAME = "anima phoneme judge"


def is_silence(symbol: str) -> bool:
    """Pauses (``_``, ``_:``, ``_!``) and empty symbols: never a recognition target."""
    return not symbol or symbol.startswith("_")


def ctc_collapse(path: Sequence[int], blank: int) -> list[int]:
    """Greedy CTC decoding of a best path: merge repeated ids, then drop blanks.

    ``[a, a, blank, a, b, b]`` -> ``[a, a, b]`` (a blank separates two real repeats).
    """
    out: list[int] = []
    prev = None
    for i in path:
        i = int(i)
        if i != prev and i != blank:
            out.append(i)
        prev = i
    return out


# ---------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class PhonemeJudgeConfig:
    inventory: tuple[str, ...] = ("_",)  # the corpus phonemes.json; index 0 is silence
    n_mels: int = N_MELS  # input log-mel bands (100 Hz frames)
    d_model: int = 144  # width after the convolutional front end (50 Hz)
    n_layers: int = 3  # transformer blocks
    n_heads: int = 4
    conv_kernel: int = 15  # depthwise convolution per block (300 ms at 50 Hz): local context + position
    ff_mult: int = 4  # feed-forward hidden = ff_mult * d_model
    dropout: float = 0.1

    @property
    def blank(self) -> int:
        """The CTC blank: one index past the inventory."""
        return len(self.inventory)

    @property
    def n_outputs(self) -> int:
        return len(self.inventory) + 1


CONFIGS = {
    "tiny": {"d_model": 32, "n_layers": 1, "n_heads": 2, "conv_kernel": 5, "ff_mult": 2},
    "small": {},
}


class ConvFrontEnd(nn.Module):
    """Two 1-D convolutions over log-mel; the first halves the frame rate. (B, T, n_mels) -> (B, ceil(T/2), d)"""

    def __init__(self, config: PhonemeJudgeConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(config.n_mels, config.d_model, 5, stride=2, padding=2)
        self.conv2 = nn.Conv1d(config.d_model, config.d_model, 3, padding=1)

    def forward(self, x: torch.Tensor, valid_in: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (B, T, n_mels); valid_in (B, T), valid (B, T') bool. Padding reads as zeros, as at an edge."""
        x = x.masked_fill(~valid_in[..., None], 0.0).transpose(1, 2)
        x = F.gelu(self.conv1(x)).masked_fill(~valid[:, None, :], 0.0)  # (B, d, T')
        return F.gelu(self.conv2(x)).transpose(1, 2)  # (B, T', d)


class Block(nn.Module):
    """Pre-norm: self-attention, depthwise convolution, feed-forward; each residual."""

    def __init__(self, config: PhonemeJudgeConfig) -> None:
        super().__init__()
        d = config.d_model
        if d % config.n_heads:
            raise ValueError(f"d_model {d} does not divide into {config.n_heads} heads")
        self.n_heads = config.n_heads
        self.ln_attn = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln_conv = nn.LayerNorm(d)
        self.dwconv = nn.Conv1d(d, d, config.conv_kernel, padding=config.conv_kernel // 2, groups=d)
        self.pwconv = nn.Linear(d, d)
        self.ln_ff = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, config.ff_mult * d)
        self.ff2 = nn.Linear(config.ff_mult * d, d)
        self.drop = nn.Dropout(config.dropout)
        self.p_attn = config.dropout

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (B, T, d), valid (B, T) bool (False on padding) -> (B, T, d)"""
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).split(d, dim=-1)
        q, k, v = (t.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, h, T, dh)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :],
                                           dropout_p=self.p_attn if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, T, d)))
        h = self.ln_conv(x).masked_fill(~valid[..., None], 0.0)  # padding must not leak into real frames
        h = self.dwconv(h.transpose(1, 2)).transpose(1, 2)  # (B, T, d)
        x = x + self.drop(self.pwconv(F.gelu(h)))
        return x + self.drop(self.ff2(F.gelu(self.ff1(self.ln_ff(x)))))


class PhonemeJudge(nn.Module):
    """Log-mel -> per-frame log-probabilities over the inventory + blank, at 50 Hz."""

    def __init__(self, config: PhonemeJudgeConfig) -> None:
        super().__init__()
        if not config.inventory or not is_silence(config.inventory[0]):
            raise ValueError("PhonemeJudgeConfig.inventory must start with the silence symbol '_'")
        self.config = config
        self.front = ConvFrontEnd(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_out = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.n_outputs)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """Frames out for frames in (the front end's stride-2 convolution): ceil(T / 2)."""
        return (lengths + 1) // 2

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, n_mels), lengths (B,) -> log-probs (B, T', n_outputs), out lengths (B,)"""
        out_len = self.output_lengths(lengths)
        steps = torch.arange(feats.shape[1], device=feats.device)[None, :]
        valid = steps[:, :(feats.shape[1] + 1) // 2] < out_len[:, None]  # (B, T')
        x = self.front(feats, steps < lengths[:, None], valid)  # (B, T', d)
        for block in self.blocks:
            x = block(x, valid)
        return F.log_softmax(self.head(self.ln_out(x)), dim=-1), out_len

    def loss(self, feats: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor) -> torch.Tensor:
        """CTC loss per target phoneme, batch mean. targets (B, S) padded, target_lengths (B,)"""
        logp, out_len = self(feats, lengths)
        return F.ctc_loss(logp.transpose(0, 1), targets, out_len, target_lengths, blank=self.config.blank,
                          reduction="mean", zero_infinity=True)

    def decode(self, logp: torch.Tensor, lengths: torch.Tensor) -> list[list[str]]:
        """Greedy CTC decoding of a batch of log-probs (B, T', V) -> phoneme symbols per item."""
        best = logp.argmax(-1).cpu().numpy()  # (B, T')
        inventory = self.config.inventory
        out = []
        for path, n in zip(best, lengths.tolist(), strict=True):
            ids = ctc_collapse(path[:n], self.config.blank)
            out.append([inventory[i] for i in ids if not is_silence(inventory[i])])
        return out

    @torch.no_grad()
    def recognize(self, samples: np.ndarray) -> list[str]:
        """The phonemes heard in (N,) float32 samples at 24 kHz (greedy CTC), silence left out."""
        feats = torch.from_numpy(judge_features(samples, "PhonemeJudge.recognize"))[None]  # (1, T, n_mels)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            logp, out_len = self(feats.to(device), torch.tensor([feats.shape[1]], device=device))
        finally:
            self.train(was_training)
        return self.decode(logp, out_len)[0]

    def checkpoint_config(self) -> dict:
        """What ``from_pretrained`` needs, for ``anima.checkpoint.save_checkpoint``'s config."""
        return {"model": MODEL_NAME, "judge": dataclasses.asdict(self.config)}

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> PhonemeJudge:
        """Load a trained judge (safetensors + config.json); a clear CheckpointError if it is not one."""
        meta = read_config(directory)
        cfg = meta.get("config", {})
        if not isinstance(cfg, dict) or cfg.get("model") != MODEL_NAME or "judge" not in cfg:
            found = cfg.get("model") if isinstance(cfg, dict) else None
            raise CheckpointError(f"{directory}: not an {MODEL_NAME} checkpoint (model {found!r})")
        try:
            config = PhonemeJudgeConfig(**{**cfg["judge"], "inventory": tuple(cfg["judge"]["inventory"])})
            model = cls(config)
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{directory}: bad {MODEL_NAME} config ({e})") from None
        load_weights(directory, model)
        return model.to(device).eval()


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
