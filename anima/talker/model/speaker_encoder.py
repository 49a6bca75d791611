"""anima speaker encoder (GE2E): a 128-D voice embedding for speaker-similarity scores.

WavLM and other pretrained speaker models are not available offline, so the talker's speaker
similarity is measured with this encoder, trained on the corpus's own voices with the generalized
end-to-end (GE2E) softmax loss of Wan et al. 2018: a batch is N voices x M utterances; each
utterance's embedding is pulled toward its own voice's centroid (computed without it) and pushed
from the other voices' centroids, through a learned scaled cosine ``w * cos + b``.

Network: log-mel (80 x 100 Hz) -> strided convolution (50 Hz) -> residual dilated convolution blocks
-> mean + standard deviation over time -> linear -> L2-normalised 128-D. Convolutions rather than the
paper's LSTM: the same job at a fraction of the CPU time, and any length of audio reads the same way.

    encoder = SpeakerEncoder.from_pretrained("out/talker/runs/speaker")
    a, b = encoder.embed(x), encoder.embed(y)   # (128,) unit vectors
    similarity = float(a @ b)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from anima.checkpoint import CheckpointError, load_weights, read_config
from anima.talker.model.features import N_MELS, judge_features

MODEL_NAME = "anima speaker encoder (GE2E)"


def ge2e_loss(emb: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GE2E softmax loss of embeddings (N voices, M utterances, D), M >= 2; w > 0 and b are scalars."""
    N, M, _ = emb.shape
    if M < 2 or N < 2:
        raise ValueError(f"ge2e_loss needs at least 2 voices x 2 utterances, got {N} x {M}")
    emb = F.normalize(emb, dim=-1)
    centroids = F.normalize(emb.mean(1), dim=-1)  # (N, D)
    own = F.normalize((emb.sum(1, keepdim=True) - emb) / (M - 1), dim=-1)  # (N, M, D) own centroid without self
    cos = torch.einsum("nmd,kd->nmk", emb, centroids)  # (N, M, N)
    cos_own = (emb * own).sum(-1)  # (N, M)
    is_own = torch.eye(N, dtype=torch.bool, device=emb.device)[:, None, :]  # (N, 1, N)
    cos = torch.where(is_own, cos_own[..., None], cos)
    logits = w.clamp(min=1e-6) * cos + b  # (N, M, N)
    labels = torch.arange(N, device=emb.device).repeat_interleave(M)
    return F.cross_entropy(logits.reshape(N * M, N), labels)


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """EER of verification trials: the rate where false accepts equal false rejects (interpolated).

    scores (K,) similarity, higher = more alike; same (K,) bool, True for same-voice pairs.
    """
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    if scores.shape != same.shape or scores.ndim != 1:
        raise ValueError(f"equal_error_rate: scores {scores.shape} and labels {same.shape} must be equal 1-D")
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("equal_error_rate needs both same-voice and different-voice trials")
    order = np.argsort(-scores, kind="stable")
    tp = np.concatenate([[0], np.cumsum(same[order])])  # accepted same pairs with the threshold after k trials
    fp = np.concatenate([[0], np.cumsum(~same[order])])
    frr = 1.0 - tp / n_pos  # falls from 1 to 0
    far = fp / n_neg  # rises from 0 to 1
    k = int(np.argmax(far >= frr))  # first threshold where false accepts catch up
    if k == 0:
        return float(far[0])
    # the two curves cross between k-1 and k: interpolate linearly
    d0, d1 = frr[k - 1] - far[k - 1], frr[k] - far[k]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(far[k - 1] + t * (far[k] - far[k - 1]))


# ---------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class SpeakerEncoderConfig:
    n_mels: int = N_MELS  # input log-mel bands (100 Hz frames)
    channels: int = 256  # convolution width (50 Hz after the strided input convolution)
    n_blocks: int = 4  # residual dilated blocks, dilation 1, 2, 4, 8, ...
    kernel: int = 3
    dim: int = 128  # embedding size
    segment_frames: int = 160  # training segment at 100 Hz (1.6 s, as in GE2E)


CONFIGS = {
    "tiny": {"channels": 32, "n_blocks": 2, "dim": 16, "segment_frames": 60},
    "small": {},
}


class ResBlock(nn.Module):
    """x + ReLU(BN(dilated conv(x))). (B, C, T) -> (B, C, T)"""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel // 2))
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.norm(self.conv(x)))


class SpeakerEncoder(nn.Module):
    """Log-mel (B, T, n_mels) -> unit embedding (B, dim); ``ge2e_w``/``ge2e_b`` scale the training cosines."""

    def __init__(self, config: SpeakerEncoderConfig) -> None:
        super().__init__()
        self.config = config
        C = config.channels
        self.conv_in = nn.Conv1d(config.n_mels, C, 5, stride=2, padding=2)
        self.norm_in = nn.BatchNorm1d(C)
        self.blocks = nn.ModuleList(ResBlock(C, config.kernel, 2 ** i) for i in range(config.n_blocks))
        self.conv_out = nn.Conv1d(C, 2 * C, 1)
        self.proj = nn.Linear(4 * C, config.dim)
        self.ge2e_w = nn.Parameter(torch.tensor(10.0))  # GE2E's initial scale and bias
        self.ge2e_b = nn.Parameter(torch.tensor(-5.0))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (B, T, n_mels), T >= 1 -> (B, dim) L2-normalised"""
        x = F.relu(self.norm_in(self.conv_in(feats.transpose(1, 2))))  # (B, C, T/2)
        for block in self.blocks:
            x = block(x)
        x = F.relu(self.conv_out(x))  # (B, 2C, T/2)
        stats = torch.cat([x.mean(-1), x.std(-1, unbiased=False)], dim=-1)  # (B, 4C)
        return F.normalize(self.proj(stats), dim=-1)

    def loss(self, feats: torch.Tensor) -> torch.Tensor:
        """GE2E loss of a batch arranged as (N voices, M utterances, T, n_mels)."""
        N, M, T, F_ = feats.shape
        emb = self(feats.reshape(N * M, T, F_)).view(N, M, -1)  # (N, M, dim)
        return ge2e_loss(emb, self.ge2e_w, self.ge2e_b)

    @torch.no_grad()
    def embed(self, samples: np.ndarray) -> np.ndarray:
        """The voice embedding of (N,) float32 samples at 24 kHz: (dim,) float32, unit length."""
        feats = torch.from_numpy(judge_features(samples, "SpeakerEncoder.embed"))[None]  # (1, T, n_mels)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            return self(feats.to(device))[0].cpu().numpy()
        finally:
            self.train(was_training)

    def checkpoint_config(self) -> dict:
        return {"model": MODEL_NAME, "encoder": dataclasses.asdict(self.config)}

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> SpeakerEncoder:
        """Load a trained encoder (safetensors + config.json); a clear CheckpointError if it is not one."""
        meta = read_config(directory)
        cfg = meta.get("config", {})
        if not isinstance(cfg, dict) or cfg.get("model") != MODEL_NAME or "encoder" not in cfg:
            found = cfg.get("model") if isinstance(cfg, dict) else None
            raise CheckpointError(f"{directory}: not an {MODEL_NAME} checkpoint (model {found!r})")
        try:
            model = cls(SpeakerEncoderConfig(**cfg["encoder"]))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{directory}: bad {MODEL_NAME} config ({e})") from None
        load_weights(directory, model)
        return model.to(device).eval()
