"""The reward model of the duplex decoder (Body of Her, paper 4.3, eq. 5).

"We initialize our reward models from the fine-tuned model G ... the model architecture and
hyper-parameters are identical ..., the head for next-token prediction is replaced with a regression
head to output a scalar reward." So ``RewardModel`` holds a ``DuplexDecoder`` built from G's config
and loaded with G's weights, and a linear head on its final hidden states mean-pooled over the
agent's generated steps (past the shared prefix). Its input is a whole sample, both parties: the
user's frames, the agent's rows and motion latents, the controls, through G's own ``embed`` (position
i reads step i-1, as G does). G's categorical heads are its embedding tables (tied), so they stay as
inputs; its diffusion head is unused and frozen. Trained on preference pairs (``preference.py``) with
eq. 5, ``-log sigmoid(r(Y_w) - r(Y_l))``; pair accuracy on held-out pairs is reported::

    python -m anima.e2e.duplex.training.reward --g out/duplex/runs/av --pairs out/duplex/pref \\
        --out out/duplex/runs/reward --steps 200

Checkpoint: ``model.safetensors`` + ``config.json`` of kind ``duplex_reward`` (``load_reward``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anima.e2e.duplex.model import DuplexConfig, DuplexDecoder
from anima.e2e.duplex.training.preference import Sample, pairs_sample

KIND = "duplex_reward"


class RewardModel(nn.Module):
    """G's transformer + a scalar regression head: r(Y) for a Sample of B streams -> (B,)."""

    def __init__(self, config: DuplexConfig) -> None:
        super().__init__()
        self.config = config
        self.g = DuplexDecoder(config)
        self.head = nn.Linear(config.d_model, 1)
        nn.init.zeros_(self.head.weight)  # every sample starts at reward 0: the pairs decide
        nn.init.zeros_(self.head.bias)
        for p in self.g.diffusion.parameters():  # the motion head is not a reward's
            p.requires_grad_(False)

    @classmethod
    def from_g(cls, g: DuplexDecoder) -> RewardModel:
        """Same architecture and weights as ``g``; only the head is new."""
        model = cls(g.config)
        model.g.load_state_dict(g.state_dict())
        return model

    def forward(self, sample: Sample) -> torch.Tensor:
        """A Sample (B streams of S steps) -> rewards (B,): the head on the mean hidden state of the
        generated steps (positions prefix + 1 .. S - 1 read the generated rows; the whole window if no prefix)."""
        h = self.g(self.g.embed(**sample.inputs(self.config)))  # (B, S, d)
        S = h.shape[1]
        keep = torch.arange(S, device=h.device) > sample.prefix if sample.prefix + 1 < S else torch.ones(S, dtype=torch.bool, device=h.device)
        pooled = h[:, keep].mean(1)  # (B, d)
        return self.head(pooled)[:, 0]


def pair_loss(r_w: torch.Tensor, r_l: torch.Tensor) -> torch.Tensor:
    """Eq. 5: -log sigmoid(r(Y_w) - r(Y_l)), averaged over pairs."""
    return -F.logsigmoid(r_w - r_l).mean()


def reward_config(config: DuplexConfig, **extra: Any) -> dict[str, Any]:
    return {"kind": KIND, "model": config.to_dict(), **extra}


def load_reward(directory: str | Path) -> RewardModel:
    """A trained reward model (eval mode); CheckpointError when the folder is not one."""
    from anima.checkpoint import CheckpointError, load_weights, read_config

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such reward model folder")
    cfg = read_config(directory).get("config", {})
    if not isinstance(cfg, dict) or cfg.get("kind") != KIND:
        raise CheckpointError(f"{directory}: not a duplex reward model (config kind "
                              f"{cfg.get('kind') if isinstance(cfg, dict) else None!r}, expected {KIND!r})")
    known = {f.name for f in dataclasses.fields(DuplexConfig)}
    unknown = sorted(set(cfg.get("model", {})) - known)
    if unknown:
        raise CheckpointError(f"{directory}: config has fields this code does not know: {unknown}")
    fields = dict(cfg["model"])
    fields["identities"] = tuple(fields.get("identities", ()))
    model = RewardModel(DuplexConfig(**fields))
    load_weights(directory, model)
    return model.eval()


def split_pairs(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) pair indices; at least one of each when n >= 2."""
    if n < 2:
        raise ValueError(f"need at least 2 preference pairs to hold some out, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, int(round(n * val_fraction))), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@torch.no_grad()
def pair_accuracy(model: RewardModel, pairs: dict[str, np.ndarray], idx: np.ndarray, batch: int = 16) -> dict[str, float]:
    """Share of pairs ``idx`` the model orders as the judges did, and the mean loss."""
    model.eval()
    right, losses = 0, []
    for a in range(0, len(idx), batch):
        b = idx[a:a + batch]
        r_w = model(pairs_sample(pairs, b, "w", model.config.d_prompt))
        r_l = model(pairs_sample(pairs, b, "l", model.config.d_prompt))
        right += int((r_w > r_l).sum())
        losses.append(float(pair_loss(r_w, r_l)) * len(b))
    return {"accuracy": right / max(len(idx), 1), "loss": sum(losses) / max(len(idx), 1)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from anima.train.options import add_run_arguments

    parser.add_argument("--g", type=Path, required=True, help="G: the reward model starts from its weights")
    parser.add_argument("--pairs", type=Path, default=Path("out/duplex/pref"), help="preference shards (preference.py)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumed if it holds a checkpoint)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8, help="pairs per step")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--save-every", type=int, default=50)
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from anima.e2e.duplex.model import load_duplex
    from anima.e2e.duplex.training.preference import load_pairs
    from anima.train import train_loop

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    pairs = load_pairs(args.pairs)
    train_idx, val_idx = split_pairs(len(pairs["rows_w"]), args.val_fraction, args.seed)
    g = load_duplex(args.g)
    model = RewardModel.from_g(g)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    last_val: dict[str, float] = {}

    def step_fn(i: int) -> dict[str, float]:
        b = rng.choice(train_idx, size=min(args.batch, len(train_idx)), replace=False)
        r_w = model(pairs_sample(pairs, b, "w", model.config.d_prompt))
        r_l = model(pairs_sample(pairs, b, "l", model.config.d_prompt))
        loss = pair_loss(r_w, r_l)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (i + 1) % args.val_every == 0 or i + 1 == args.steps:
            val = pair_accuracy(model, pairs, val_idx)
            last_val.update(val_accuracy=val["accuracy"], val_loss=val["loss"])
            model.train()
        return {"loss": float(loss.detach()), "accuracy": float((r_w > r_l).float().mean()), "margin": float((r_w - r_l).detach().mean()),
                **last_val}

    cfg = reward_config(model.config, init=str(Path(args.g).resolve()), pairs=str(args.pairs),
                        train={"steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                               "train_pairs": int(len(train_idx)), "val_pairs": int(len(val_idx))})
    state = train_loop(model, opt, step_fn, args.steps, args.out, cfg, save_every=args.save_every, desc="duplex reward",
                       progress=not args.quiet, rngs=[rng])
    report = {"step": state.step, "train_pairs": int(len(train_idx)), "val_pairs": int(len(val_idx)),
              "val": pair_accuracy(model, pairs, val_idx), "train": pair_accuracy(model, pairs, train_idx)}
    (Path(args.out) / "report.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
