"""Training entry points for the face models: quantiser, stage 1, stage 2 and the one-stage baseline.

Every command resumes from its output directory (safetensors + JSON, ``anima.train``) and can be
stopped and restarted. Small models, CPU, one thread by default::

    python -m anima.face.data.corpus --out out/face_corpus --minutes 50
    python -m anima.face.training.train quantizer --corpus out/face_corpus --out out/face/quantizer --steps 1500
    python -m anima.face.training.train stage1 --corpus out/face_corpus --quantizer out/face/quantizer --out out/face/stage1
    python -m anima.face.training.train stage2 --corpus out/face_corpus --stage1 out/face/stage1 --out out/face/stage2
    python -m anima.face.training.train onestage --corpus out/face_corpus --quantizer out/face/quantizer --out out/face/onestage

``--set key=value`` overrides a field of the model config (``UniLSConfig`` / ``QuantizerConfig``)
with a type check (``anima.train.apply_overrides``). Every step is logged to ``--out``/metrics.jsonl.
Under ``torchrun`` the same commands train data-parallel (``anima.train.distributed``): ``--batch``
is the global batch, split evenly over the processes; ``--device cuda`` puts one on each GPU.
See docs/training.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anima.checkpoint import CheckpointError, read_config
from anima.face import motion as motion_space
from anima.face.data.corpus import Track, load_tracks
from anima.face.model.quantizer import MultiScaleQuantizer, QuantizerConfig
from anima.face.model.unils import UniLS, UniLSConfig, load_unils
from anima.face.training.options import add_arguments
from anima.train import apply_overrides, distributed, load_weights, save_checkpoint, train_loop
from anima.train.schedule import lr_at

logger = logging.getLogger(__name__)

FEATURE_FLOOR = -2.0  # AudioFeatureConfig: (floor_db + offset_db) / scale_db, i.e. digital silence


# ---------------------------------------------------------------------------------------------
# Loading


def load_quantizer(directory: str | Path) -> MultiScaleQuantizer:
    meta = read_config(directory)
    config = QuantizerConfig(**meta["config"]["quantizer"])
    model = MultiScaleQuantizer(config)
    load_weights(directory, model)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Batches


class Batcher:
    """Random training sequences from corpus tracks: motion, both audio tracks and a style clip."""

    def __init__(self, tracks: list[Track], quantizer: MultiScaleQuantizer, length: int, style_len: int = 100,
                 need_audio: bool = False, gain_db: float = 6.0, seed: int = 0) -> None:
        self.tracks = [t for t in tracks if t.motion.shape[0] >= length + 1 and (t.has_audio or not need_audio)]
        if not self.tracks:
            raise ValueError(f"no track is long enough ({length} frames){' with audio' if need_audio else ''}")
        self.length, self.style_len, self.gain_db = length, style_len, gain_db
        self.need_audio = need_audio
        mean, std = quantizer.motion_mean.numpy(), quantizer.motion_std.numpy()
        self.motion = [((t.motion - mean) / std).astype(np.float32) for t in self.tracks]
        weights = np.array([t.motion.shape[0] for t in self.tracks], dtype=np.float64)
        self.p = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def _gain(self, feats: np.ndarray) -> np.ndarray:
        if not self.gain_db:
            return feats
        shift = self.rng.uniform(-self.gain_db, self.gain_db) / 20.0  # features are dB / 20
        speech = feats > FEATURE_FLOOR + 1e-3  # digital silence stays silent
        return np.where(speech, np.maximum(feats + shift, FEATURE_FLOOR), feats)

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        L = self.length
        motion, ref, own, other = [], [], [], []
        for i in self.rng.choice(len(self.tracks), size=batch, p=self.p):
            t, m = self.tracks[i], self.motion[i]
            T = m.shape[0]
            s = int(self.rng.integers(0, T - L + 1))
            motion.append(m[s:s + L])
            r = int(self.rng.integers(0, max(1, T - self.style_len + 1)))
            ref.append(m[r:r + self.style_len])
            if self.need_audio:
                own.append(self._gain(t.own[s:s + L]))
                other.append(self._gain(t.other[s:s + L]))
        out = {"motion": torch.from_numpy(np.stack(motion)), "style_ref": torch.from_numpy(np.stack(ref))}
        if self.need_audio:
            out["own"] = torch.from_numpy(np.stack(own).astype(np.float32))
            out["other"] = torch.from_numpy(np.stack(other).astype(np.float32))
        return out


# ---------------------------------------------------------------------------------------------
# Quantiser


def motion_statistics(tracks: list[Track]) -> tuple[torch.Tensor, torch.Tensor]:
    allm = np.concatenate([t.motion for t in tracks])
    return torch.from_numpy(allm.mean(0)), torch.from_numpy(allm.std(0))


@torch.no_grad()
def quantizer_report(model: MultiScaleQuantizer, tracks: list[Track]) -> dict[str, float]:
    """Reconstruction error of whole tracks (in windows), in the parameters' own units."""
    model.eval()
    w = model.config.window
    errs, refs = [], []
    for t in tracks:
        n = t.motion.shape[0] // w * w
        if n == 0:
            continue
        x = model.normalize(torch.from_numpy(t.motion[:n]))[None]
        recon = model.denormalize(model.reconstruct(x))[0].numpy()
        errs.append(recon - t.motion[:n])
        refs.append(t.motion[:n])
    e, ref = np.concatenate(errs), np.concatenate(refs)
    deg = 180.0 / math.pi

    def rmse(idx) -> float:
        return float(np.sqrt(np.mean(e[:, idx] ** 2)))

    return {
        "expression_rmse": rmse(motion_space.EXPRESSION),  # ARKit weight units (0..1)
        "lip_rmse": rmse(motion_space.LIPS),
        "upper_face_rmse": rmse(motion_space.UPPER_FACE),
        "jaw_open_rmse_deg": rmse([motion_space.JAW_OPEN]) * deg,
        "head_rmse_deg": rmse(motion_space.HEAD) * deg,
        "eyes_rmse_deg": rmse(motion_space.EYES) * deg,
        "jaw_open_std_deg": float(ref[:, motion_space.JAW_OPEN].std() * deg),
        "head_std_deg": float(ref[:, motion_space.HEAD].std(0).mean() * deg),
        "normalised_mse": float(np.mean((e / model.motion_std.numpy()) ** 2)),
        "frames": int(e.shape[0]),
    }


