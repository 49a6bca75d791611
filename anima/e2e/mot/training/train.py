"""Train the behaviour side of the mixture of transformers by diffusion forcing (resumable, torchrun-ready)::

    python -m anima.e2e.mot.training.train --data out/mot/data --speech out/mot/speech_expert \\
        --out out/mot/runs/expert --mode expert --steps 4000

The speech expert (a Kodama TTS checkpoint) is frozen in ``expert`` and ``lora`` modes: its loss
weight is 0 and it gets no gradient (the paper's implementation details); ``dense`` trains every
weight on the same behaviour loss (the full fine-tuning ablation). Each step: a batch of agent
sentences (and, with ``--command-p``, silent commands), one noise level per behaviour token
(diffusion forcing, eq. 5), the condition (speech and text) dropped with ``--cond-drop`` (0.1, for
guidance), and the MSE of the predicted v on every token that is not clean.

Noise levels of a sequence, one of three patterns (so every schedule matrix is in distribution):
independent uniform per token (diffusion forcing); a pyramid (clean up to a random token, then
rising); and one shared level (the uniform schedule). The history tokens are clean 70 % of the time
and otherwise noised like the rest (which trains the partial and masked history of guidance).
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, steps=4000, out=None, save_every=200)
    parser.add_argument("--data", type=Path, default=Path("out/mot/data"), help="built by anima.e2e.mot.training.data")
    parser.add_argument("--speech", type=Path, required=True, help="the speech expert: a Kodama TTS checkpoint folder")
    parser.add_argument("--mode", choices=("expert", "dense", "lora"), default="expert")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--cond-drop", type=float, default=0.1, help="probability of dropping speech and text (default %(default)s)")
    parser.add_argument("--command-p", type=float, default=0.25, help="share of silent-command sequences (default %(default)s)")
    parser.add_argument("--val-every", type=int, default=200)
    parser.add_argument("--group-weights", action="store_true",
                        help="weigh the loss so head/eyes/jaw, expression and body count a third each (see group_weights)")
    parser.add_argument("--stop-at", type=int, default=None,
                        help="stop at this step of the --steps schedule (resume later to go on; ablations compare equal steps)")


class Batcher:
    """Random batches of speech sentences and silent commands as model inputs (normalised behaviour)."""

    def __init__(self, items: list, commands: list, speech, mean: np.ndarray, std: np.ndarray, history: int,
                 command_p: float, seed: int, data_history: int = 10) -> None:
        if not items:
            raise ValueError("Batcher: no speech items")
        known = set(speech.config.symbols)
        self.items = [it for it in items if it.phonemes and all(p in known for p in it.phonemes)]
        self.commands = commands
        if history > data_history:
            raise ValueError(f"the model wants {history} history tokens, the data has {data_history}")
        self.speech, self.mean, self.std = speech, mean, std
        self.skip = data_history - history  # the data's history tokens the model does not use
        self.command_p = command_p if commands else 0.0
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int) -> dict[str, Any]:
        import torch

        from anima.talker.model.kodama_tts import emotion_vector, make_sequence

        cfg = self.speech.config
        seqs, speakers, emotions, tokens, silent = [], [], [], [], []
        for _ in range(batch):
            if self.rng.random() < self.command_p:
                it = self.commands[int(self.rng.integers(len(self.commands)))]
            else:
                it = self.items[int(self.rng.integers(len(self.items)))]
            ids = self.speech.phoneme_ids(it.phonemes)
            codes = torch.from_numpy(it.codes.astype(np.int64)) if not it.silent else None
            seq = make_sequence(cfg, ids, codes)
            if codes is not None:  # inputs only: the speech expert is teacher-forced, its targets unused
                seq = {k: v for k, v in seq.items() if k in ("text", "audio", "is_audio")}
            seqs.append(seq)
            speakers.append(it.speaker)
            emotions.append(emotion_vector(it.emotion).numpy())
            tokens.append((it.behaviour[self.skip:] - self.mean) / self.std)
            silent.append(it.silent)
        B, L = batch, max(s["text"].shape[0] for s in seqs)
        T = max(t.shape[0] for t in tokens)
        out = {"text": torch.zeros(B, L, dtype=torch.long), "audio": torch.full((B, L, cfg.n_codebooks), cfg.pad, dtype=torch.long),
               "is_audio": torch.zeros(B, L, dtype=torch.bool), "x": torch.zeros(B, T, tokens[0].shape[1]),
               "valid": torch.zeros(B, T, dtype=torch.bool), "boa": torch.zeros(B, dtype=torch.long),
               "n_speech": torch.zeros(B, dtype=torch.long), "silent": torch.tensor(silent),
               "speaker": torch.from_numpy(np.stack(speakers)).float(), "emotion": torch.from_numpy(np.stack(emotions)).float()}
        for b, (s, t) in enumerate(zip(seqs, tokens, strict=True)):
            n = s["text"].shape[0]
            out["text"][b, :n], out["audio"][b, :n], out["is_audio"][b, :n] = s["text"], s["audio"], s["is_audio"]
            out["n_speech"][b] = 2 + n
            out["boa"][b] = 2 + int((~s["is_audio"]).sum()) - 1
            out["x"][b, :t.shape[0]] = torch.from_numpy(t)
            out["valid"][b, :t.shape[0]] = True
        return out


def training_levels(rng: np.random.Generator, valid: np.ndarray, history: int) -> np.ndarray:
    """Per-token noise levels of a batch (B, T) in [0, 1]: the three patterns of the module docstring."""
    B, T = valid.shape
    levels = np.zeros((B, T), np.float32)
    for b in range(B):
        n = int(valid[b].sum())
        kind = rng.random()
        if kind < 0.5:
            lv = rng.random(n)
        elif kind < 0.75:  # pyramid: clean up to t0, then rising with a random slope
            t0 = int(rng.integers(history, max(history + 1, n)))
            slope = rng.uniform(0.02, 0.5)
            lv = np.clip(rng.random() * 0.5 + (np.arange(n) - t0) * slope, 0, 1)
            lv[:t0] = 0.0
        else:
            lv = np.full(n, rng.random())
        if rng.random() < 0.7:
            lv[:history] = 0.0
        levels[b, :n] = lv
    return levels


def group_weights():
    """(750,) per-dimension loss weights (mean 1) giving three groups equal shares: the face's pose (jaw,
    head, eyes: 24 numbers a token), its expression (200) and the body (526). Plain MSE leaves the pose
    3 % of the loss though it carries the nods, the looks and the lip sync."""
    import torch

    from anima.e2e.mot.behaviour import BODY_DIM, FACE_DIM, FRAMES_PER_TOKEN

    w = torch.zeros(FRAMES_PER_TOKEN * (FACE_DIM + BODY_DIM))
    pose = torch.zeros_like(w, dtype=torch.bool)
    for f in range(FRAMES_PER_TOKEN):
        pose[f * FACE_DIM + 100:(f + 1) * FACE_DIM] = True
    face = torch.arange(w.numel()) < FRAMES_PER_TOKEN * FACE_DIM
    for group in (pose, face & ~pose, ~face):
        w[group] = 1.0 / (3 * group.sum())
    return w * w.numel()


def diffusion_loss(model, batch: dict, levels, eps, cond_drop, weights=None):
    """MSE of v on the noisy tokens; ``cond_drop`` (B,) bool hides all speech from those sequences;
    ``weights`` (D,) weighs the dimensions (None = plain mean)."""
    import torch

    from anima.e2e.mot.model import add_noise, alpha_sigma

    kv, _ = model.speech_pass(batch["speaker"], batch["emotion"], batch["text"], batch["audio"], batch["is_audio"])
    T = batch["x"].shape[1]
    positions, visible = model.layout(batch["boa"], batch["n_speech"], T, batch["silent"])
    visible = torch.where(cond_drop[:, None], torch.zeros_like(visible), visible)
    z = add_noise(batch["x"], levels, eps)
    v = model.behaviour_pass(z, levels, positions, visible, batch["valid"], kv)
    a, s = alpha_sigma(levels)
    target = a[..., None] * eps - s[..., None] * batch["x"]  # v = alpha eps - sigma x
    weight = (batch["valid"] & (levels > 0)).float()  # (B, T): clean tokens are given, not predicted
    per_token = ((v - target) ** 2).mean(-1) if weights is None else ((v - target) ** 2 * weights).mean(-1)
    return (per_token * weight).sum() / weight.sum().clamp(min=1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from anima.checkpoint import read_config
    from anima.e2e.mot.behaviour import statistics
    from anima.e2e.mot.model import MixtureOfTransformers, MoTConfig, speech_digest
    from anima.e2e.mot.training.data import load_commands, load_split
    from anima.talker.model.kodama_tts import load_kodama_tts
    from anima.train import apply_overrides, distributed, train_loop

    torch.set_num_threads(args.threads)
    info = distributed.init(args.device)
    torch.manual_seed(args.seed)
    speech, _ = load_kodama_tts(args.speech)
    config = apply_overrides(MoTConfig.preset(args.config, mode=args.mode), args.set)
    model = MixtureOfTransformers(config, speech).to(info.device)
    out = Path(args.out)
    digest = speech_digest(speech)
    if (out / "config.json").is_file():
        saved = read_config(out)["config"]
        if saved.get("speech_digest") != digest and args.mode != "dense":
            raise SystemExit(f"{out} was trained against another speech expert ({saved.get('speech_digest')}, "
                             f"{args.speech} is {digest}); use a new --out")
    train_items, val_items = load_split(args.data, "train"), load_split(args.data, "val")
    data_history = int(json.loads((Path(args.data) / "SOURCE.json").read_text())["history"])
    commands = load_commands(args.data) if args.command_p > 0 else []
    val_commands = commands[-32:]
    commands = commands[:-32]
    mean, std = statistics([it.behaviour for it in train_items + commands])
    model.behaviour.mean.copy_(torch.from_numpy(mean))  # a resumed run loads the saved ones over these
    model.behaviour.std.copy_(torch.from_numpy(std))
    trainable = model.trainable()
    batcher = Batcher(train_items, commands, speech, mean, std, config.history, args.command_p, args.seed, data_history)
    val_batcher = Batcher(val_items or train_items[-16:], val_commands, speech, mean, std, config.history, args.command_p,
                          args.seed + 1, data_history)
    params = [p for p in trainable.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    rng = np.random.default_rng(args.seed + 7)
    weights = group_weights().to(info.device) if args.group_weights else None
    last_val = {"val_loss": float("nan")}

    def one_batch(b: dict) -> torch.Tensor:
        b = {k: v.to(info.device) for k, v in b.items()}
        levels = torch.from_numpy(training_levels(rng, b["valid"].cpu().numpy(), config.history)).to(info.device)
        eps = torch.randn_like(b["x"])
        drop = torch.from_numpy(rng.random(b["x"].shape[0]) < args.cond_drop).to(info.device)
        return diffusion_loss(model, b, levels, eps, drop, weights)

    def step_fn(i: int) -> dict[str, float]:
        for group in opt.param_groups:
            group["lr"] = lr_at(i, args.steps, args.lr, args.warmup)
        loss = one_batch(distributed.shard(batcher.sample(args.batch)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (i + 1) % args.val_every == 0 or i + 1 == args.steps:
            model.eval()
            with torch.no_grad():
                last_val["val_loss"] = float(np.mean([one_batch(val_batcher.sample(args.batch)).item() for _ in range(4)]))
            model.train()
        return {"loss": loss.item(), **last_val}

    cfg = {**model.config_dict(), "speech_dir": str(Path(args.speech).resolve()),
           "train": {"steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed, "data": str(args.data),
                     "cond_drop": args.cond_drop, "command_p": args.command_p, "group_weights": args.group_weights,
                     "preset": args.config,
                     "overrides": list(args.set)}}
    stop = args.steps if args.stop_at is None else min(args.stop_at, args.steps)
    state = train_loop(trainable, opt, step_fn, stop, out, cfg, save_every=args.save_every, desc=f"mot {args.mode}",
                       progress=not args.quiet, rngs=[batcher.rng, val_batcher.rng, rng])
    distributed.close()
    last = state.history[-1] if state.history else {}
    return {"step": state.step, "loss": last.get("loss"), "val_loss": last.get("val_loss"),
            "config": dataclasses.asdict(config)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    report = run(parser.parse_args(argv))
    print({k: v for k, v in report.items() if k != "config"})


if __name__ == "__main__":
    main()
