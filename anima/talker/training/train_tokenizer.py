"""Train the speech tokenizer on a talker corpus (resumable, progress bar, torchrun-ready).

    python -m anima.talker.training.train_tokenizer --corpus out/talker/corpus \\
        --out out/talker/runs/tokenizer_small --config small --steps 4000
    python -m anima.talker.training.train_tokenizer ... --no-semantic      # ablation: 8 acoustic codebooks
    python -m anima.talker.training.train_tokenizer ... --gan-start 2000   # LS-GAN + feature matching from step 2000

The whole train split is loaded into memory as int16 once; each step takes random 1-2 s crops
(the same length within a batch, whole 80 ms tokens, starting on a 50 Hz frame). YIN F0 targets
are computed once per utterance and cached in ``--out``/f0_cache.npz. ``--set key=value`` changes
the training config (``TrainConfig``): loss weights directly (``--set w_pitch=0.5``), the model
through ``model.`` (``--set model.decoder_dim=128``). Losses (paper eq. 2): multi-resolution mel,
pitch, RVQ commitment + codebook, semantic (phoneme teacher), and, from ``--gan-start`` on,
LS-GAN + feature matching against multi-period and multi-scale STFT discriminators; the
discriminators train in the same step on the same batch (one backward: their loss only reaches
them, the generator's adversarial terms only reach the generator). The checkpoint holds the
tokenizer (``tokenizer.*``) and the discriminators; ``SpeechTokenizer.from_pretrained`` reads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from anima.checkpoint import read_config
from anima.talker.data.manifest import SAMPLE_RATE, Utterance, read_manifest, read_phonemes
from anima.talker.model.discriminators import Discriminators
from anima.talker.model.tokenizer import CONFIGS, SpeechTokenizer, TokenizerConfig, load_tokenizer
from anima.talker.training.losses import (
    MelLoss,
    PhonemeTeacher,
    SemanticTeacher,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
    semantic_loss,
)
from anima.talker.training.pitch import HOP, pitch_loss, voiced_mask, yin_f0
from anima.train import apply_overrides, distributed, train_loop
from anima.train.options import add_common_arguments
from anima.train.schedule import lr_at

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    w_mel: float = 1.0
    w_f0: float = 1.0  # the harmonic branch's F0 (squared octaves, voiced frames) and voicing (BCE) against YIN
    w_pitch: float = 0.5  # on squared octaves
    w_commitment: float = 0.25
    w_codebook: float = 1.0
    w_semantic: float = 0.2
    w_adv: float = 0.1
    w_fm: float = 0.2
    disc_channels: int = 8
    disc_seconds: float = 0.5  # the critics see one random window of each crop (the same for real and generated): CPU
    min_seconds: float = 1.0  # crop length range
    max_seconds: float = 2.0


# ---------------------------------------------------------------------------------------------
# Data


class Clips:
    """One split of a corpus in memory (int16), with cached YIN F0 and voicing at 50 Hz."""

    def __init__(self, corpus: str | Path, split: str, f0_cache: Path | None = None, progress: bool = True) -> None:
        import soundfile as sf

        self.utts: list[Utterance] = read_manifest(corpus, split)
        if not self.utts:
            raise ValueError(f"{corpus}: the {split!r} split is empty")
        self.audio: list[np.ndarray] = []
        for u in tqdm(self.utts, desc=f"loading {split}", disable=not progress, mininterval=1.0):
            samples, rate = sf.read(Path(corpus) / u.wav, dtype="int16", always_2d=False)
            if rate != SAMPLE_RATE:
                raise ValueError(f"{u.wav}: {rate} Hz, the tokenizer trains on {SAMPLE_RATE} Hz")
            self.audio.append(samples)
        self.f0, self.voiced = self._pitch(f0_cache, progress)

    def _pitch(self, cache: Path | None, progress: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
        stored: dict[str, np.ndarray] = {}
        if cache is not None and cache.is_file():
            with np.load(cache) as z:
                stored = {k: z[k] for k in z.files}
        f0s, voiced, new = [], [], 0
        for u, a in tqdm(list(zip(self.utts, self.audio, strict=True)), desc="F0 (YIN)", disable=not progress, mininterval=1.0):
            f0 = stored.get(u.id)
            if f0 is None or len(f0) != len(a) // HOP:
                f0 = yin_f0(a.astype(np.float32) / 32768.0)
                stored[u.id], new = f0, new + 1
            f0s.append(f0)
            voiced.append(voiced_mask(a.astype(np.float32) / 32768.0, f0))
        if cache is not None and new and distributed.is_main():
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.stem + ".tmp.npz")
            np.savez(tmp, **stored)
            tmp.replace(cache)
        return f0s, voiced

    @property
    def seconds(self) -> float:
        return sum(len(a) for a in self.audio) / SAMPLE_RATE


class Sampler:
    """Random crops: whole tokens, starting on a 50 Hz frame, zero-padded past an utterance's end."""

    def __init__(self, clips: Clips, token_samples: int, min_seconds: float, max_seconds: float, seed: int) -> None:
        self.clips, self.token = clips, token_samples
        self.min_tokens = max(1, round(min_seconds * SAMPLE_RATE / token_samples))
        self.max_tokens = max(self.min_tokens, round(max_seconds * SAMPLE_RATE / token_samples))
        lengths = np.array([len(a) for a in clips.audio], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int, tokens: int | None = None) -> dict[str, Any]:
        tokens = tokens or int(self.rng.integers(self.min_tokens, self.max_tokens + 1))
        n, frames = tokens * self.token, tokens * self.token // HOP
        wav = np.zeros((batch, n), np.float32)
        f0 = np.zeros((batch, frames), np.float32)
        voiced = np.zeros((batch, frames), bool)
        utts, starts = [], []
        for b, i in enumerate(self.rng.choice(len(self.clips.audio), size=batch, p=self.p)):
            a = self.clips.audio[i]
            start = int(self.rng.integers(0, max(1, (len(a) - n) // HOP + 1)))  # in 50 Hz frames
            seg = a[start * HOP: start * HOP + n]
            wav[b, : len(seg)] = seg / 32768.0
            fseg, vseg = self.clips.f0[i][start: start + frames], self.clips.voiced[i][start: start + frames]
            f0[b, : len(fseg)], voiced[b, : len(vseg)] = fseg, vseg
            utts.append(self.clips.utts[i])
            starts.append(start)
        return {"wav": torch.from_numpy(wav), "f0": torch.from_numpy(f0), "voiced": torch.from_numpy(voiced),
                "utts": utts, "starts": starts}


# ---------------------------------------------------------------------------------------------
# Model + losses


class TokenizerTrainer(nn.Module):
    """The tokenizer with its discriminators (when the GAN is on) and loss modules: what gets checkpointed."""

    def __init__(self, config: TrainConfig, gan: bool) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = SpeechTokenizer(config.model)
        self.disc = Discriminators(channels=config.disc_channels) if gan else None
        self.mel = MelLoss(config.model.sample_rate)

    def losses(self, batch: dict[str, torch.Tensor], gan_on: bool) -> tuple[torch.Tensor, dict[str, float]]:
        """The total loss (generator + discriminator terms) of one batch and its parts for the log."""
        c = self.config
        wav = batch["wav"]  # (B, N)
        out = self.tokenizer(wav)
        audio = out["audio"]  # (B, N)
        mel = self.mel(audio, wav)
        pitch = pitch_loss(audio, wav, batch["f0"], batch["voiced"])
        total = c.w_mel * mel + c.w_pitch * pitch + c.w_commitment * out["commitment"] + c.w_codebook * out["codebook"]
        stats = {"mel": mel.item(), "pitch": pitch.item(), "commitment": out["commitment"].item(),
                 "codebook": out["codebook"].item()}
        if "f0_pred" in out:  # the harmonic branch: its F0 and voicing learn from the YIN track directly
            voiced = batch["voiced"].bool()  # (B, T50)
            f0_err = (torch.log2(out["f0_pred"]) - torch.log2(batch["f0"].clamp(min=1.0))).pow(2)
            f0_loss = f0_err[voiced].mean() if voiced.any() else f0_err.new_zeros(())
            voicing = F.binary_cross_entropy_with_logits(out["voicing_logit"], voiced.float())
            total = total + c.w_f0 * (f0_loss + voicing)
            stats.update(f0=f0_loss.item(), voicing=voicing.item())
        if "semantic_pred" in out and "semantic_target" in batch:
            sem, acc = semantic_loss(out["semantic_pred"], batch["semantic_target"], c.model.teacher_kind)
            total = total + c.w_semantic * sem
            stats.update(semantic=sem.item(), semantic_acc=acc)
        if gan_on and self.disc is not None:
            n = wav.shape[-1]
            w = min(n, int(c.disc_seconds * c.model.sample_rate))
            start = int(torch.randint(0, n - w + 1, ()))
            wav_w, audio_w = wav[:, start:start + w], audio[:, start:start + w]  # (B, w)
            real = self.disc(wav_w)
            d_loss = discriminator_loss(real, self.disc(audio_w.detach()))
            frozen = {k: v.detach() for k, v in self.disc.state_dict(keep_vars=True).items()}
            fake = torch.func.functional_call(self.disc, frozen, (audio_w,))  # gradients reach the generator only
            adv, fm = generator_adv_loss(fake), feature_matching_loss(real, fake)
            total = total + d_loss + c.w_adv * adv + c.w_fm * fm
            stats.update(disc=d_loss.item(), adv=adv.item(), fm=fm.item())
        stats["loss"] = total.item()
        return total, stats


def codebook_usage(model: SpeechTokenizer, sampler: Sampler, batches: int = 4, batch: int = 8) -> float:
    """Mean over codebooks of the share of the entries used on a few random batches (rough health check)."""
    with torch.no_grad():
        codes = torch.cat([model.encode(sampler.sample(batch)["wav"]) for _ in range(batches)], -1)
    return float(np.mean([codes[:, q].unique().numel() / model.codebook_size for q in range(codes.shape[1])]))


# ---------------------------------------------------------------------------------------------
# Entry points


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, steps=4000, corpus=Path("out/talker/corpus"), configs=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, default=8, help="global batch, split evenly over torchrun's processes")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200, help="linear learning-rate warm-up steps (then cosine to 10%%)")
    parser.add_argument("--gan-start", type=int, default=0, help="step at which the GAN losses start (0 = never)")
    parser.add_argument("--no-semantic", action="store_true", help="ablation: no semantic branch, 8 acoustic codebooks")
    parser.add_argument("--init", type=Path, default=None,
                        help="start a new run from this checkpoint's weights (step 0, new optimizer)")
    parser.add_argument("--freeze-encoder", action="store_true",
                        help="train the decoder (and phoneme head) only: every code stays what --init's encoder gives")
    parser.add_argument("--val-every", type=int, default=250)


def build_config(args: argparse.Namespace, inventory: list[str]) -> TrainConfig:
    model = CONFIGS[args.config]
    if args.no_semantic:
        model = dataclasses.replace(model, semantic=False)
    config = apply_overrides(TrainConfig(model=model), args.set)
    teacher_dim = len(inventory) if config.model.semantic else 0
    return dataclasses.replace(config, model=dataclasses.replace(config.model, teacher_dim=teacher_dim).validate())


def run(args: argparse.Namespace) -> dict[str, float]:
    """Train (or resume) one tokenizer; returns the last step's losses plus validation numbers."""
    torch.set_num_threads(args.threads)
    info = distributed.init(args.device)
    device = info.device
    torch.manual_seed(args.seed)
    progress = not args.quiet
    inventory = read_phonemes(args.corpus)
    config = build_config(args, inventory)
    train = Clips(args.corpus, "train", args.out / "f0_cache.npz", progress)
    val = Clips(args.corpus, "val", args.out / "f0_cache_val.npz", progress) if read_manifest(args.corpus, "val") else None
    logger.info("train split: %d utterances, %.1f min", len(train.utts), train.seconds / 60)
    teacher: SemanticTeacher | None = PhonemeTeacher(inventory) if config.model.semantic else None
    resuming = (args.out / "config.json").is_file()
    before = args.out if resuming else args.init  # the weights this run starts from, if any
    if before is not None:
        old_dim = int(read_config(before)["config"]["tokenizer"].get("teacher_dim", 0))
        if old_dim != config.model.teacher_dim:  # the corpus grew a phoneme since they were trained: ids moved
            logger.warning("%s: %d phoneme classes, the corpus now has %d; the phoneme head is kept as it is, "
                           "not trained", before, old_dim, config.model.teacher_dim)
            config = dataclasses.replace(config, model=dataclasses.replace(config.model, teacher_dim=old_dim))
            teacher = None
    sampler = Sampler(train, config.model.token_samples, config.min_seconds, config.max_seconds, args.seed)
    val_batch = (Sampler(val, config.model.token_samples, config.min_seconds, config.max_seconds, args.seed + 1)
                 .sample(args.batch, tokens=sampler.max_tokens) if val is not None else None)

    trainer = TokenizerTrainer(config, gan=args.gan_start > 0)
    if args.init is not None and not resuming:
        missing, unexpected = trainer.tokenizer.load_state_dict(load_tokenizer(args.init).state_dict(), strict=False)
        new_parts = [k for k in missing if not k.startswith("harm_head.")]  # only a new harmonic branch may start fresh
        if new_parts or unexpected:
            raise ValueError(f"--init {args.init}: its weights do not fit this config (missing {new_parts}, "
                             f"unexpected {list(unexpected)})")
    if args.freeze_encoder:
        if args.init is None:
            raise ValueError("--freeze-encoder needs --init (the encoder whose codes to keep)")
        for name, p in trainer.tokenizer.named_parameters():
            p.requires_grad_(trainer.tokenizer.is_decoder_parameter(name))
        for module in trainer.tokenizer.modules():
            if hasattr(module, "dead_after"):
                module.dead_after = 0.0  # no dead-code restarts: the codebooks are frozen
    trainer = trainer.to(device)
    opt = torch.optim.AdamW(trainer.parameters(), lr=args.lr, betas=(0.8, 0.99), weight_decay=0.0)
    net = distributed.wrap(trainer, lambda m, b, g: m.losses(b, g), find_unused_parameters=args.gan_start > 0)
    last_val: dict[str, float] = {}

    def to_device(b: dict[str, Any]) -> dict[str, Any]:
        if teacher is not None:
            frames = b["wav"].shape[-1] // HOP
            b["semantic_target"] = teacher.targets(b["utts"], b["starts"], frames)
        return {k: v.to(device) for k, v in b.items() if torch.is_tensor(v)}

    def step_fn(i: int) -> dict[str, float]:
        for group in opt.param_groups:
            group["lr"] = lr_at(i, args.steps, args.lr, args.warmup)
        batch = distributed.shard(to_device(sampler.sample(args.batch)))
        gan_on = 0 < args.gan_start <= i
        loss, stats = net(batch, gan_on)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in trainer.parameters() if p.requires_grad], 10.0)
        opt.step()
        if val_batch is not None and ((i + 1) % args.val_every == 0 or i + 1 == args.steps):
            trainer.eval()
            with torch.no_grad():
                _, vs = trainer.losses(to_device(dict(val_batch)), False)
            trainer.train()
            last_val.clear()
            last_val.update({f"val_{k}": v for k, v in vs.items() if k in ("mel", "pitch", "f0", "voicing", "semantic_acc")})
        return {**stats, **last_val}

    cfg = {"tokenizer": dataclasses.asdict(config.model), "train": {
        **{k: v for k, v in dataclasses.asdict(config).items() if k != "model"},
        "init": str(args.init) if args.init else None, "freeze_encoder": args.freeze_encoder,
        "steps": args.steps, "batch": args.batch, "lr": args.lr, "warmup": args.warmup, "gan_start": args.gan_start, "seed": args.seed,
        "corpus": str(args.corpus), "config": args.config}}
    state = train_loop(trainer, opt, step_fn, args.steps, args.out, cfg, save_every=args.save_every,
                       desc="tokenizer", progress=progress, rngs=[sampler.rng])
    result = dict(state.history[-1]) if state.history else {}
    result["codebook_usage"] = codebook_usage(trainer.tokenizer.cpu().eval(), sampler)
    if distributed.is_main():
        logger.info("tokenizer: %s", result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(run(args))
    finally:
        distributed.close()


if __name__ == "__main__":
    main()
