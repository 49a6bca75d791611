"""Train the causal motion codec on the dialogue corpus, then measure it (resumable, torchrun-ready)::

    python -m anima.e2e.duplex.training.train_motion --dialogues out/dialogues --out out/duplex/runs/motion --steps 6000
    python -m anima.e2e.duplex.training.train_motion --dialogues out/dialogues --out out/duplex/runs/motion --eval-only

Every train-split conversation's motion is loaded once (face + body263 as 375-dim frames at 25 fps,
``anima.e2e.duplex.motion.frame_features``); each step draws ``--batch`` random windows of
``--window-s`` seconds (uniform over frames). The raw-frame normalisation is measured on the train
split before step 0 and lives in the checkpoint. Every ``--val-every`` steps: the loss (no latent
noise) on a fixed set of val-split windows.

After the last step (or with ``--eval-only``) the latent statistics are measured over the whole
train split (``MotionCodec.set_latent_stats``: ``encode`` then gives ~N(0, 1) latents per dimension)
and saved into the run folder, and the test split is reconstructed whole, offline and streamed two
frames at a time (the runtime's 80 ms step): ``eval.json`` in the run folder (``evaluate_motion``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from anima.train.options import add_common_arguments
from anima.train.schedule import lr_at

JOINT_CHUNK_S = 4.0  # joints are integrated from the root velocities over chunks this long (drift stays bounded)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, steps=6000, out=Path("out/duplex/runs/motion"), configs=("small",), save_every=500)
    parser.add_argument("--dialogues", type=Path, default=Path("out/dialogues"), help="the dialogue corpus (docs/dialogues.md)")
    parser.add_argument("--batch", type=int, default=16, help="windows per step (default %(default)s)")
    parser.add_argument("--window-s", type=float, default=4.0, help="seconds per training window (default %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--val-windows", type=int, default=64, help="fixed val-split windows scored every --val-every")
    parser.add_argument("--eval-only", action="store_true", help="no training: latent statistics + test evaluation of --out")
    parser.add_argument("--no-eval", action="store_true", help="train only (no latent statistics, no eval.json)")
    parser.add_argument("--stream-step", type=int, default=2, help="frames per streamed call in the evaluation (default %(default)s)")


# -- data ------------------------------------------------------------------------------------------


def load_splits(root: str | Path, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, list[dict[str, Any]]]:
    """The conversations of each split (the corpus checked once): each {"dir", "face" (T, 112),
    "body263" (T20, 263), "frames" (T, 375)}."""
    from anima.e2e.data.format import open_corpus
    from anima.e2e.duplex.motion import frame_features

    out: dict[str, list[dict[str, Any]]] = {split: [] for split in splits}
    for conv in open_corpus(root).conversations:
        if conv.get("split") not in out:
            continue
        with np.load(Path(conv["dir"]) / "motion.npz") as z:
            face, body = z["face"].astype(np.float32), z["body263"].astype(np.float32)
        out[conv["split"]].append({"dir": conv["dir"], "face": face, "body263": body, "frames": frame_features(face, body)})
    return out


def frame_statistics(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (float64 sums) over every frame of a list of (T_i, D) arrays."""
    if not frames:
        raise ValueError("frame_statistics: no frames")
    n = sum(f.shape[0] for f in frames)
    s = sum(f.sum(0, dtype=np.float64) for f in frames)
    mean = s / n
    var = sum(((f - mean) ** 2).sum(0) for f in frames) / n
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


class WindowSampler:
    """Random windows of ``length`` frames, uniform over the frames of the conversations long enough."""

    def __init__(self, frames: list[np.ndarray], length: int, seed: int) -> None:
        self.frames = [f for f in frames if f.shape[0] >= length]
        if not self.frames:
            raise ValueError(f"WindowSampler: no conversation has {length} frames")
        self.length = length
        starts = np.array([f.shape[0] - length + 1 for f in self.frames], np.float64)
        self.p = starts / starts.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int):
        import torch

        out = np.empty((batch, self.length, self.frames[0].shape[1]), np.float32)
        for b, i in enumerate(self.rng.choice(len(self.frames), size=batch, p=self.p)):
            s = int(self.rng.integers(self.frames[i].shape[0] - self.length + 1))
            out[b] = self.frames[i][s:s + self.length]
        return torch.from_numpy(out)  # (B, length, 375)


# -- measuring -------------------------------------------------------------------------------------


