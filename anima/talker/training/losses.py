"""The tokenizer's training losses (paper eq. 1-5) and its semantic teacher slot.

- ``MelLoss``: L1 between log-mel spectrograms at several STFT resolutions.
- pitch: ``anima.talker.training.pitch.pitch_loss``.
- RVQ commitment + codebook: returned by the model (``anima.talker.model.rvq``).
- ``semantic_loss``: the quantised semantic tokens must predict the teacher's 50 Hz targets
  (each 12.5 Hz token predicts its 4 frames). The teacher is anything with the
  ``SemanticTeacher`` shape; ``PhonemeTeacher`` (frame phoneme ids from the corpus timings) is
  the offline stand-in for W2v-BERT. A real SSL teacher returns (B, T50, dim) float features
  from ``targets`` with ``kind = "features"``; set the tokenizer config's ``teacher_kind`` to
  "features" and ``teacher_dim`` to its width, and the same head is trained with L2 + cosine.
- LS-GAN (eq. 3, 4) and feature matching (eq. 5) over ``Discriminators`` outputs.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from anima.talker.data.manifest import Utterance, frame_labels
from anima.talker.model.tokenizer import mel_filterbank


class MelLoss(nn.Module):
    """Mean over resolutions of L1(log mel(x), log mel(y))."""

    def __init__(self, sample_rate: int = 24000, ffts: tuple[int, ...] = (512, 1024, 2048), n_mels: tuple[int, ...] = (40, 80, 128)) -> None:
        super().__init__()
        self.ffts = ffts
        for n, m in zip(ffts, n_mels, strict=True):
            self.register_buffer(f"fb{n}", mel_filterbank(sample_rate, n, m), persistent=False)
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, N) generated and reference audio."""
        total = x.new_zeros(())
        for n in self.ffts:
            fb, win = getattr(self, f"fb{n}"), getattr(self, f"win{n}")
            mels = [torch.log(fb @ torch.stft(s, n, n // 4, window=win, return_complex=True).abs().pow(2) + 1e-5)
                    for s in (x, y)]  # (B, M, T)
            total = total + F.l1_loss(mels[0], mels[1])
        return total / len(self.ffts)


# ---------------------------------------------------------------------------------------------
# Semantic teacher


class SemanticTeacher(Protocol):
    """Gives 50 Hz semantic targets for training crops."""

    kind: str  # "classes": (B, T50) int64 class ids; "features": (B, T50, dim) float
    dim: int  # number of classes or feature width

    def targets(self, utterances: list[Utterance], starts: list[int], num_frames: int) -> torch.Tensor:
        """Targets for crops starting at 50 Hz frame ``starts[i]`` of ``utterances[i]``, ``num_frames`` long."""
        ...


class PhonemeTeacher:
    """Frame-level phoneme ids from the corpus timings (index 0, silence, also pads past the end)."""

    kind = "classes"

    def __init__(self, inventory: list[str], frame_rate: float = 50.0) -> None:
        self.inventory, self.frame_rate, self.dim = inventory, frame_rate, len(inventory)
        self._cache: dict[str, np.ndarray] = {}

    def labels(self, utt: Utterance) -> np.ndarray:
        """The whole utterance's (ceil(duration * 50),) labels, computed once."""
        if utt.id not in self._cache:
            n = int(np.ceil(utt.duration_s * self.frame_rate)) + 1
            self._cache[utt.id] = frame_labels(utt, self.inventory, self.frame_rate, n)
        return self._cache[utt.id]

    def targets(self, utterances: list[Utterance], starts: list[int], num_frames: int) -> torch.Tensor:
        out = np.zeros((len(utterances), num_frames), np.int64)
        for i, (u, s) in enumerate(zip(utterances, starts, strict=True)):
            seg = self.labels(u)[s:s + num_frames]
            out[i, : len(seg)] = seg
        return torch.from_numpy(out)


def semantic_loss(pred: torch.Tensor, targets: torch.Tensor, kind: str) -> tuple[torch.Tensor, float]:
    """pred (B, T50, dim) from the quantised semantic tokens -> (loss, accuracy or cosine similarity)."""
    T = min(pred.shape[1], targets.shape[1])
    pred, targets = pred[:, :T], targets[:, :T]
    if kind == "classes":
        loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), targets.reshape(-1))
        return loss, float((pred.argmax(-1) == targets).float().mean())
    cos = F.cosine_similarity(pred, targets, dim=-1)
    return F.mse_loss(pred, targets) + (1 - cos).mean(), float(cos.mean())


# ---------------------------------------------------------------------------------------------
# LS-GAN and feature matching


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """Eq. 4: E[(1 - D(y))^2] + E[D(G(z))^2], summed over sub-discriminators."""
    return sum(torch.mean((1 - r[0]) ** 2) + torch.mean(f[0] ** 2) for r, f in zip(real, fake, strict=True))


def generator_adv_loss(fake: list) -> torch.Tensor:
    """Eq. 3: E[(1 - D(G(z)))^2], summed over sub-discriminators."""
    return sum(torch.mean((1 - f[0]) ** 2) for f in fake)


def feature_matching_loss(real: list, fake: list) -> torch.Tensor:
    """Eq. 5: mean L1 between the feature maps of real and generated audio, averaged per critic."""
    total = 0.0
    for (_, fr), (_, ff) in zip(real, fake, strict=True):
        total = total + sum(F.l1_loss(b, a.detach()) for a, b in zip(fr, ff, strict=True)) / len(fr)
    return total