def train_quantizer(corpus: str | Path, out: str | Path, steps: int = 1000, batch: int = 32, lr: float = 3e-4,
                    overrides: list[str] | None = None, seed: int = 0, progress: bool = True,
                    device: str | torch.device = "cpu") -> dict[str, float]:
    """Train the quantiser; ``batch`` is the global batch (split over ranks under torchrun).

    Data-parallel, the codebook EMA follows rank 0's slice (DDP broadcasts buffers from rank 0).
    """
    torch.manual_seed(seed)
    config = apply_overrides(QuantizerConfig(), overrides)
    train, val = load_tracks(corpus, "train"), load_tracks(corpus, "val")
    model = MultiScaleQuantizer(config)
    model.set_statistics(*motion_statistics(train))
    batcher = Batcher(train, model, length=2 * config.window, seed=seed)
    model.to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    net = distributed.wrap(model)

    def step_fn(i: int) -> dict[str, float]:
        for group in opt.param_groups:
            group["lr"] = lr_at(i, steps, lr, warmup=100)
        x = distributed.shard(batcher.sample(batch)["motion"]).to(device)  # (B / world, 2 * window, 50)
        _, losses = net(x)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {k: v.item() for k, v in losses.items()}

    cfg = {"quantizer": dataclasses.asdict(config), "train": {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "corpus": str(corpus)}}
    state = train_loop(model, opt, step_fn, steps, out, cfg, save_every=250, desc="quantizer", progress=progress,
                       rngs=[batcher.rng])
    report = quantizer_report(model.cpu(), val)
    if distributed.is_main():  # the last checkpoint again, with the report
        extra = {"history": state.history[-200:], "report": report, "rng": read_config(out)["extra"].get("rng")}
        save_checkpoint(out, model, cfg, state.step, opt, {k: v for k, v in extra.items() if v is not None})
    distributed.barrier()
    return report


