"""Our text-to-motion evaluator: contrastive text and motion encoders trained on the same mocap.

    python -m anima.body.training.train evaluator --steps 2000 --out out/body/evaluator
    ev = load_evaluator("out/body/evaluator")
    m = ev.embed_motion(normalised_features)      # (B, T, 263) -> (B, 64), unit norm
    t = ev.embed_text(minilm_embeddings)          # (B, 384) -> (B, 64), unit norm

This is *not* HumanML3D's evaluator (Guo et al.'s GRU encoders trained on HumanML3D): there is
no HumanML3D here, and its numbers are not comparable with published ones. It plays the same
role on our data: FID between embeddings of generated and real test motion, and R-precision of
a motion's own text among 31 others. Motion encoder: a small 1-D conv net over normalised
features, mean-pooled; text encoder: an MLP on frozen MiniLM embeddings. Loss: symmetric
InfoNCE where windows with the same text count as positives of each other.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from anima.body.data.dataset import MotionDataset
from anima.body.data.humanml3d import FEATURE_DIM
from anima.body.text import TEXT_DIM
from anima.body.training.data import load_data
from anima.train import apply_overrides, distributed, load_weights, train_loop


@dataclass
class EvaluatorConfig:
    feature_dim: int = FEATURE_DIM  # motion input (normalised HumanML3D features)
    text_dim: int = TEXT_DIM  # MiniLM embedding
    width: int = 128  # hidden width of both encoders
    embed_dim: int = 64  # shared embedding size
    window: int = 40  # motion window in frames (2 s at 20 fps)


class MotionEncoder(nn.Module):
    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__()
        w = config.width
        self.net = nn.Sequential(
            nn.Conv1d(config.feature_dim, w, 5, padding=2), nn.GELU(),
            nn.Conv1d(w, w, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(w, w, 5, stride=2, padding=2), nn.GELU(),
        )
        self.head = nn.Sequential(nn.Linear(2 * w, w), nn.GELU(), nn.Linear(w, config.embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 263) -> (B, E)
        h = self.net(x.transpose(1, 2))  # (B, W, T/4)
        pooled = torch.cat([h.mean(-1), h.amax(-1)], dim=-1)  # (B, 2W)
        return F.normalize(self.head(pooled), dim=-1)


class TextEncoderHead(nn.Module):
    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(config.text_dim, config.width), nn.GELU(), nn.Linear(config.width, config.embed_dim))

    def forward(self, e: torch.Tensor) -> torch.Tensor:  # (B, 384) -> (B, E)
        return F.normalize(self.net(e), dim=-1)


class MotionTextEvaluator(nn.Module):
    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__()
        self.config = config
        self.motion = MotionEncoder(config)
        self.text = TextEncoderHead(config)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    def loss(self, x: torch.Tensor, e: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        m, t = self.motion(x), self.text(e)  # (B, E) each
        logits = m @ t.T * self.log_scale.exp().clamp(max=100.0)  # (B, B)
        positive = (ids[:, None] == ids[None, :]).float()
        target = positive / positive.sum(-1, keepdim=True)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))

    @torch.no_grad()
    def embed_motion(self, features: np.ndarray) -> np.ndarray:
        return self.motion(torch.as_tensor(features, dtype=torch.float32)).numpy()

    @torch.no_grad()
    def embed_text(self, embeddings: np.ndarray) -> np.ndarray:
        return self.text(torch.as_tensor(embeddings, dtype=torch.float32)).numpy()


def majority_text(clip, start: int, length: int) -> str:
    texts = clip.frame_texts()[start:start + length]
    # dict.fromkeys keeps first-seen order, so a tie goes to the earlier text in every process
    # (max over a set depended on the per-process string hash: windows and scores moved run to run).
    return max(dict.fromkeys(texts), key=texts.count)


def sample_windows(data: MotionDataset, split: str, length: int, per_clip: int, seed: int) -> list[tuple[int, int, str]]:
    """Fixed random windows: (clip index in data.clips, start frame, text). Clips shorter than ``length`` are skipped."""
    rng = np.random.default_rng(seed)
    out = []
    for i, clip in enumerate(data.clips):
        if clip.split != split or len(clip.features) < length:
            continue
        for _ in range(per_clip):
            start = int(rng.integers(0, len(clip.features) - length + 1))
            out.append((i, start, majority_text(clip, start, length)))
    return out


def train_evaluator(args: argparse.Namespace) -> int:
    config = apply_overrides(EvaluatorConfig(), args.set)
    data = load_data(args)
    device = torch.device(getattr(args, "device", "cpu"))
    torch.manual_seed(args.seed)
    model = MotionTextEvaluator(config).to(device)
    clips = [(c, data.normalise(c.features)) for c in data.split("train") if len(c.features) >= config.window]
    lengths = np.array([len(f) - config.window + 1 for _, f in clips], dtype=np.float64)
    p = lengths / lengths.sum()
    text_ids = {t: i for i, t in enumerate(sorted(data.embeddings))}
    rng = np.random.default_rng(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    net = distributed.wrap(model, MotionTextEvaluator.loss)

    def step(i: int) -> dict[str, float]:
        # Every rank draws the global batch; data-parallel, each rank's InfoNCE sees its own slice as negatives.
        x = np.empty((args.batch, config.window, config.feature_dim), np.float32)
        e = np.empty((args.batch, config.text_dim), np.float32)
        ids = np.empty(args.batch, np.int64)
        for b, c in enumerate(rng.choice(len(clips), size=args.batch, p=p)):
            clip, feats = clips[c]
            start = int(rng.integers(0, len(feats) - config.window + 1))
            x[b] = feats[start:start + config.window]
            text = majority_text(clip, start, config.window)
            e[b], ids[b] = data.embeddings[text], text_ids[text]
        x_, e_, ids_ = distributed.shard((torch.from_numpy(x), torch.from_numpy(e), torch.from_numpy(ids)))
        loss = net(x_.to(device), e_.to(device), ids_.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    train_loop(model, optimizer, step, args.steps, args.out, {"evaluator": asdict(config)}, save_every=args.save_every,
               desc="evaluator", progress=not args.quiet, rngs=[rng])
    return 0


def load_evaluator(directory: str | Path) -> MotionTextEvaluator:
    meta = json.loads((Path(directory) / "config.json").read_text())
    model = MotionTextEvaluator(EvaluatorConfig(**meta["config"]["evaluator"]))
    load_weights(directory, model)
    return model.eval()
