"""Train the anima phoneme judge (CTC) on the speech corpus and report its phoneme error rate.

Training reads the ``train`` split (voices of training, sentences of training), in random crops of
``--crop-s`` seconds whose targets are the corpus phonemes whose centre falls inside the crop
(silence left out). Augmentation, kept simple: random gain, a random warp of the mel axis (a cheap
vocal-tract-length perturbation, for unseen voices) and SpecAugment-style time and frequency masks.
The report is the PER of greedy decoding on whole utterances of ``val``/``test`` (seen voices,
unseen sentences) and ``heldout`` (voices never trained on), written to ``--out``/report.json::

    python -m anima.talker.training.train_judge --corpus out/talker/corpus --out out/talker/runs/judge --config small
    python -m anima.talker.training.train_judge --out out/talker/runs/judge --eval-only

Resumable (``anima.train.train_loop``: rerun the same command), metrics in ``--out``/metrics.jsonl,
data-parallel under ``torchrun`` (``--batch`` is the global batch). Torch is imported inside the
functions so ``add_arguments`` can hang this on a CLI without loading it.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anima.train.options import add_common_arguments
from anima.train.schedule import lr_at

if TYPE_CHECKING:
    import torch

    from anima.talker.data.manifest import Utterance
    from anima.talker.model.phoneme_judge import PhonemeJudge

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = Path("out/talker/corpus")
DEFAULT_OUT = Path("out/talker/runs/judge")
FRAME_RATE = 100  # feature frames per second (anima.talker.model.features)


def load_features(corpus: str | Path, split: str, limit: int | None = None, seed: int = 0,
                  progress: bool = False) -> list[tuple[Utterance, np.ndarray]]:
    """(utterance, log-mel (T, 80) float16) of a split; ``limit`` keeps a seeded random subset."""
    from tqdm import tqdm

    from anima.talker.data.manifest import load_wav, read_manifest
    from anima.talker.model.features import judge_features

    utts = read_manifest(corpus, split)
    if limit is not None and len(utts) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(utts), size=limit, replace=False))
        utts = [utts[i] for i in keep]
    return [(u, judge_features(load_wav(corpus, u)).astype(np.float16))
            for u in tqdm(utts, desc=f"features {split}", disable=not progress, mininterval=1.0)]


def corpus_inventory(corpus: str | Path) -> tuple[str, ...]:
    """The corpus ``phonemes.json``; for a corpus still being built (no file yet), the same list made
    from the manifest so far (silence, then every symbol sorted, as the corpus builder writes it)."""
    from anima.talker.data.manifest import PHONEMES, SILENCE, read_manifest, read_phonemes

    if (Path(corpus) / PHONEMES).is_file():
        return tuple(read_phonemes(corpus))
    symbols = {p[0] for u in read_manifest(corpus) for p in u.phonemes} - {SILENCE}
    logger.warning("%s has no %s yet (still being built?): using the %d symbols of its manifest so far",
                   corpus, PHONEMES, len(symbols) + 1)
    return (SILENCE, *sorted(symbols))


def reference(utt: Utterance) -> list[str]:
    """The utterance's phoneme symbols, silence left out: what the judge should hear."""
    from anima.talker.model.phoneme_judge import is_silence

    return [s for s, _, _ in utt.phonemes if not is_silence(s)]