def latent_statistics(codec, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the encoder's RMS-normalised latents over whole conversations."""
    import torch

    lat = [codec.raw_latents(torch.from_numpy(f)[None])[0].double().numpy() for f in frames]
    allz = np.concatenate(lat, axis=0)
    return allz.mean(0).astype(np.float32), allz.std(0).astype(np.float32)


def reconstruct(codec, frames: np.ndarray, stream_step: int | None = None) -> np.ndarray:
    """(T, 375) raw frames through encode + decode: offline (None) or streamed ``stream_step`` frames a call."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames, np.float32))[None]  # (1, T, 375)
    with torch.no_grad():
        if stream_step is None:
            return codec.decode(codec.encode(x))[0].numpy()
        state = codec.new_state()
        out = [codec.decode_step(state, codec.encode_step(state, x[:, i:i + stream_step]))
               for i in range(0, x.shape[1], stream_step)]
        return torch.cat(out, dim=1)[0].numpy()


def _chunk_joints(body263: np.ndarray) -> np.ndarray:
    """(T20, 263) -> (chunks, 80, 22, 3): joints recovered from each 4 s chunk on its own (remainder dropped)."""
    from anima.body.data.humanml3d import recover_from_ric
    from anima.e2e.duplex.motion import BODY_FPS

    n = int(JOINT_CHUNK_S * BODY_FPS)
    k = body263.shape[0] // n
    return recover_from_ric(np.ascontiguousarray(body263[:k * n].reshape(k, n, -1), np.float32))


def reconstruction_errors(codec, conversations: list[dict[str, Any]], stream_step: int | None = None) -> dict[str, float]:
    """Errors of encode + decode on whole conversations, pooled over frames:

    mse_norm        MSE in normalised units (the codec's std), all 375 dims
    face_rmse       face parameters, raw units (anima/face/params.py)
    body263_rmse    body features at 25 fps, raw units
    mpjpe_m         mean joint position error (metres), root-aligned, joints from ``recover_from_ric`` of
                    the 20 fps body263 both sides (so the 25 -> 20 fps resampling is not counted)
    mpjpe_global_m  the same with the root trajectory, each 4 s chunk integrated from its own start
    """
    from anima.e2e.duplex.motion import FACE_DIM, split_frame

    std = codec.std.numpy()
    sums = {"sq_norm": 0.0, "sq_face": 0.0, "sq_body": 0.0, "frames": 0, "jl": 0.0, "jg": 0.0, "joints": 0}
    for conv in conversations:
        x = conv["frames"]
        rec = reconstruct(codec, x, stream_step)
        err = rec - x
        sums["sq_norm"] += float(((err / std) ** 2).sum(dtype=np.float64))
        sums["sq_face"] += float((err[:, :FACE_DIM] ** 2).sum(dtype=np.float64))
        sums["sq_body"] += float((err[:, FACE_DIM:] ** 2).sum(dtype=np.float64))
        sums["frames"] += x.shape[0]
        ja, jb = _chunk_joints(split_frame(rec)[1]), _chunk_joints(split_frame(x)[1])  # (k, 80, 22, 3)
        sums["jg"] += float(np.linalg.norm(ja - jb, axis=-1).sum(dtype=np.float64))
        sums["jl"] += float(np.linalg.norm((ja - ja[..., :1, :]) - (jb - jb[..., :1, :]), axis=-1).sum(dtype=np.float64))
        sums["joints"] += ja.shape[0] * ja.shape[1] * ja.shape[2]
    n, dim = sums["frames"], codec.config.frame_dim
    joints = max(1, sums["joints"])
    return {"mse_norm": sums["sq_norm"] / (n * dim), "face_rmse": math.sqrt(sums["sq_face"] / (n * FACE_DIM)),
            "body263_rmse": math.sqrt(sums["sq_body"] / (n * (dim - FACE_DIM))),
            "mpjpe_m": sums["jl"] / joints, "mpjpe_global_m": sums["jg"] / joints}


def evaluate_motion(codec, conversations: list[dict[str, Any]], stream_step: int = 2) -> dict[str, Any]:
    """Offline and streamed reconstruction errors (``reconstruction_errors``), their largest difference, the
    standardised latents' spread, and the floor the 20 -> 25 -> 20 fps body resampling alone sets."""
    from anima.e2e.duplex.motion import split_frame

    t0 = time.perf_counter()
    offline = reconstruction_errors(codec, conversations)
    t1 = time.perf_counter()
    streamed = reconstruction_errors(codec, conversations, stream_step)
    t2 = time.perf_counter()
    first = conversations[0]["frames"]
    gap = float(np.abs(reconstruct(codec, first) - reconstruct(codec, first, stream_step)).max())
    jl, jn = 0.0, 0
    for conv in conversations:  # what the frame layout costs before any codec: body263 through 25 fps and back
        back = split_frame(conv["frames"])[1]
        n = min(back.shape[0], conv["body263"].shape[0])
        ja, jb = _chunk_joints(back[:n]), _chunk_joints(conv["body263"][:n])
        jl += float(np.linalg.norm((ja - ja[..., :1, :]) - (jb - jb[..., :1, :]), axis=-1).sum(dtype=np.float64))
        jn += ja.shape[0] * ja.shape[1] * ja.shape[2]
    import torch

    with torch.no_grad():
        z = torch.cat([codec.encode(torch.from_numpy(c["frames"])[None])[0] for c in conversations])
    frames = sum(c["frames"].shape[0] for c in conversations)
    return {"conversations": len(conversations), "frames": frames, "hours": frames / 25 / 3600,
            "offline": offline, "streamed": streamed, "stream_step": stream_step,
            "max_abs_offline_vs_streamed": gap,
            "resample_floor_mpjpe_m": jl / max(1, jn),
            "latent_mean_abs": float(z.mean(0).abs().mean()), "latent_std_mean": float(z.std(0).mean()),
            "offline_s": round(t1 - t0, 2), "streamed_s": round(t2 - t1, 2),
            "streamed_ms_per_step": round(1000 * (t2 - t1) / max(1, frames / stream_step), 3)}


# -- the run ---------------------------------------------------------------------------------------


def finish(codec, out: Path, train: list[dict[str, Any]], test: list[dict[str, Any]], stream_step: int) -> dict[str, Any]:
    """Latent statistics over the train split into the run's checkpoint (optimizer and resume state kept),
    then the test evaluation into ``out/eval.json``."""
    import torch

    from anima.checkpoint import load_checkpoint, read_config, save_checkpoint

    codec.eval()
    mean, std = latent_statistics(codec, [c["frames"] for c in train])
    codec.set_latent_stats(mean, std)
    meta = read_config(out)
    opt = torch.optim.AdamW(codec.parameters())
    load_checkpoint(out, type(codec)(codec.config), opt)  # the saved optimizer state, so the run still resumes exactly
    save_checkpoint(out, codec, meta["config"], int(meta.get("step", 0)), opt if opt.state else None, meta.get("extra"))
    report = {"step": int(meta.get("step", 0)), "test": evaluate_motion(codec, test, stream_step)}
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    return report


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from anima.e2e.duplex.motion import FPS, MotionCodec, MotionCodecConfig
    from anima.train import apply_overrides, distributed, train_loop

    torch.set_num_threads(args.threads)
    info = distributed.init(args.device)
    torch.manual_seed(args.seed)
    config = apply_overrides(MotionCodecConfig(), args.set)
    codec = MotionCodec(config)
    out = Path(args.out)
    splits = load_splits(args.dialogues)
    train = splits["train"]
    if not train:
        raise SystemExit(f"{args.dialogues}: no train-split conversations")
    state_step = 0
    if not args.eval_only:
        codec.set_normalisation(*frame_statistics([c["frames"] for c in train]))  # a resumed run loads the saved ones
        codec.to(info.device)
        val = splits["val"] or train[-8:]
        length = round(args.window_s * FPS)
        sampler = WindowSampler([c["frames"] for c in train], length, args.seed)
        val_x = WindowSampler([c["frames"] for c in val], length, args.seed + 1).sample(args.val_windows)
        opt = torch.optim.AdamW(codec.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
        net = distributed.wrap(codec, lambda m, x: m.loss(x))
        last_val: dict[str, float] = {"val_loss": float("nan"), "val_mse": float("nan")}

        def step_fn(i: int) -> dict[str, float]:
            for group in opt.param_groups:
                group["lr"] = lr_at(i, args.steps, args.lr, args.warmup)
            loss, metrics = net(distributed.shard(sampler.sample(args.batch)).to(info.device))  # (B / world, T, 375)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
            opt.step()
            if (i + 1) % args.val_every == 0 or i + 1 == args.steps:
                codec.eval()
                with torch.no_grad():
                    scores = [codec.loss(val_x[j:j + args.batch].to(info.device))[1] for j in range(0, len(val_x), args.batch)]
                last_val.update(val_loss=float(np.mean([s["loss"] for s in scores])),
                                val_mse=float(np.mean([s["mse"] for s in scores])))
                codec.train()
            return {**metrics, **last_val}

        cfg = {**codec.config_dict(), "train": {"steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                                                "window_s": args.window_s, "dialogues": str(args.dialogues),
                                                "overrides": list(args.set)}}
        state = train_loop(codec, opt, step_fn, args.steps, out, cfg, save_every=args.save_every, desc="motion codec",
                           progress=not args.quiet, rngs=[sampler.rng])
        state_step = state.step
    report: dict[str, Any] = {"step": state_step}
    if not args.no_eval and distributed.is_main():
        codec = MotionCodec.from_pretrained(out)
        test = splits["test"]
        if not test:
            raise SystemExit(f"{args.dialogues}: no test-split conversations to evaluate on")
        report = finish(codec, out, train, test, args.stream_step)
    distributed.close()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
