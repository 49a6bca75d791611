"""Train the duplex decoder G in the paper's two stages (4.2; resumable, torchrun-ready)::

    # (a) the speech model: audio of both parties + the text prompt (eq. 3)
    python -m anima.e2e.duplex.training.train --stage audio --tts out/mot/talker/tts \\
        --data out/duplex/data --out out/duplex/runs/audio --steps 1500
    # (b) the speech-video model: + motion latents (NLL + denoising, eq. 4), from stage (a)
    python -m anima.e2e.duplex.training.train --stage av --init out/duplex/runs/audio \\
        --motion out/duplex/runs/motion --data out/duplex/data --out out/duplex/runs/av --steps 3000

Each step is a batch of random windows of ``context`` steps (20 s) of the dialogue corpus. Inputs
at step i are both parties' codes of step i-1 (the agent's with the delay), the agent's motion
latents of step i-1 (the frozen motion codec's), and the controls of step i; the targets are the
agent's row i and motion i. Controls are dropped to their empty tokens (prompt 0.3, trajectory 0.5,
identity 0.1 of the windows) so the model runs without them, as it mostly does live. In stage (a)
motion and trajectory are empty (not in audio-only data, as in the paper).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from anima.train.options import add_common_arguments
from anima.train.schedule import lr_at

DROP = {"prompt": 0.3, "traj": 0.5, "identity": 0.1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, steps=3000, out=None, save_every=100)
    parser.add_argument("--stage", choices=("audio", "av"), required=True, help="(a) audio-only or (b) audio-visual")
    parser.add_argument("--data", type=Path, default=Path("out/duplex/data"), help="built by anima.e2e.duplex.training.data")
    parser.add_argument("--tts", type=Path, default=None, help="initialise from this Kodama TTS checkpoint (stage a)")
    parser.add_argument("--init", type=Path, default=None, help="initialise from this duplex checkpoint (stage b: stage a's run)")
    parser.add_argument("--motion", type=Path, default=None, help="the trained motion codec (stage b)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--window", type=int, default=None, help="steps per training window (default: the context)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--motion-weight", type=float, default=1.0)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--stop-at", type=int, default=None, help="stop at this step of the --steps schedule (resume later)")


def make_inputs(batch: dict, config, codec, stage: str, rng: np.random.Generator, drop: dict[str, float] | None = None):
    """A sampler batch -> (inputs for ``DuplexDecoder.embed``, targets (B, S, K), motion target, motion mask).

    ``batch``: ``WindowSampler.sample`` (user_codes / agent_codes (B, K, S), motion (B, S, F, 375),
    joint_vel (B, S, F, 66), prompt (B, S, 384), has_prompt, identity (B,), valid (B, S)).
    ``drop``: per-window probabilities of emptying prompt / traj / identity (None: keep all).
    """
    import torch

    from anima.e2e.duplex.model import delayed_rows, shift_right

    drop = drop or {}
    valid = batch["valid"]  # (B, S)
    B, S = valid.shape
    rows = delayed_rows(batch["agent_codes"].long(), config.delays, config.pad)  # (B, S, K)
    targets = rows.masked_fill((rows == config.pad) | ~valid[..., None], -100)
    user = batch["user_codes"].long().transpose(1, 2).masked_fill(~valid[..., None], config.pad)  # (B, S, K)

    def keep(name: str) -> torch.Tensor:  # (B, 1) per-window keep mask
        return torch.from_numpy(rng.random(B) >= drop.get(name, 0.0))[:, None]

    inputs = {"agent_rows": shift_right(rows.masked_fill(~valid[..., None], config.pad), config.start),
              "user_frames": shift_right(user, config.pad),
              "prompt": batch["prompt"].float(), "has_prompt": batch["has_prompt"] & valid & keep("prompt"),
              "motion": None, "has_motion": None, "traj": None, "has_traj": None,
              "identity": torch.where(keep("identity")[:, 0], batch["identity"].long(),
                                      torch.full((B,), config.n_identity, dtype=torch.long))}
    motion_target = motion_mask = None
    if stage == "av":
        with torch.no_grad():
            frames = batch["motion"].float().flatten(1, 2)  # (B, S * F, 375)
            latents = codec.encode(frames).view(B, S, config.motion_dim)  # (B, S, F * latent)
        inputs["motion"], inputs["has_motion"] = shift_right(latents, 0.0), shift_right(valid, False)
        inputs["traj"] = batch["joint_vel"].float().flatten(2)  # (B, S, F * 66)
        inputs["has_traj"] = valid & keep("traj")
        motion_target, motion_mask = latents, valid
    return inputs, targets, motion_target, motion_mask


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from anima.checkpoint import load_weights, read_config
    from anima.e2e.duplex.model import DuplexConfig, DuplexDecoder, config_dict, init_from_tts
    from anima.e2e.duplex.training.data import CHARACTERS, WindowSampler, load_split
    from anima.train import apply_overrides, distributed, train_loop

    torch.set_num_threads(args.threads)
    info = distributed.init(args.device)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if args.stage == "av" and args.motion is None:
        raise SystemExit("--stage av needs --motion (a trained motion codec)")
    train_convs, val_convs = load_split(args.data, "train"), load_split(args.data, "val")
    if not train_convs:
        raise SystemExit(f"{args.data}: no training conversations (build them with anima.e2e.duplex.training.data)")
    codec = None
    overrides: dict[str, Any] = {"n_identity": len(CHARACTERS), "identities": tuple(CHARACTERS)}
    if args.motion is not None:
        from anima.e2e.duplex.motion import MotionCodec

        codec = MotionCodec.from_pretrained(args.motion).to(info.device).eval()
        for p in codec.parameters():
            p.requires_grad_(False)
        overrides["latent"] = codec.config.latent
    vel = np.concatenate([c.joint_vel[::50] for c in train_convs])
    overrides["traj_scale"] = float(max(vel.std(), 1e-6))
    if args.init is not None:  # stage (b) keeps stage (a)'s shape
        init_cfg = read_config(args.init)["config"]["model"]
        overrides = {**init_cfg, **{k: v for k, v in overrides.items() if k in ("latent", "traj_scale")}}
        overrides["identities"] = tuple(overrides.get("identities", ()))
        config = apply_overrides(DuplexConfig(**overrides), args.set)
    else:
        config = apply_overrides(DuplexConfig.preset(args.config, **overrides), args.set)
    model = DuplexDecoder(config).to(info.device)
    resuming = (out / "config.json").is_file()
    if not resuming:
        if args.init is not None:
            missing = load_weights(args.init, model, strict=False)
            print(f"initialised from {args.init} (step {missing.get('step')})")
        elif args.tts is not None:
            from anima.talker.model.kodama_tts import load_kodama_tts

            tts, _ = load_kodama_tts(args.tts)
            if tts.config.codebook_size != config.codebook_size:
                raise SystemExit(f"{args.tts}: codebooks of {tts.config.codebook_size}, G has {config.codebook_size}")
            print(f"initialised {len(init_from_tts(model, tts))} tensors from the TTS {args.tts}")
    window = min(args.window or config.context, config.context)
    sampler = WindowSampler(train_convs, window, np.random.default_rng(args.seed))
    val_sampler = WindowSampler(val_convs or train_convs[-8:], window, np.random.default_rng(args.seed + 1))
    rng = np.random.default_rng(args.seed + 7)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    ddp = distributed.wrap(model, lambda m, *a, **k: m.loss(*a, **k))
    last_val: dict[str, float] = {}

    def one_batch(batch: dict, drop: dict | None) -> tuple[torch.Tensor, dict[str, float]]:
        batch = {k: v.to(info.device) for k, v in batch.items()}
        inputs, targets, motion_target, motion_mask = make_inputs(batch, config, codec, args.stage, rng, drop)
        inputs = {k: v.to(info.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        return ddp(inputs, targets, motion_target, motion_mask, args.motion_weight)

    def step_fn(i: int) -> dict[str, float]:
        for group in opt.param_groups:
            group["lr"] = lr_at(i, args.steps, args.lr, args.warmup)
        loss, metrics = one_batch(distributed.shard(sampler.sample(args.batch)), DROP)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (i + 1) % args.val_every == 0 or i + 1 == args.steps:
            model.eval()
            with torch.no_grad():
                vals = [one_batch(val_sampler.sample(args.batch), None)[1] for _ in range(2)]
            last_val.update({f"val_{k}": float(np.mean([v[k] for v in vals])) for k in vals[0]})
            model.train()
        return {**metrics, **last_val}

    source = json.loads((Path(args.data) / "SOURCE.json").read_text())
    cfg = {**config_dict(config), "tokenizer_digest": source.get("digest"), "motion_dir": str(Path(args.motion).resolve()) if args.motion else None,
           "train": {"stage": args.stage, "steps": args.steps, "batch": args.batch, "window": window, "lr": args.lr,
                     "seed": args.seed, "data": str(args.data), "tts": str(args.tts) if args.tts else None,
                     "init": str(args.init) if args.init else None, "drop": DROP, "preset": args.config,
                     "overrides": list(args.set)}}
    stop = args.steps if args.stop_at is None else min(args.stop_at, args.steps)
    state = train_loop(model, opt, step_fn, stop, out, cfg, save_every=args.save_every, desc=f"duplex {args.stage}",
                       progress=not args.quiet, rngs=[sampler.rng, val_sampler.rng, rng])
    distributed.close()
    last = state.history[-1] if state.history else {}
    return {"step": state.step, **{k: last.get(k) for k in ("loss", "nll", "diffusion", "val_nll", "val_diffusion")},
            "config": dataclasses.asdict(config)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    report = run(parser.parse_args(argv))
    print({k: v for k, v in report.items() if k != "config"})


if __name__ == "__main__":
    main()