# ---------------------------------------------------------------------------------------------
# Generator stages


def _loss(model: UniLS, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    return model.loss(b["motion"], b["style_ref"], b.get("own"), b.get("other"))


def _generator_step_fn(model: UniLS, opt: torch.optim.Optimizer, batcher: Batcher, val: Batcher | None, steps: int,
                       batch: int, lr: float, audio: bool, device: str | torch.device = "cpu"):
    params = [p for group in opt.param_groups for p in group["params"]]
    last_val = {"val_loss": float("nan")}
    net = distributed.wrap(model, _loss)

    def step_fn(i: int) -> dict[str, float]:
        for group in opt.param_groups:
            group["lr"] = lr_at(i, steps, lr, warmup=100)
        b = distributed.shard(batcher.sample(batch))  # this rank's slice of the global batch
        loss, stats = net({k: v.to(device) for k, v in b.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if val is not None and ((i + 1) % 250 == 0 or i + 1 == steps):
            model.eval()
            with torch.no_grad():  # the whole validation batch on every rank (the same on each)
                vb = {k: v.to(device) for k, v in val.sample(batch).items()}
                last_val["val_loss"] = _loss(model, vb)[1]["loss"]
            model.train()
        return {**stats, **last_val}

    return step_fn


def _train_generator(model: UniLS, trainable: list[torch.nn.Parameter], corpus: str | Path, out: str | Path, steps: int,
                     batch: int, lr: float, seed: int, cfg: dict, progress: bool, desc: str,
                     device: str | torch.device = "cpu") -> UniLS:
    audio = model.config.audio
    train, val = load_tracks(corpus, "train"), load_tracks(corpus, "val")
    L = model.config.n_windows * model.config.window
    batcher = Batcher(train, model.quantizer, L, need_audio=audio, seed=seed)
    val_batcher = Batcher(val, model.quantizer, L, need_audio=audio, gain_db=0.0, seed=seed + 1) if val else None
    model.to(device)
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    step_fn = _generator_step_fn(model, opt, batcher, val_batcher, steps, batch, lr, audio, device)
    rngs = [batcher.rng] + ([val_batcher.rng] if val_batcher is not None else [])
    train_loop(model, opt, step_fn, steps, out, cfg, save_every=250, desc=desc, progress=progress, rngs=rngs)
    return model.cpu()


def _config_dict(model: UniLS, stage: str, steps: int, batch: int, lr: float, seed: int, corpus, parent: str | None) -> dict:
    return {
        "quantizer": dataclasses.asdict(model.quantizer.config),
        "generator": dataclasses.asdict(model.config),
        "stage": stage,
        "train": {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "corpus": str(corpus), "parent": parent},
    }


def train_stage1(corpus, quantizer_dir, out, steps: int = 800, batch: int = 8, lr: float = 1e-3,
                 overrides: list[str] | None = None, seed: int = 0, progress: bool = True,
                 device: str | torch.device = "cpu") -> UniLS:
    """Stage 1: the audio-free motion prior (past motion + style -> next motion chunk)."""
    torch.manual_seed(seed)
    config = apply_overrides(UniLSConfig(audio=False, lora_rank=0), overrides)
    if config.audio:
        raise ValueError("stage 1 is audio-free: do not --set audio=true")
    model = UniLS(load_quantizer(quantizer_dir), config)
    trainable = [p for p in model.generator.parameters() if p.requires_grad]
    cfg = _config_dict(model, "stage1", steps, batch, lr, seed, corpus, str(quantizer_dir))
    return _train_generator(model, trainable, corpus, out, steps, batch, lr, seed, cfg, progress, "stage 1", device)


def stage2_from_stage1(stage1_dir: str | Path, lora_rank: int = 8, overrides: list[str] | None = None) -> tuple[UniLS, list]:
    """A stage-2 model: the stage-1 weights (frozen, LoRA-adapted) plus new audio cross-attention."""
    stage1, _ = load_unils(stage1_dir)
    config = apply_overrides(dataclasses.replace(stage1.config, audio=True, lora_rank=lora_rank), overrides)
    model = UniLS(stage1.quantizer, config)
    missing, unexpected = model.load_state_dict(stage1.state_dict(), strict=False)
    new = ("lora_", "xattn_", "ln_own", "ln_other", "audio_enc")
    if unexpected or any(not any(tag in k for tag in new) for k in missing):
        raise CheckpointError(f"{stage1_dir}: stage-1 weights do not fit the stage-2 model "
                              f"(unexpected {unexpected[:5]}, missing {[k for k in missing if not any(t in k for t in new)][:5]})")
    return model, model.generator.trainable_stage2()


def train_stage2(corpus, stage1_dir, out, steps: int = 800, batch: int = 8, lr: float = 1e-3, lora_rank: int = 8,
                 overrides: list[str] | None = None, seed: int = 0, progress: bool = True,
                 device: str | torch.device = "cpu") -> UniLS:
    """Stage 2: add own / other audio cross-attention (from scratch), LoRA on the stage-1 weights."""
    torch.manual_seed(seed)
    model, trainable = stage2_from_stage1(stage1_dir, lora_rank, overrides)
    cfg = _config_dict(model, "stage2", steps, batch, lr, seed, corpus, str(stage1_dir))
    return _train_generator(model, trainable, corpus, out, steps, batch, lr, seed, cfg, progress, "stage 2", device)


def train_onestage(corpus, quantizer_dir, out, steps: int = 1600, batch: int = 8, lr: float = 1e-3,
                   overrides: list[str] | None = None, seed: int = 0, progress: bool = True,
                   device: str | torch.device = "cpu") -> UniLS:
    """The baseline: the stage-2 architecture trained from scratch on dialogue, no motion prior, no LoRA."""
    torch.manual_seed(seed)
    config = apply_overrides(UniLSConfig(audio=True, lora_rank=0), overrides)
    model = UniLS(load_quantizer(quantizer_dir), config)
    trainable = [p for p in model.generator.parameters() if p.requires_grad]
    cfg = _config_dict(model, "onestage", steps, batch, lr, seed, corpus, str(quantizer_dir))
    return _train_generator(model, trainable, corpus, out, steps, batch, lr, seed, cfg, progress, "one-stage", device)


# ---------------------------------------------------------------------------------------------
# Command line


def run_command(kind: str, args: argparse.Namespace) -> int:
    """Train ``kind``: one process, or one of torchrun's (then ``--batch`` is the global batch)."""
    torch.set_num_threads(max(1, args.threads))
    info = distributed.init(getattr(args, "device", "cpu"))
    try:
        return _run(kind, args, info)
    finally:
        distributed.close()


def _run(kind: str, args: argparse.Namespace, info: distributed.DistInfo) -> int:
    kw: dict[str, Any] = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("lr", args.lr)) if v is not None}
    if args.batch is not None and args.batch % info.world_size:
        raise ValueError(f"--batch {args.batch} does not divide by the {info.world_size} processes")
    kw["device"] = info.device
    t0 = time.time()
    progress = not args.quiet
    match kind:
        case "quantizer":
            report = train_quantizer(args.corpus, args.out, overrides=args.set, seed=args.seed, progress=progress, **kw)
            if info.is_main:
                print(json.dumps(report, indent=2))
        case "stage1":
            train_stage1(args.corpus, args.quantizer, args.out, overrides=args.set, seed=args.seed, progress=progress, **kw)
        case "stage2":
            train_stage2(args.corpus, args.stage1, args.out, lora_rank=args.lora_rank, overrides=args.set, seed=args.seed,
                         progress=progress, **kw)
        case "onestage":
            train_onestage(args.corpus, args.quantizer, args.out, overrides=args.set, seed=args.seed, progress=progress, **kw)
        case _:
            raise KeyError(f"unknown training command {kind!r}; valid: quantizer, stage1, stage2, onestage")
    if info.is_main:
        print(f"{kind}: done in {time.time() - t0:.0f} s -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the UniLS face models.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub, lambda kind: (lambda args: run_command(kind, args)))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
