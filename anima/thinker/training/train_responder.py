"""Train the generator (``anima.thinker.model.responder_lm``) to answer as the character from retrieved facts.

    python -m anima.thinker.training.train_responder --out out/thinker/responder --config small --steps 3000
    torchrun --nproc-per-node 4 -m anima.thinker.training.train_responder --out ... --device cuda

Data (made once into ``--out``/data.jsonl, reused on resume): self-play scenarios
(``scenarios.generate_scenarios``: timeline-cycled questions over the world graph with random tone
and intent), each with its preference pair; the prompt holds the scenario's source fact, in the
character's own voice, among up to three facts the gated retrieval finds for the question (shuffled);
the target is the pair's positive reply. The first ``--heldout`` scenarios (by seed 1) are kept out of
training and written to heldout.jsonl for the before/after numbers. A BPE tokenizer is trained on
the training text. Training is next-token cross-entropy on the reply tokens only, through the shared
loop (resumable, progress bar, metrics.jsonl, DDP under torchrun). At the end the model and its
tokenizer are written with ``save_pretrained`` to ``--out``/hf (safetensors + config.json), the folder
``anima.thinker.training.grpo`` and the runtime load.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from anima.train.options import add_common_arguments

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("out/thinker/responder")
VOCAB = 2048


def build_examples(n: int, seed: int, world_path: str | Path | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """``n`` scenarios turned into {prompt, positive, negative, negative_kind, scenario} rows."""
    from tqdm import tqdm

    from anima.thinker.model.responder_lm import format_prompt
    from anima.thinker.story import StoryThinker
    from anima.thinker.training.scenarios import generate_scenarios, preference_pair
    from anima.thinker.world import WORLD_ASSET, World

    world = World.open(world_path or WORLD_ASSET, readonly=True)
    thinkers: dict[str, StoryThinker] = {}
    rng = random.Random(seed)
    rows = []
    for i, scenario in enumerate(tqdm(generate_scenarios(world, n, seed), desc="scenarios", disable=not progress)):
        if scenario.character not in thinkers:
            thinkers[scenario.character] = StoryThinker.create(scenario.character, world=world_path, remember=False)
        thinker = thinkers[scenario.character]
        pair = preference_pair(scenario, thinker.embedded, world, i)
        if pair is None:
            continue
        source = pair.positive[len(_opener(pair.positive, thinker)):].strip()
        facts = [f for f in recalled_facts(thinker, scenario.question, scenario.story_time, exclude=scenario.fact_id)
                 if f.lower()[:40] != source.lower()[:40]]
        facts = [*facts[:2], source]
        rng.shuffle(facts)
        prompt = format_prompt(thinker.persona.name, scenario.story_time, facts, scenario.question)
        rows.append({"prompt": prompt, "positive": pair.positive, "negative": pair.negative,
                     "negative_kind": pair.negative_kind, "scenario": scenario.as_dict()})
    return rows


def _opener(reply: str, thinker) -> str:
    return next((o for o in sorted(thinker.persona.openers, key=len, reverse=True) if o and reply.startswith(o)), "")


def recalled_facts(thinker, question: str, story_time: int, k: int = 3, exclude: int | None = None) -> list[str]:
    """Up to ``k`` facts the gated retrieval finds for ``question``, voiced by the character (``speak_fact``)."""
    from anima.thinker.generator import voiced_facts
    from anima.thinker.intent import focus_words

    retrieved = thinker.retriever.retrieve(question, story_time, k_facts=12, speaker=thinker.persona.entity,
                                           gate=thinker.gate)
    hits = [h for h in [*retrieved.descriptions, *retrieved.facts] if h.id != exclude and h.origin != "session"]
    return voiced_facts(thinker.embedded, hits, focus_words(question, thinker.persona), k)


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB):
    """A byte-level BPE tokenizer trained on ``texts``, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from anima.thinker.model.responder_lm import EOS, PAD

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD)


