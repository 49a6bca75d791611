"""A behaviour evaluator for FID on behaviour: a window encoder trained on the dialogue corpus's free labels.

    python -m anima.e2e.mot.training.evaluator --corpus out/dialogues --out out/mot/evaluator --steps 3000
    ev = BehaviourEvaluator.from_pretrained("out/mot/evaluator")
    e = ev.embed(face_windows, body_windows)   # (N, 100, 112), (N, 80, 263) raw -> (N, E)
    ev.fid(real_clips, generated_clips)        # clips: [(face (T25, 112), body263 (T20, 263)), ...]

The role of HumanML3D's text-motion evaluator (``anima.body.training.evaluator``) for the mixture
of transformers' output, on our data, so its numbers compare only with each other. Input: a 4 s
window of the agent, 100 face frames (25 fps) and 80 body263 frames (20 fps), each normalised with
mean/std of the train split (kept in the checkpoint). Net: one 1-D conv stem per stream (two
stride-2 layers), mean+max pooled, an MLP to the embedding; three linear heads on the embedding
classify labels the corpus gives for free:

- state: the agent's majority state over the window's frames: speaking (its voiced segments),
  listening (the visitor's, the agent silent), idle (neither);
- emotion: the plan emotion in force at the window's centre (the last ``agent_plan`` event; "neutral"
  before the first);
- character: the conversation's character.

The embedding (penultimate layer) is what FID is computed on. The report (``report.json`` in the
run folder) gives train/val accuracies and a sanity table: FID val vs train (small) against val vs
damaged copies of itself (time-shuffled, noised, frozen; large).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from anima.core.plan import EMOTIONS
from anima.e2e.data.dialogues import CHARACTERS
from anima.e2e.data.format import BODY_DIM, BODY_FPS, FACE_DIM, FPS, open_corpus
from anima.e2e.mot.training.metrics import frechet_distance
from anima.train import apply_overrides, load_weights, train_loop
from anima.train.options import add_common_arguments

log = logging.getLogger(__name__)

STATES = ("speaking", "listening", "idle")
WINDOW_S = 4.0
FACE_FRAMES = int(WINDOW_S * FPS)  # 100
BODY_FRAMES = int(WINDOW_S * BODY_FPS)  # 80
ALIGN = FPS // 5  # face frames starting a window are multiples of 5: k/25 s == (4k/5)/20 s exactly
STD_FLOOR = 1e-2  # features constant on the train split (reserved expression slots) stay near 0, not blown up


@dataclass
class BehaviourEvaluatorConfig:
    face_dim: int = FACE_DIM  # face parameters per 25 fps frame
    body_dim: int = BODY_DIM  # HumanML3D-263 features per 20 fps frame
    width: int = 64  # conv channels of each stream
    hidden: int = 128  # MLP width between the pooled streams and the embedding
    embed_dim: int = 64  # embedding size (what FID is computed on)
    dropout: float = 0.1  # on the embedding, before the heads (training only)
    n_states: int = len(STATES)
    n_emotions: int = len(EMOTIONS)
    n_characters: int = len(CHARACTERS)


CONFIGS = {"tiny": dict(width=8, hidden=16, embed_dim=8), "small": {}}


def _stem(in_dim: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(in_dim, width, 5, padding=2), nn.GELU(),
        nn.Conv1d(width, width, 5, stride=2, padding=2), nn.GELU(),
        nn.Conv1d(width, width, 5, stride=2, padding=2), nn.GELU(),
    )


class BehaviourEvaluator(nn.Module):
    def __init__(self, config: BehaviourEvaluatorConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.face = _stem(config.face_dim, w)
        self.body = _stem(config.body_dim, w)
        self.mlp = nn.Sequential(nn.Linear(4 * w, config.hidden), nn.GELU(), nn.Linear(config.hidden, config.embed_dim))
        self.drop = nn.Dropout(config.dropout)
        self.heads = nn.ModuleDict({"state": nn.Linear(config.embed_dim, config.n_states),
                                    "emotion": nn.Linear(config.embed_dim, config.n_emotions),
                                    "character": nn.Linear(config.embed_dim, config.n_characters)})
        # Train-split statistics: saved with the weights, so a loaded evaluator normalises as it was trained.
        self.register_buffer("face_mean", torch.zeros(config.face_dim))
        self.register_buffer("face_std", torch.ones(config.face_dim))
        self.register_buffer("body_mean", torch.zeros(config.body_dim))
        self.register_buffer("body_std", torch.ones(config.body_dim))

    def encode(self, face: torch.Tensor, body: torch.Tensor) -> torch.Tensor:
        """Raw windows -> embedding. (B, 100, 112), (B, 80, 263) -> (B, E)"""
        f = self.face(((face - self.face_mean) / self.face_std).transpose(1, 2))  # (B, W, 25)
        b = self.body(((body - self.body_mean) / self.body_std).transpose(1, 2))  # (B, W, 20)
        pooled = torch.cat([f.mean(-1), f.amax(-1), b.mean(-1), b.amax(-1)], dim=-1)  # (B, 4W)
        return self.mlp(pooled)  # (B, E)

    def forward(self, face: torch.Tensor, body: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of each head. -> {"state": (B, 3), "emotion": (B, 9), "character": (B, 4)}"""
        e = self.drop(self.encode(face, body))
        return {name: head(e) for name, head in self.heads.items()}

    def loss(self, face: torch.Tensor, body: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self(face, body)
        losses = {name: F.cross_entropy(logits[name], labels[name]) for name in logits}
        losses["loss"] = sum(losses.values())
        return losses

    def set_stats(self, faces: Sequence[np.ndarray], bodies: Sequence[np.ndarray]) -> None:
        """Normalisation from the train split's clips: faces [(T, 112)], bodies [(T20, 263)] (summed clip by clip)."""
        for name, clips in (("face", faces), ("body", bodies)):
            n = sum(len(x) for x in clips)
            if n < 2:
                raise ValueError(f"set_stats: {name} clips hold {n} frame(s), need at least 2")
            total = sum(np.asarray(x, dtype=np.float64).sum(0) for x in clips)
            mean = total / n
            var = sum(((np.asarray(x, dtype=np.float64) - mean) ** 2).sum(0) for x in clips) / n
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(mean))
            getattr(self, f"{name}_std").copy_(torch.from_numpy(np.maximum(np.sqrt(var), STD_FLOOR)))

    @torch.no_grad()
    def embed(self, face_windows: np.ndarray, body_windows: np.ndarray, batch: int = 256) -> np.ndarray:
        """Embeddings of raw 4 s windows. (N, 100, 112), (N, 80, 263) -> (N, E) float64"""
        face, body = check_windows(face_windows, body_windows, "embed")
        was = self.training
        self.eval()
        out = [self.encode(torch.from_numpy(face[i:i + batch]), torch.from_numpy(body[i:i + batch])).double().numpy()
               for i in range(0, len(face), batch)]
        self.train(was)
        return np.concatenate(out)

    def fid(self, real_clips: Sequence[tuple[np.ndarray, np.ndarray]],
            generated_clips: Sequence[tuple[np.ndarray, np.ndarray]], stride_s: float = WINDOW_S) -> float:
        """FID on behaviour: Frechet distance of the embeddings of the 4 s windows of two sets of clips.

        A clip is (face (T25, 112), body263 (T20, 263)) covering the same time; each is cut into
        windows every ``stride_s`` seconds (``clip_windows``). Each set needs at least 2 windows.
        """
        return frechet_distance(self.embed(*clip_windows(real_clips, stride_s, "fid(real)")),
                                self.embed(*clip_windows(generated_clips, stride_s, "fid(generated)")))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> BehaviourEvaluator:
        path = Path(folder) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no config.json (not a behaviour evaluator run folder)")
        meta = json.loads(path.read_text())
        model = cls(BehaviourEvaluatorConfig(**meta["config"]["evaluator"]))
        load_weights(folder, model)
        return model.eval()


