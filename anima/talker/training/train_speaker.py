"""Train the anima speaker encoder (GE2E) on the corpus voices and report verification EER.

Speakers are the corpus voices of the ``train`` split; a batch is N voices x M utterances, one
random ``segment_frames`` window of each (shorter utterances are repeated to fill it), each with its
own random gain so loudness is no voice cue. The report is measured on whole utterances:
equal error rate over all pairs and the mean cosine of same-voice and other-voice pairs, on
``heldout`` (voices never trained on: the number that matters) and on ``test`` (seen voices,
unseen sentences), written to ``--out``/report.json::

    python -m anima.talker.training.train_speaker --corpus out/talker/corpus --out out/talker/runs/speaker --config small
    python -m anima.talker.training.train_speaker --out out/talker/runs/speaker --eval-only

Resumable, metrics.jsonl, torchrun-ready like every trainer (``anima.train.train_loop``); under
torchrun each process takes N / world of the voices. Torch is imported inside the functions.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anima.talker.training.train_judge import DEFAULT_CORPUS, load_features
from anima.train.options import add_common_arguments
from anima.train.schedule import lr_at

if TYPE_CHECKING:
    import torch

    from anima.talker.data.manifest import Utterance
    from anima.talker.model.speaker_encoder import SpeakerEncoder

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("out/talker/runs/speaker")


class Ge2eBatcher:
    """N voices x M utterances x one random window of ``segment`` frames each."""

    def __init__(self, items: list[tuple[Utterance, np.ndarray]], voices: int, utterances: int, segment: int,
                 seed: int = 0, gain_db: float = 6.0) -> None:
        by_voice: dict[str, list[np.ndarray]] = {}
        for u, f in items:
            by_voice.setdefault(u.voice, []).append(f)
        self.voices = sorted(v for v, fs in by_voice.items() if len(fs) >= 2)
        if len(self.voices) < 2:
            raise ValueError(f"GE2E needs at least 2 voices with 2 utterances each; the data has {len(self.voices)}")
        self.feats = [by_voice[v] for v in self.voices]
        self.n = min(voices, len(self.voices))
        self.m, self.segment, self.gain_db = utterances, segment, gain_db
        self.rng = np.random.default_rng(seed)

    def _window(self, f: np.ndarray) -> np.ndarray:
        from anima.talker.model.features import FLOOR

        if f.shape[0] < self.segment:
            f = np.tile(f, (-(-self.segment // f.shape[0]), 1))
        s = int(self.rng.integers(0, f.shape[0] - self.segment + 1))
        x = f[s:s + self.segment].astype(np.float32)
        shift = self.rng.uniform(-self.gain_db, self.gain_db) / 20.0  # features are dB / 20
        return np.where(x > FLOOR + 1e-3, np.maximum(x + shift, FLOOR), x)

    def sample(self) -> torch.Tensor:
        """(N, M, segment, n_mels) float32"""
        import torch

        out = []
        for v in self.rng.choice(len(self.voices), size=self.n, replace=False):
            fs = self.feats[v]
            pick = self.rng.choice(len(fs), size=self.m, replace=len(fs) < self.m)
            out.append(np.stack([self._window(fs[i]) for i in pick]))
        return torch.from_numpy(np.stack(out))


def embed_features(encoder: SpeakerEncoder, feats: list[np.ndarray]) -> np.ndarray:
    """Embeddings of whole utterances' log-mels, one at a time (pooling must not see padding). # (K, dim)"""
    import torch

    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        out = [encoder(torch.from_numpy(f.astype(np.float32))[None].to(device))[0].cpu().numpy() for f in feats]
    encoder.train(was_training)
    return np.stack(out)


def evaluate_encoder(encoder: SpeakerEncoder, items: list[tuple[Utterance, np.ndarray]]) -> dict[str, Any]:
    """EER and mean cosines over every pair of utterances (same voice vs other voice)."""
    from anima.talker.model.speaker_encoder import equal_error_rate

    voices = np.array([u.voice for u, _ in items])
    if len(set(voices)) < 2:
        return {"utterances": len(items), "voices": len(set(voices))}
    emb = embed_features(encoder, [f for _, f in items])
    cos = emb @ emb.T
    i, j = np.triu_indices(len(items), k=1)
    scores, same = cos[i, j], voices[i] == voices[j]
    if not same.any():
        return {"utterances": len(items), "voices": len(set(voices))}
    return {"eer": equal_error_rate(scores, same), "cos_same": float(scores[same].mean()),
            "cos_other": float(scores[~same].mean()), "utterances": len(items), "voices": len(set(voices)),
            "trials": int(scores.size)}


def evaluate_checkpoint(encoder: SpeakerEncoder, corpus: str | Path, eval_max: int = 300, seed: int = 0) -> dict[str, Any]:
    """Verification on heldout (unseen voices) and test (seen voices), at most ``eval_max`` utterances each."""
    report: dict[str, Any] = {"model": "anima speaker encoder (GE2E)", "corpus": str(corpus)}
    for split in ("heldout", "test"):
        report[split] = evaluate_encoder(encoder, load_features(corpus, split, limit=eval_max, seed=seed))
    return report


