"""Train the Kodama TTS language model on a tokenized speech corpus (resumable, torchrun-ready)::

    python -m anima.talker.training.train_tts --corpus out/talker/corpus --out out/talker/tts --config small --steps 20000

The corpus needs ``tokens/ID.npy`` per utterance (the tokenizer's codes) and may have
``speakers/ID.npy`` (speaker vectors). ``--set key=value`` overrides a ``KodamaTTSConfig`` field
(``--set delay=moshi --set n_layer=4``). Progress, resume and ``metrics.jsonl`` come from
``anima.train.loop``; under ``torchrun`` ``--batch`` is the global batch, split over the processes.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from anima.train.options import add_common_arguments
from anima.train.schedule import lr_at

DEFAULT_CORPUS = Path("out/talker/corpus")
DEFAULT_OUT = Path("out/talker/tts")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, steps=20000, corpus=DEFAULT_CORPUS, out=DEFAULT_OUT, save_every=500)
    parser.add_argument("--batch", type=int, default=16, help="global batch (default %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=500, help="linear warm-up steps (default %(default)s)")
    parser.add_argument("--prompt-p", type=float, default=0.5, help="probability of a same-voice prompt (default %(default)s)")
    parser.add_argument("--speaker-drop", type=float, default=0.1, help="probability of a zeroed speaker vector (default %(default)s)")
    parser.add_argument("--align-weight", type=float, default=1.0,
                        help="weight of the guided-attention loss on config.align_layers (default %(default)s; 0 = off)")
    parser.add_argument("--val-every", type=int, default=500, help="steps between validation losses (default %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many utterances per split")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) and return the final train and validation losses."""
    import torch

    from anima.checkpoint import read_config
    from anima.talker.data.manifest import read_manifest, read_phonemes
    from anima.talker.model.kodama_tts import KodamaTTS, KodamaTTSConfig
    from anima.talker.training.tts_data import TTSBatcher, load_items
    from anima.train import apply_overrides, distributed, train_loop

    torch.set_num_threads(args.threads)
    info = distributed.init(args.device)
    torch.manual_seed(args.seed)
    config = KodamaTTSConfig.preset(args.config, symbols=tuple(read_phonemes(args.corpus)))
    config = apply_overrides(config, args.set)
    out = Path(args.out)
    if (out / "config.json").is_file():  # resuming: the saved model config wins, overrides must agree
        saved = read_config(out)["config"].get("model", {})
        symbols = tuple(saved.get("symbols", ()))
        if saved and symbols != config.symbols:  # a grown corpus: the model keeps its inventory (ids are weights)
            new = sorted(set(config.symbols) - set(symbols))
            print(f"{out}: the model keeps its {len(symbols)} phonemes; utterances with phonemes it lacks "
                  f"({', '.join(new) or 'none'}) are skipped")
            config = apply_overrides(KodamaTTSConfig.preset(args.config, symbols=symbols), args.set)
    model = KodamaTTS(config).to(info.device)
    train_items = load_items(args.corpus, "train", config, args.limit)
    has_val = any(True for _ in read_manifest(args.corpus, "val"))
    val_items = load_items(args.corpus, "val", config, args.limit) if has_val else []
    batcher = TTSBatcher(train_items, config, args.prompt_p, args.speaker_drop, seed=args.seed)
    val_batcher = TTSBatcher(val_items, config, args.prompt_p, 0.0, seed=args.seed + 1) if val_items else None
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    net = distributed.wrap(model, lambda m, b: m.loss(b, args.align_weight))
    last_val = {"val_loss": float("nan")}

    def step_fn(i: int) -> dict[str, float]:
        for group in opt.param_groups:
            group["lr"] = lr_at(i, args.steps, args.lr, args.warmup)
        batch = {k: v.to(info.device) for k, v in distributed.shard(batcher.sample(args.batch)).items()}
        loss, stats = net(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if val_batcher is not None and ((i + 1) % args.val_every == 0 or i + 1 == args.steps):
            model.eval()
            with torch.no_grad():
                vb = {k: v.to(info.device) for k, v in val_batcher.sample(args.batch).items()}
                _, vstats = model.loss(vb, args.align_weight)
                last_val.update({f"val_{k}": v for k, v in vstats.items()})
            model.train()
        return {**stats, **last_val}

    cfg = {**model.config_dict(), "train": {"steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                                            "corpus": str(args.corpus), "prompt_p": args.prompt_p,
                                            "align_weight": args.align_weight,
                                            "preset": args.config, "overrides": list(args.set)}}
    rngs = [batcher.rng] + ([val_batcher.rng] if val_batcher is not None else [])
    state = train_loop(model, opt, step_fn, args.steps, out, cfg, save_every=args.save_every, desc="kodama tts",
                       progress=not args.quiet, rngs=rngs)
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