# -- windows ---------------------------------------------------------------------------------------

def check_windows(face: np.ndarray, body: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 copies of a batch of windows, or ValueError naming what is wrong."""
    face, body = np.asarray(face, dtype=np.float32), np.asarray(body, dtype=np.float32)
    if face.ndim != 3 or face.shape[1:] != (FACE_FRAMES, FACE_DIM):
        raise ValueError(f"{name}: face windows must be (N, {FACE_FRAMES}, {FACE_DIM}), got {face.shape}")
    if body.ndim != 3 or body.shape[1:] != (BODY_FRAMES, BODY_DIM):
        raise ValueError(f"{name}: body windows must be (N, {BODY_FRAMES}, {BODY_DIM}), got {body.shape}")
    if len(face) != len(body):
        raise ValueError(f"{name}: {len(face)} face windows but {len(body)} body windows")
    if len(face) == 0:
        raise ValueError(f"{name}: no windows (empty input)")
    if not (np.isfinite(face).all() and np.isfinite(body).all()):
        raise ValueError(f"{name}: windows hold NaN or inf")
    return face, body


def window_starts(face_frames: int, body_frames: int, stride_s: float) -> list[int]:
    """Face frames at which whole, aligned 4 s windows start, every ``stride_s`` (rounded to 0.2 s)."""
    step = max(ALIGN, int(round(stride_s * FPS / ALIGN)) * ALIGN)
    last = min(face_frames - FACE_FRAMES, (body_frames - BODY_FRAMES) * FPS // BODY_FPS)
    return list(range(0, last + 1, step)) if last >= 0 else []


def clip_windows(clips: Sequence[tuple[np.ndarray, np.ndarray]], stride_s: float = WINDOW_S,
                 name: str = "clip_windows") -> tuple[np.ndarray, np.ndarray]:
    """Cut clips [(face (T25, 112), body263 (T20, 263))] into windows: (N, 100, 112), (N, 80, 263)."""
    faces, bodies = [], []
    for i, (face, body) in enumerate(clips):
        face, body = np.asarray(face, dtype=np.float32), np.asarray(body, dtype=np.float32)
        if face.ndim != 2 or face.shape[1] != FACE_DIM or body.ndim != 2 or body.shape[1] != BODY_DIM:
            raise ValueError(f"{name}: clip {i} must be face (T, {FACE_DIM}) and body263 (T, {BODY_DIM}), "
                             f"got {face.shape} and {body.shape}")
        for f0 in window_starts(len(face), len(body), stride_s):
            b0 = f0 * BODY_FPS // FPS
            faces.append(face[f0:f0 + FACE_FRAMES])
            bodies.append(body[b0:b0 + BODY_FRAMES])
    if len(faces) < 2:
        raise ValueError(f"{name}: {len(clips)} clip(s) give {len(faces)} whole {WINDOW_S:g} s window(s), need at least 2")
    return np.stack(faces), np.stack(bodies)


@dataclass
class Conversation:
    """One conversation's agent behaviour and per-frame labels (what training samples windows from)."""

    face: np.ndarray  # (T, 112) float32, 25 fps
    body: np.ndarray  # (T20, 263) float32, 20 fps
    state: np.ndarray  # (T,) int64 index into STATES
    emotion: np.ndarray  # (T,) int64 index into EMOTIONS
    character: int  # index into CHARACTERS


def frame_labels(window: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame state and emotion indices of a ``load_window`` result. -> (T,), (T,)"""
    state = np.where(window["agent_speaking"], 0, np.where(window["user_speaking"], 1, 2)).astype(np.int64)
    emotion = np.full(len(state), EMOTIONS.index("neutral"), dtype=np.int64)
    for e in window["events"]:
        if e.get("type") == "agent_plan" and e.get("emotion") in EMOTIONS:
            emotion[max(0, int(round(e["t"] * FPS))):] = EMOTIONS.index(e["emotion"])  # events are time-ordered
    return state, emotion


def load_conversations(corpus_dir: str | Path, split: str, limit: int | None = None, seed: int = 0,
                       progress: bool = False) -> list[Conversation]:
    """The agent side of a split's conversations (``limit``: a seeded random subset)."""
    from tqdm import tqdm

    corpus = open_corpus(corpus_dir, split=split)
    if len(corpus) == 0:
        raise ValueError(f"{corpus_dir}: no usable {split!r} conversations")
    order = np.arange(len(corpus))
    if limit is not None and limit < len(order):
        order = np.sort(np.random.default_rng(seed).choice(len(order), size=limit, replace=False))
    out = []
    for i in tqdm(order, desc=f"conversations {split}", disable=not progress, mininterval=1.0):
        meta = corpus.conversations[i]
        w = corpus.window(int(i), 0.0, meta["frames"] / FPS)
        if w is None:
            continue
        state, emotion = frame_labels(w)
        out.append(Conversation(w["face"].astype(np.float32), w["body263"].astype(np.float32), state, emotion,
                                CHARACTERS.index(meta["identity"]["character"])))
    return out


def window_at(conv: Conversation, f0: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The window starting at face frame f0 (a multiple of 5) and its labels."""
    b0 = f0 * BODY_FPS // FPS
    labels = {"state": int(np.bincount(conv.state[f0:f0 + FACE_FRAMES], minlength=len(STATES)).argmax()),
              "emotion": int(conv.emotion[f0 + FACE_FRAMES // 2]), "character": conv.character}
    return conv.face[f0:f0 + FACE_FRAMES], conv.body[b0:b0 + BODY_FRAMES], labels


def fixed_windows(convs: Sequence[Conversation], stride_s: float = 2.0, limit: int | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Every window at ``stride_s`` (``limit``: a seeded random subset): (N, 100, 112), (N, 80, 263), labels (N,)."""
    items = [(c, f0) for c in convs for f0 in window_starts(len(c.face), len(c.body), stride_s)]
    if not items:
        raise ValueError("fixed_windows: no conversation is long enough for one 4 s window")
    if limit is not None and limit < len(items):
        items = [items[i] for i in np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))]
    faces, bodies, labels = zip(*(window_at(c, f0) for c, f0 in items), strict=True)
    return np.stack(faces), np.stack(bodies), {k: np.array([lab[k] for lab in labels]) for k in labels[0]}


class WindowSampler:
    """Random aligned 4 s windows of a list of conversations, conversations drawn by their number of windows."""

    def __init__(self, convs: Sequence[Conversation], rng: np.random.Generator) -> None:
        self.convs = [c for c in convs if window_starts(len(c.face), len(c.body), ALIGN / FPS)]
        if not self.convs:
            raise ValueError("WindowSampler: no conversation is long enough for one 4 s window")
        self.starts = [len(window_starts(len(c.face), len(c.body), ALIGN / FPS)) for c in self.convs]
        self.p = np.array(self.starts, dtype=np.float64) / sum(self.starts)
        self.rng = rng

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        faces, bodies, labels = [], [], []
        for c in self.rng.choice(len(self.convs), size=size, p=self.p):
            f, b, lab = window_at(self.convs[c], int(self.rng.integers(self.starts[c])) * ALIGN)
            faces.append(f), bodies.append(b), labels.append(lab)
        return (torch.from_numpy(np.stack(faces)), torch.from_numpy(np.stack(bodies)),
                {k: torch.tensor([lab[k] for lab in labels]) for k in labels[0]})


# -- training and report ---------------------------------------------------------------------------

def train(convs: Sequence[Conversation], out: str | Path, steps: int, config: BehaviourEvaluatorConfig | None = None,
          batch: int = 64, lr: float = 1e-3, seed: int = 0, save_every: int = 500, progress: bool = True) -> BehaviourEvaluator:
    """Train (or resume) an evaluator on the train conversations; the run folder is ``out``."""
    config = config or BehaviourEvaluatorConfig()
    torch.manual_seed(seed)
    model = BehaviourEvaluator(config)
    model.set_stats([c.face for c in convs], [c.body for c in convs])
    rng = np.random.default_rng(seed)
    sampler = WindowSampler(convs, rng)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)

    def step(i: int) -> dict[str, float]:
        face, body, labels = sampler.batch(batch)
        losses = model.loss(face, body, labels)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        return {k: v.item() for k, v in losses.items()}

    train_loop(model, optimizer, step, steps, out, {"evaluator": asdict(config)}, save_every=save_every,
               desc="behaviour evaluator", progress=progress, rngs=[rng])
    return model.eval()