def encode_rows(rows: list[dict[str, Any]], tokenizer, max_len: int) -> list[tuple[np.ndarray, int]]:
    """(token ids of prompt + " " + reply + EOS, index where the reply starts); prompts cut from the left."""
    out = []
    for r in rows:
        p = tokenizer(r["prompt"]).input_ids
        a = tokenizer(" " + r["positive"]).input_ids[: max_len // 3] + [tokenizer.eos_token_id]
        p = p[-(max_len - len(a)):]
        out.append((np.array(p + a, dtype=np.int64), len(p)))
    return out


def train_responder(out: str | Path, steps: int = 3000, config_name: str = "small", scenarios: int = 6000,
                    heldout: int = 200, batch: int = 16, lr: float = 1e-3, seed: int = 0, save_every: int = 250,
                    progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    import torch
    from transformers import GPT2LMHeadModel

    from anima.thinker.model.responder_lm import responder_config
    from anima.train import distributed
    from anima.train.loop import train_loop

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, held = out / "data.jsonl", out / "heldout.jsonl"
    if distributed.is_main() and not data.is_file():
        rows = build_examples(scenarios, seed, progress=progress)
        _write_jsonl(held, build_examples(heldout, seed + 1, progress=progress))
        _write_jsonl(data, rows)
    distributed.barrier()
    rows = _read_jsonl(data)
    tok_dir = out / "tokenizer"
    if distributed.is_main() and not (tok_dir / "tokenizer.json").is_file():
        tokenizer = train_tokenizer([r["prompt"] + " " + r["positive"] for r in rows])
        tokenizer.save_pretrained(tok_dir)
    distributed.barrier()
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    config = responder_config(config_name, len(tokenizer))
    model = GPT2LMHeadModel(config).to(device)
    examples = encode_rows(rows, tokenizer, config.n_positions)
    rng = np.random.default_rng(seed + distributed.rank())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    pad = tokenizer.pad_token_id

    def loss_fn(m, ids, labels):
        return m(input_ids=ids, attention_mask=(ids != pad).long(), labels=labels).loss

    net = distributed.wrap(model, loss_fn)

    def step_fn(i: int) -> dict[str, float]:
        for g in opt.param_groups:  # linear warm-up, cosine decay
            g["lr"] = lr * min(1.0, (i + 1) / 100) * 0.5 * (1 + np.cos(np.pi * min(1.0, i / max(1, steps))))
        picks = rng.integers(len(examples), size=max(1, batch // distributed.world_size()))
        length = max(len(examples[j][0]) for j in picks)
        ids = torch.full((len(picks), length), pad, dtype=torch.long)
        labels = torch.full((len(picks), length), -100, dtype=torch.long)
        for row, j in enumerate(picks):
            seq, start = examples[j]
            ids[row, :len(seq)] = torch.from_numpy(seq)
            labels[row, start:len(seq)] = torch.from_numpy(seq[start:])  # the reply (and EOS) only
        model.train()
        loss = net(ids.to(device), labels.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": float(loss)}

    cfg = {"kind": "thinker_responder", "model": config.to_dict(), "scenarios": scenarios, "seed": seed, "batch": batch,
           "lr": lr}
    train_loop(model, opt, step_fn, steps, out, cfg, save_every=save_every, desc="responder", progress=progress,
               rngs=[rng])
    report: dict[str, Any] = {}
    if distributed.is_main():
        model.cpu().eval()
        model.save_pretrained(out / "hf", safe_serialization=True)
        tokenizer.save_pretrained(out / "hf")
        report = {"parameters": sum(p.numel() for p in model.parameters()), "examples": len(examples),
                  "hf": str(out / "hf")}
        (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, steps=3000, out=DEFAULT_OUT, configs=("tiny", "small", "base"), save_every=250)
    parser.add_argument("--scenarios", type=int, default=6000, help="self-play scenarios to train on (default %(default)s)")
    parser.add_argument("--heldout", type=int, default=200, help="held-out scenarios, another seed (default %(default)s)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)


def main(argv: list[str] | None = None) -> int:
    import torch

    from anima.train import distributed

    parser = argparse.ArgumentParser(description="Train the Thinker's generator on self-play scenarios.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    distributed.init(args.device)
    try:
        t0 = time.time()
        report = train_responder(args.out, args.steps, args.config, args.scenarios, args.heldout, args.batch, args.lr,
                                 args.seed, args.save_every, not args.quiet, args.device)
        if distributed.is_main():
            print(json.dumps({**report, "seconds": round(time.time() - t0, 1)}, indent=1))
    finally:
        distributed.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
