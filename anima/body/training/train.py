"""Training entry points for the body models (CPU-sized), resumable, with a progress bar.

    python -m anima.body.training.train vae       --steps 3000 --out out/body/vae
    python -m anima.body.training.train dit       --steps 3000 --vae out/body/vae --out out/body/flood
    python -m anima.body.training.train chunk     --steps 3000 --vae out/body/vae --out out/body/chunk
    python -m anima.body.training.train ar        --steps 3000 --vae out/body/vae --out out/body/ar
    python -m anima.body.training.train evaluator --steps 2000 --out out/body/evaluator
    (the same as ``anima body train WHAT ...``)

Every run resumes from the checkpoint in ``--out`` (``anima.train.train_loop``) and logs every
step to ``--out``/metrics.jsonl; ``--threads`` sets torch's CPU threads (1 by default: the machine
is shared). Model configs are dataclasses; ``--set key=value`` overrides a field (type-checked,
``anima.train.apply_overrides``), e.g. ``--set width=128``. Under ``torchrun`` the same command
trains data-parallel (``anima.train.distributed``): ``--batch`` is the global batch, split evenly
over the processes; ``--device cuda`` puts one process on each GPU. See docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anima.body.data.dataset import MotionDataset
from anima.body.data.humanml3d import recover_from_ric
from anima.body.model.dit import DiTConfig, MotionDiT
from anima.body.model.schedule import make_schedule
from anima.body.model.vae import MotionVAE, VAEConfig
from anima.body.paths import OUT
from anima.body.text import TEXT_DIM
from anima.body.training.data import load_data
from anima.body.training.options import TRAIN_DEFAULTS, add_train_arguments
from anima.train import apply_overrides, distributed, load_weights, train_loop

log = logging.getLogger(__name__)


# --- VAE -----------------------------------------------------------------------------------------

class WindowSampler:
    """Random fixed-length windows of normalised train features, clips weighted by length."""

    def __init__(self, data: MotionDataset, split: str, length: int, seed: int = 0) -> None:
        self.clips = [data.normalise(c.features) for c in data.split(split) if len(c.features) >= length]
        if not self.clips:
            raise ValueError(f"no {split} clip has {length} frames")
        self.length = length
        lengths = np.array([len(c) - length + 1 for c in self.clips], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> torch.Tensor:  # (B, length, 263)
        out = np.empty((size, self.length, self.clips[0].shape[1]), dtype=np.float32)
        for b, i in enumerate(self.rng.choice(len(self.clips), size=size, p=self.p)):
            start = self.rng.integers(0, len(self.clips[i]) - self.length + 1)
            out[b] = self.clips[i][start:start + self.length]
        return torch.from_numpy(out)


def vae_loss(vae: MotionVAE, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> dict[str, torch.Tensor]:
    recon, mu, logvar = vae(x)
    feat = F.mse_loss(recon, x)
    joints_hat = recover_from_ric(recon * std + mean)
    joints = recover_from_ric(x * std + mean)
    joint = F.mse_loss(joints_hat, joints) * 100.0  # (dm)^2: comparable to the feature loss
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    c = vae.config
    total = feat + c.joint_weight * joint + c.kl_weight * kl
    losses = {"loss": total, "feat": feat, "joint": joint, "kl": kl}
    if c.smooth_weight > 0:
        # Jerk matching in cm per frame^3: penalises the seams a decoder leaves between tokens.
        jerk = F.mse_loss(torch.diff(joints_hat, n=3, dim=1), torch.diff(joints, n=3, dim=1)) * 1e4
        losses["loss"] = total + c.smooth_weight * jerk
        losses["jerk"] = jerk
    return losses


@torch.no_grad()
def encode_clip(vae: MotionVAE, features: np.ndarray) -> np.ndarray:
    """Normalised features of one clip -> its latent means (first floor(T/4)*4 frames). # (T/4, latent)"""
    n = (len(features) // vae.DOWNSAMPLE) * vae.DOWNSAMPLE
    device = vae.latent_mean.device
    mu, _ = vae.encode(torch.from_numpy(np.ascontiguousarray(features[:n]))[None].float().to(device))
    return mu[0].cpu().numpy()


@torch.no_grad()
def set_latent_stats(vae: MotionVAE, data: MotionDataset) -> None:
    latents = np.concatenate([encode_clip(vae, data.normalise(c.features)) for c in data.split("train")])
    vae.latent_mean.copy_(torch.from_numpy(latents.mean(0)))  # copy_ moves it to the buffer's device
    vae.latent_std.copy_(torch.from_numpy(latents.std(0) + 1e-6))


def train_vae(args: argparse.Namespace) -> int:
    config = apply_overrides(VAEConfig(), args.set)
    data = load_data(args)
    device = torch.device(getattr(args, "device", "cpu"))
    torch.manual_seed(args.seed)
    vae = MotionVAE(config)
    if args.init and not (Path(args.out) / "config.json").is_file():
        load_weights(args.init, vae, strict=True)  # start from another checkpoint (fine-tuning)
    vae.to(device)
    sampler = WindowSampler(data, "train", args.window, seed=args.seed)
    mean, std = torch.from_numpy(data.mean).to(device), torch.from_numpy(data.std).to(device)
    if args.decoder_only:  # keep the encoder, hence the latent space the diffusion models were trained on
        vae.encoder.requires_grad_(False)
    trainable = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    schedule = _cosine(args.lr, args.steps)
    net = distributed.wrap(vae, lambda m, x: vae_loss(m, x, mean, std))

    def step(i: int) -> dict[str, float]:
        for g in optimizer.param_groups:
            g["lr"] = schedule(i)
        losses = net(distributed.shard(sampler.batch(args.batch)).to(device))  # this rank's (B / world, 48, 263)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        return {k: v.item() for k, v in losses.items()}

    def extra() -> dict:
        vae.eval()
        if not args.decoder_only:  # a frozen encoder keeps its latent statistics
            set_latent_stats(vae, data)
        vae.train()
        return {"kind": "vae", "data": str(args.data)}

    train_loop(vae, optimizer, step, args.steps, args.out, {"vae": config.__dict__}, save_every=args.save_every,
               desc="vae", extra=extra, progress=not args.quiet, rngs=[sampler.rng])
    if distributed.is_main():
        write_feature_stats(args.out, data)
    return 0


def write_feature_stats(directory: str | Path, data: MotionDataset) -> None:
    """Feature mean/std and every known text embedding, next to a VAE checkpoint (streams need them)."""
    texts = sorted(data.embeddings)
    np.savez(Path(directory) / "feature_stats.npz", mean=data.mean, std=data.std, texts=np.array(texts),
             embeddings=np.stack([data.embeddings[t] for t in texts]))


def _cosine(lr: float, steps: int, warmup: int = 100):
    def f(i: int) -> float:
        if i < warmup:
            return lr * (i + 1) / warmup
        return lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, (i - warmup) / max(1, steps - warmup)))))
    return f