@torch.no_grad()
def accuracy(model: BehaviourEvaluator, face: np.ndarray, body: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-head accuracy on fixed windows, and the majority-class rate of each head for reference."""
    model.eval()
    logits = {k: [] for k in model.heads}
    for i in range(0, len(face), 256):
        for k, v in model(torch.from_numpy(face[i:i + 256]), torch.from_numpy(body[i:i + 256])).items():
            logits[k].append(v.argmax(-1).numpy())
    out = {}
    for k in model.heads:
        out[f"{k}_acc"] = float(np.mean(np.concatenate(logits[k]) == labels[k]))
        out[f"{k}_majority"] = float(np.bincount(labels[k]).max() / len(labels[k]))
    return out


def damaged(face: np.ndarray, body: np.ndarray, kind: str, model: BehaviourEvaluator,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Copies of windows damaged for the FID sanity check: shuffled in time, noised (in std units), frozen."""
    if kind == "time_shuffled":
        return (np.stack([f[rng.permutation(len(f))] for f in face]), np.stack([b[rng.permutation(len(b))] for b in body]))
    if kind.startswith("noise_"):
        sigma = float(kind.split("_")[1])
        return (face + sigma * model.face_std.numpy() * rng.standard_normal(face.shape).astype(np.float32),
                body + sigma * model.body_std.numpy() * rng.standard_normal(body.shape).astype(np.float32))
    if kind == "frozen":
        return np.repeat(face[:, :1], FACE_FRAMES, axis=1), np.repeat(body[:, :1], BODY_FRAMES, axis=1)
    raise ValueError(f"damaged: unknown kind {kind!r}")


def sanity_table(model: BehaviourEvaluator, train_w: tuple, val_w: tuple, seed: int = 0) -> dict[str, float]:
    """FID of val windows against train windows and against damaged copies of themselves.

    ``train_w``/``val_w``: (face, body, labels) of ``fixed_windows``. Rows: val vs train (a draw of val's
    size), train vs train (two disjoint draws: the sampling floor), val vs train drawn with val's
    character mix (the embedding knows the character, so a mix unlike val's counts as a difference),
    and val vs val noised (white, in std units), shuffled in time, frozen on its first frame.
    """
    rng = np.random.default_rng(seed)
    n = len(val_w[0])
    e_val = model.embed(val_w[0], val_w[1])
    pick = rng.permutation(len(train_w[0]))
    e_tr = [model.embed(train_w[0][pick[k * n:(k + 1) * n]], train_w[1][pick[k * n:(k + 1) * n]]) for k in range(2)]
    table = {"val_vs_train": frechet_distance(e_val, e_tr[0]), "train_vs_train": frechet_distance(e_tr[0], e_tr[1])}
    same = np.concatenate([rng.choice(np.flatnonzero(train_w[2]["character"] == c), size=int(k))
                           for c, k in enumerate(np.bincount(val_w[2]["character"])) if k])
    table["val_vs_train_same_characters"] = frechet_distance(e_val, model.embed(train_w[0][same], train_w[1][same]))
    for kind in ("noise_0.5", "noise_2.0", "time_shuffled", "frozen"):
        table[f"val_vs_{kind}"] = frechet_distance(e_val, model.embed(*damaged(val_w[0], val_w[1], kind, model, rng)))
    return table


def run(args: argparse.Namespace) -> int:
    if args.device != "cpu":
        raise ValueError(f"--device {args.device}: the behaviour evaluator trains on the CPU only (it is small)")
    torch.set_num_threads(max(1, args.threads))
    config = apply_overrides(BehaviourEvaluatorConfig(**CONFIGS[args.config]), args.set)
    train_convs = load_conversations(args.corpus, "train", args.max_conversations, args.seed, not args.quiet)
    val_convs = load_conversations(args.corpus, "val", None, args.seed, not args.quiet)
    model = train(train_convs, args.out, args.steps, config, args.batch, args.lr, args.seed, args.save_every, not args.quiet)
    val_w = fixed_windows(val_convs, stride_s=2.0)
    train_w = fixed_windows(train_convs, stride_s=2.0, limit=max(2 * len(val_w[0]), 2000), seed=args.seed)
    report = {"steps": args.steps, "train_conversations": len(train_convs), "val_conversations": len(val_convs),
              "val_windows": len(val_w[0]), "params": sum(p.numel() for p in model.parameters()),
              "train": accuracy(model, *train_w), "val": accuracy(model, *val_w),
              "fid": sanity_table(model, train_w, val_w, args.seed)}
    Path(args.out, "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anima.e2e.mot.training.evaluator", description=__doc__.split("\n")[0])
    add_common_arguments(parser, steps=3000, corpus=Path("out/dialogues"), out=Path("out/mot/evaluator"),
                         configs=tuple(CONFIGS), config="small", save_every=500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-conversations", type=int, default=None, help="train on a seeded subset of the train split")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