def train_speaker(corpus: str | Path, out: str | Path, steps: int = 2000, config_name: str = "small",
                  overrides: list[str] | None = None, voices: int = 8, utterances: int = 8, lr: float = 1e-3,
                  seed: int = 0, eval_every: int = 250, save_every: int = 250, eval_max: int = 300, progress: bool = True,
                  device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train (or resume) an encoder in ``out``; returns the report (also written to ``out``/report.json)."""
    import dataclasses

    import torch

    from anima.checkpoint import read_config
    from anima.talker.model.phoneme_judge import num_params
    from anima.talker.model.speaker_encoder import CONFIGS, SpeakerEncoder, SpeakerEncoderConfig
    from anima.train import apply_overrides, distributed, train_loop

    if config_name not in CONFIGS:
        raise KeyError(f"unknown speaker encoder config {config_name!r}; valid: {', '.join(CONFIGS)}")
    torch.manual_seed(seed)
    out = Path(out)
    if (out / "config.json").is_file():  # resuming: the saved model config wins (the weights are its shape)
        config = SpeakerEncoderConfig(**read_config(out)["config"]["encoder"])
    else:
        config = apply_overrides(SpeakerEncoderConfig(**CONFIGS[config_name]), overrides)
    model = SpeakerEncoder(config).to(device)
    train_items = load_features(corpus, "train", progress=progress)
    val_items = load_features(corpus, "val", limit=96, seed=seed)
    batcher = Ge2eBatcher(train_items, voices, utterances, config.segment_frames, seed=seed)
    if batcher.n % distributed.world_size():
        raise ValueError(f"{batcher.n} voices per batch do not divide by the {distributed.world_size()} processes")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    net = distributed.wrap(model, lambda m, x: m.loss(x))
    last = {"val_eer": float("nan")}

    def step_fn(i: int) -> dict[str, float]:
        for group in opt.param_groups:
            group["lr"] = lr_at(i, steps, lr, warmup=100, floor=0.05)
        loss = net(distributed.shard(batcher.sample()).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        if val_items and ((i + 1) % eval_every == 0 or i + 1 == steps):
            last["val_eer"] = evaluate_encoder(model, val_items).get("eer", float("nan"))
        return {"loss": loss.item(), "w": model.ge2e_w.item(), "b": model.ge2e_b.item(), **last}

    cfg = {**model.checkpoint_config(),
           "train": {"steps": steps, "voices": batcher.n, "utterances": utterances, "lr": lr, "seed": seed,
                     "corpus": str(corpus), "config": config_name, "train_voices": batcher.voices}}
    logger.info("%s: %d parameters, %d training voices", config_name, num_params(model), len(batcher.voices))
    train_loop(model, opt, step_fn, steps, out, cfg, save_every=save_every, desc="speaker encoder", progress=progress,
               rngs=[batcher.rng])
    del train_items
    report: dict[str, Any] = {}
    if distributed.is_main():
        report = evaluate_checkpoint(model.cpu(), corpus, eval_max, seed)
        report["parameters"] = num_params(model)
        report["config"] = dataclasses.asdict(config)
        report["train_voices"] = batcher.voices
        (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The speaker encoder trainer's options (no torch import)."""
    add_common_arguments(parser, steps=2000, corpus=DEFAULT_CORPUS, out=DEFAULT_OUT)
    parser.add_argument("--voices", type=int, default=8, help="GE2E N: voices per batch (all, if fewer)")
    parser.add_argument("--utterances", type=int, default=8, help="GE2E M: utterances per voice per batch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-max", type=int, default=300, help="utterances per split in the final report")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate the checkpoint in --out")


def run(args: argparse.Namespace) -> int:
    """Train (or only evaluate) the encoder as ``args`` say; prints the report as JSON."""
    import torch

    from anima.talker.model.speaker_encoder import SpeakerEncoder
    from anima.train import distributed

    torch.set_num_threads(max(1, args.threads))
    if args.eval_only:
        report = evaluate_checkpoint(SpeakerEncoder.from_pretrained(args.out), args.corpus, args.eval_max, args.seed)
        print(json.dumps(report, indent=2))
        return 0
    info = distributed.init(args.device)
    try:
        t0 = time.time()
        report = train_speaker(args.corpus, args.out, args.steps, args.config, args.set, args.voices, args.utterances,
                               args.lr, args.seed, eval_max=args.eval_max, save_every=args.save_every, progress=not args.quiet, device=info.device)
        if info.is_main:
            print(json.dumps(report, indent=2))
            print(f"speaker encoder: done in {time.time() - t0:.0f} s -> {args.out}")
    finally:
        distributed.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the anima speaker encoder (GE2E) on the corpus voices.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main())