def load_vae(directory: str | Path) -> MotionVAE:
    meta = json.loads((Path(directory) / "config.json").read_text())
    vae = MotionVAE(VAEConfig(**meta["config"]["vae"]))
    load_weights(directory, vae)
    return vae.eval()


# --- diffusion models (FloodDiffusion and the two baselines share the DiT) ------------------------

class LatentClips:
    """Every clip as normalised VAE latents with the text embedding active at each token."""

    def __init__(self, data: MotionDataset, vae: MotionVAE, split: str) -> None:
        self.latents: list[np.ndarray] = []  # (N, latent)
        self.texts: list[np.ndarray] = []  # (N, 384)
        for clip in data.split(split):
            if len(clip.features) < vae.DOWNSAMPLE:
                continue
            mu = torch.from_numpy(encode_clip(vae, data.normalise(clip.features)))
            self.latents.append(vae.to_diffusion(mu).numpy())
            frame_texts = clip.frame_texts()
            # A token's text: the prompt active at its last frame (the frame it is decoded up to).
            token_texts = [frame_texts[min(len(frame_texts) - 1, 4 * k + 3)] for k in range(len(mu))]
            self.texts.append(np.stack([data.embeddings[t] for t in token_texts]))
        lengths = np.array([len(x) for x in self.latents], dtype=np.float64)
        self.p = lengths / lengths.sum()