def augment(x: np.ndarray, rng: np.random.Generator, gain_db: float = 6.0, warp: float = 0.1,
            freq_masks: int = 2, freq_width: int = 10, time_masks: int = 2, time_width: int = 15) -> np.ndarray:
    """Random gain, mel-axis warp and SpecAugment masks on log-mel (T, F) float32 (a new array)."""
    from anima.talker.model.features import FLOOR

    T, F = x.shape
    if gain_db:
        shift = rng.uniform(-gain_db, gain_db) / 20.0  # features are dB / 20
        x = np.where(x > FLOOR + 1e-3, np.maximum(x + shift, FLOOR), x)  # digital silence stays silent
    if warp:
        pos = np.clip(np.arange(F) / rng.uniform(1 - warp, 1 + warp), 0, F - 1)  # band j reads band j / alpha
        lo = np.minimum(pos.astype(np.int64), F - 2)
        frac = (pos - lo).astype(np.float32)
        x = x[:, lo] * (1 - frac) + x[:, lo + 1] * frac
    x = np.array(x, dtype=np.float32)
    fill = float(x.mean())
    for _ in range(freq_masks):
        w = int(rng.integers(0, freq_width + 1))
        f0 = int(rng.integers(0, max(1, F - w)))
        x[:, f0:f0 + w] = fill
    for _ in range(time_masks):
        w = int(rng.integers(0, min(time_width, T // 5) + 1))
        t0 = int(rng.integers(0, max(1, T - w)))
        x[t0:t0 + w] = fill
    return x


class CtcBatcher:
    """Random crops of training utterances with the phoneme targets whose centre lies inside."""

    def __init__(self, items: list[tuple[Utterance, np.ndarray]], inventory: list[str] | tuple[str, ...],
                 crop_frames: int, seed: int = 0, augment: bool = True) -> None:
        from anima.talker.model.phoneme_judge import is_silence

        index = {s: i for i, s in enumerate(inventory)}
        self.feats, self.ids, self.centres = [], [], []
        unknown: set[str] = set()
        for u, f in items:
            keep = [(index[s], (a + b) / 2 * FRAME_RATE) for s, a, b in u.phonemes if not is_silence(s) and s in index]
            unknown.update(s for s, _, _ in u.phonemes if s not in index)
            if not keep:
                continue
            self.feats.append(f)
            self.ids.append(np.array([k for k, _ in keep], dtype=np.int64))
            self.centres.append(np.array([c for _, c in keep], dtype=np.float64))
        if not self.feats:
            raise ValueError("no training utterance has phonemes of the inventory")
        if unknown:
            logger.warning("phoneme symbols not in the inventory are left out of the targets: %s", sorted(unknown))
        lengths = np.array([f.shape[0] for f in self.feats], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.crop = crop_frames
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        """feats (B, T, F), lengths (B,), targets (B, S) zero-padded, target_lengths (B,)."""
        import torch

        from anima.talker.model.features import FLOOR

        xs, tgts = [], []
        for i in self.rng.choice(len(self.feats), size=batch, p=self.p):
            f = self.feats[i]
            T = f.shape[0]
            s = int(self.rng.integers(0, T - self.crop + 1)) if T > self.crop else 0
            e = min(T, s + self.crop)
            inside = (self.centres[i] >= s) & (self.centres[i] < e)
            x = f[s:e].astype(np.float32)
            xs.append(augment(x, self.rng) if self.augment else x)
            tgts.append(self.ids[i][inside])
        lengths = [x.shape[0] for x in xs]
        feats = np.full((batch, max(lengths), xs[0].shape[1]), FLOOR, dtype=np.float32)
        targets = np.zeros((batch, max(1, max(len(t) for t in tgts))), dtype=np.int64)
        for b, (x, t) in enumerate(zip(xs, tgts, strict=True)):
            feats[b, :x.shape[0]] = x
            targets[b, :len(t)] = t
        return {"feats": torch.from_numpy(feats), "lengths": torch.tensor(lengths),
                "targets": torch.from_numpy(targets), "target_lengths": torch.tensor([len(t) for t in tgts])}


def recognize_features(judge: PhonemeJudge, feats: list[np.ndarray], batch: int = 16) -> list[list[str]]:
    """Greedy transcripts of whole utterances' log-mels, batched by length (eval mode, no grad)."""
    import torch

    from anima.talker.model.features import FLOOR

    device = next(judge.parameters()).device
    out: list[list[str] | None] = [None] * len(feats)
    order = np.argsort([f.shape[0] for f in feats])
    was_training = judge.training
    judge.eval()
    with torch.no_grad():
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            T = max(feats[i].shape[0] for i in idx)
            x = np.full((len(idx), T, feats[idx[0]].shape[1]), FLOOR, dtype=np.float32)
            for b, i in enumerate(idx):
                x[b, :feats[i].shape[0]] = feats[i]
            lengths = torch.tensor([feats[i].shape[0] for i in idx], device=device)
            logp, out_len = judge(torch.from_numpy(x).to(device), lengths)
            for i, hyp in zip(idx, judge.decode(logp, out_len), strict=True):
                out[i] = hyp
    judge.train(was_training)
    return [h if h is not None else [] for h in out]


def evaluate_judge(judge: PhonemeJudge, items: list[tuple[Utterance, np.ndarray]]) -> dict[str, Any]:
    """PER over whole utterances, overall and per voice."""
    from anima.talker.training.speech_metrics import edit_distance

    items = [(u, f) for u, f in items if reference(u)]
    if not items:
        return {"utterances": 0}
    hyps = recognize_features(judge, [f for _, f in items])
    edits: dict[str, list[int]] = {}
    for (u, _), h in zip(items, hyps, strict=True):
        ref = reference(u)
        e = edits.setdefault(u.voice, [0, 0])
        e[0] += edit_distance(ref, h)
        e[1] += len(ref)
    total_edits, total_ref = sum(e[0] for e in edits.values()), sum(e[1] for e in edits.values())
    return {"per": total_edits / total_ref, "utterances": len(items), "phonemes": total_ref,
            "per_by_voice": {v: round(e[0] / e[1], 4) for v, e in sorted(edits.items())}}


def train_judge(corpus: str | Path, out: str | Path, steps: int = 3000, config_name: str = "small",
                overrides: list[str] | None = None, batch: int = 12, lr: float = 1.5e-3, crop_s: float = 3.0,
                seed: int = 0, eval_every: int = 250, save_every: int = 250, eval_max: int = 200, progress: bool = True,
                device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train (or resume) a judge in ``out``; returns the PER report (also written to ``out``/report.json)."""
    import dataclasses

    import torch

    from anima.checkpoint import read_config
    from anima.talker.model.phoneme_judge import CONFIGS, PhonemeJudge, PhonemeJudgeConfig, num_params
    from anima.train import apply_overrides, distributed, train_loop

    if config_name not in CONFIGS:
        raise KeyError(f"unknown judge config {config_name!r}; valid: {', '.join(CONFIGS)}")
    torch.manual_seed(seed)
    out = Path(out)
    if (out / "config.json").is_file():  # resuming: the saved model config wins (the weights are its shape)
        saved = read_config(out)["config"]["judge"]
        config = PhonemeJudgeConfig(**{**saved, "inventory": tuple(saved["inventory"])})
        logger.info("resuming %s: model config from the checkpoint", out)
    else:
        config = apply_overrides(PhonemeJudgeConfig(inventory=corpus_inventory(corpus), **CONFIGS[config_name]),
                                 overrides)
    model = PhonemeJudge(config).to(device)
    train_items = load_features(corpus, "train", progress=progress)
    val_items = load_features(corpus, "val", limit=48, seed=seed)
    batcher = CtcBatcher(train_items, config.inventory, int(crop_s * FRAME_RATE), seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    net = distributed.wrap(model, lambda m, b: m.loss(b["feats"], b["lengths"], b["targets"], b["target_lengths"]))
    last = {"val_per": float("nan")}

    def step_fn(i: int) -> dict[str, float]:
        for group in opt.param_groups:
            group["lr"] = lr_at(i, steps, lr, warmup=min(300, max(1, steps // 10)), floor=0.05)
        b = {k: v.to(device) for k, v in distributed.shard(batcher.sample(batch)).items()}
        loss = net(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if val_items and ((i + 1) % eval_every == 0 or i + 1 == steps):
            last["val_per"] = evaluate_judge(model, val_items).get("per", float("nan"))
        return {"loss": loss.item(), **last}

    cfg = {**model.checkpoint_config(),
           "train": {"steps": steps, "batch": batch, "lr": lr, "crop_s": crop_s, "seed": seed, "corpus": str(corpus),
                     "config": config_name, "train_utterances": len(train_items),
                     "train_hours": round(sum(u.duration_s for u, _ in train_items) / 3600, 3)}}
    logger.info("%s: %d parameters, %d training utterances", config_name, num_params(model), len(train_items))
    train_loop(model, opt, step_fn, steps, out, cfg, save_every=save_every, desc="phoneme judge", progress=progress,
               rngs=[batcher.rng])
    del train_items
    report: dict[str, Any] = {}
    if distributed.is_main():
        report = evaluate_checkpoint(model.cpu(), corpus, eval_max, seed)
        report["parameters"] = num_params(model)
        report["config"] = dataclasses.asdict(config) | {"inventory": len(config.inventory)}
        (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def evaluate_checkpoint(judge: PhonemeJudge, corpus: str | Path, eval_max: int = 200, seed: int = 0) -> dict[str, Any]:
    """PER on val, test (seen voices) and heldout (unseen voices), at most ``eval_max`` utterances each."""
    report: dict[str, Any] = {"model": "anima phoneme judge", "corpus": str(corpus)}
    for split in ("val", "test", "heldout"):
        items = load_features(corpus, split, limit=eval_max, seed=seed)
        report[split] = evaluate_judge(judge, items)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The judge trainer's options (no torch import)."""
    add_common_arguments(parser, steps=3000, corpus=DEFAULT_CORPUS, out=DEFAULT_OUT)
    parser.add_argument("--batch", type=int, default=12, help="global batch of crops, split over torchrun's processes")
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--crop-s", type=float, default=3.0, help="training crop length, seconds")
    parser.add_argument("--eval-max", type=int, default=200, help="utterances per split in the final report")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate the checkpoint in --out")


def run(args: argparse.Namespace) -> int:
    """Train (or only evaluate) the judge as ``args`` say; prints the report as JSON."""
    import torch

    from anima.talker.model.phoneme_judge import PhonemeJudge
    from anima.train import distributed

    torch.set_num_threads(max(1, args.threads))
    if args.eval_only:
        report = evaluate_checkpoint(PhonemeJudge.from_pretrained(args.out), args.corpus, args.eval_max, args.seed)
        print(json.dumps(report, indent=2))
        return 0
    info = distributed.init(args.device)
    try:
        if args.batch % info.world_size:
            raise ValueError(f"--batch {args.batch} does not divide by the {info.world_size} processes")
        t0 = time.time()
        report = train_judge(args.corpus, args.out, args.steps, args.config, args.set, args.batch, args.lr, args.crop_s,
                             args.seed, eval_max=args.eval_max, save_every=args.save_every, progress=not args.quiet, device=info.device)
        if info.is_main:
            print(json.dumps(report, indent=2))
            print(f"phoneme judge: done in {time.time() - t0:.0f} s -> {args.out}")
    finally:
        distributed.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the anima phoneme judge (CTC) on the speech corpus.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main())