def diffusion_batch(clips: LatentClips, schedule, config: DiTConfig, size: int, rng: np.random.Generator,
                    p_uncond: float) -> dict[str, torch.Tensor]:
    """Sample ``size`` training sequences: history (clean) + the schedule's noisy tokens.

    Returns padded tensors: z (B, L, latent) noisy inputs, target (B, L, latent) velocity x - eps,
    level (B, L) noise levels, text (B, L, 384), has_text (B, L), pos (B, L), valid (B, L), loss_mask (B, L).
    """
    L = config.history + config.max_active
    out = {
        "z": np.zeros((size, L, config.latent_dim), np.float32), "target": np.zeros((size, L, config.latent_dim), np.float32),
        "level": np.zeros((size, L), np.float32), "text": np.zeros((size, L, TEXT_DIM), np.float32),
        "has_text": np.zeros((size, L), bool), "pos": np.zeros((size, L), np.int64),
        "valid": np.zeros((size, L), bool), "loss_mask": np.zeros((size, L), bool),
    }
    for b in range(size):
        i = rng.choice(len(clips.latents), p=clips.p)
        x, text = clips.latents[i], clips.texts[i]
        while True:
            levels = schedule.training_levels(len(x), rng)  # (N,)
            active = np.nonzero((levels > 0) & (levels < 1))[0]
            if len(active):
                break
        first = int(active[0])
        hist = np.arange(max(0, first - config.history), first)
        tokens = np.concatenate([hist, active])
        n = len(tokens)
        eps = rng.standard_normal((len(active), x.shape[1])).astype(np.float32)
        s = levels[active][:, None].astype(np.float32)
        noisy = x[active] * (1 - s) + s * eps
        out["z"][b, :n] = np.concatenate([x[hist], noisy])
        out["target"][b, len(hist):n] = x[active] - eps
        out["level"][b, :n] = np.concatenate([np.zeros(len(hist)), levels[active]])
        drop = rng.random() < p_uncond
        out["text"][b, :n] = 0.0 if drop else text[tokens]
        out["has_text"][b, :n] = not drop
        out["pos"][b, :n] = tokens - first + config.history  # the first active token sits at `history`
        out["valid"][b, :n] = True
        out["loss_mask"][b, len(hist):n] = True
    return {k: torch.from_numpy(v) for k, v in out.items()}


def diffusion_loss(model: MotionDiT, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    v = model(batch["z"], batch["level"], batch["text"], batch["has_text"], batch["pos"], batch["valid"])
    err = (v - batch["target"]).pow(2).mean(-1)  # (B, L)
    mask = batch["loss_mask"].float()
    # Data-parallel: the count over all ranks' slices, so the ranks' mean is the global batch's loss.
    return (err * mask).sum() / distributed.mean_denominator(mask.sum())


METHODS = {"dit": "flood", "chunk": "chunk", "ar": "ar"}


def train_diffusion(args: argparse.Namespace) -> int:
    method = METHODS[args.what]
    config = apply_overrides(DiTConfig.for_method(method), args.set)
    data = load_data(args)
    device = torch.device(getattr(args, "device", "cpu"))
    vae = load_vae(args.vae)
    schedule = make_schedule(method, config)
    torch.manual_seed(args.seed)
    model = MotionDiT(config).to(device)
    clips = LatentClips(data, vae, "train")
    rng = np.random.default_rng(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    lr = _cosine(args.lr, args.steps)
    net = distributed.wrap(model, diffusion_loss)

    def step(i: int) -> dict[str, float]:
        for g in optimizer.param_groups:
            g["lr"] = lr(i)
        batch = distributed.shard(diffusion_batch(clips, schedule, config, args.batch, rng, config.p_uncond))
        loss = net({k: v.to(device) for k, v in batch.items()})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return {"loss": loss.item()}

    train_loop(model, optimizer, step, args.steps, args.out, {"dit": config.__dict__, "method": method},
               save_every=args.save_every, desc=method, extra=lambda: {"kind": method, "vae": str(args.vae)},
               progress=not args.quiet, rngs=[rng])
    return 0


def load_dit(directory: str | Path) -> tuple[MotionDiT, str]:
    meta = json.loads((Path(directory) / "config.json").read_text())
    model = MotionDiT(DiTConfig(**meta["config"]["dit"]))
    load_weights(directory, model)
    return model.eval(), meta["config"]["method"]


# --- command line ----------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    """Train ``args.what``: one process, or one of torchrun's (then ``--batch`` is the global batch)."""
    torch.set_num_threads(max(1, args.threads))
    steps, batch, lr = TRAIN_DEFAULTS[args.what]
    args.steps = args.steps or steps
    args.batch = args.batch or batch
    args.lr = args.lr or lr
    args.out = args.out or OUT / {"dit": "flood"}.get(args.what, args.what)
    info = distributed.init(getattr(args, "device", "cpu"))
    args.device = info.device
    try:
        if args.batch % info.world_size:
            raise ValueError(f"--batch {args.batch} does not divide by the {info.world_size} processes")
        if args.what == "vae":
            return train_vae(args)
        if args.what == "evaluator":
            from anima.body.training.evaluator import train_evaluator

            return train_evaluator(args)
        return train_diffusion(args)
    finally:
        distributed.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anima.body.training.train", description=__doc__.split("\n")[0])
    add_train_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return run(parser.parse_args(argv))
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
