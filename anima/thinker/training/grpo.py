"""Data-free self-training of the Thinker's generator with GRPO (paper 6.2.2, eq. 22-23), through TRL.

    python -m anima.thinker.training.grpo --policy out/thinker/responder/hf --data out/thinker/responder \
        --out out/thinker/grpo --steps 200
    python -m anima.thinker.training.grpo --out out/thinker/grpo --eval-only   # before/after on the held-out scenarios

The actor policy is any Hugging Face causal LM folder (``--policy``: the small generator trained by
``train_responder``, or a real chat model on a GPU). Prompts are the self-play scenarios (data.jsonl
of the responder run); each completion is scored by the persona reward r(a) against the scenario's
synthetic pair (``persona_reward``); TRL's ``GRPOTrainer`` samples ``--group`` completions per
prompt, normalises rewards within the group and keeps the policy near the initial one with a KL
penalty (``--beta``, eq. 22's beta).

Checkpoints are the project's (safetensors + JSON, ``anima.checkpoint``; TRL's own pickled trainer
state is switched off): every ``--save-every`` steps the policy weights and the optimizer state, and
the step reached. A resumed run loads them and runs the remaining steps at the same constant
learning rate, the prompts reshuffled with a seed offset by the step (so it continues the run, not
bit for bit). Metrics (reward, KL, ...) go to ``--out``/metrics.jsonl; ``--eval-only`` writes
report.json (mean persona reward, first-person rate, in-voice rate of greedy replies on held-out
scenarios, initial policy vs trained) and curve.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from anima.train.options import add_run_arguments

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("out/thinker/grpo")
DEFAULT_DATA = Path("out/thinker/responder")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no scenarios here (run anima.thinker.training.train_responder first)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _step_reached(out: Path) -> int:
    from anima.checkpoint import read_config

    try:
        return int(read_config(out / "checkpoint").get("step", 0))
    except Exception:
        return 0


def train_grpo(policy: str | Path, data: str | Path, out: str | Path, steps: int = 200, group: int = 4,
               prompts_per_step: int = 2, beta: float = 0.04, lr: float = 2e-5, max_completion: int = 48,
               temperature: float = 1.0, save_every: int = 25, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from anima.checkpoint import load_checkpoint, save_checkpoint
    from anima.thinker.training.persona_reward import PersonaReward

    out, data = Path(out), Path(data)
    out.mkdir(parents=True, exist_ok=True)
    rows = _read_jsonl(data / "data.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(policy)
    model = AutoModelForCausalLM.from_pretrained(policy, use_safetensors=True)
    start = _step_reached(out)
    if start >= steps:
        logger.info("%s already holds %d steps", out, start)
        return {"steps": start}
    reward = PersonaReward()

    def persona_reward(prompts, completions, positive, negative, **_):
        return reward([c.strip() for c in completions], positive, negative)

    room = model.config.n_positions - max_completion - 1  # the prompt's tokens, cut from the left (facts go first)

    def fit(prompt: str) -> str:
        ids = tokenizer(prompt).input_ids
        return prompt if len(ids) <= room else tokenizer.decode(ids[-room:])

    dataset = Dataset.from_list([{"prompt": fit(r["prompt"]), "positive": r["positive"], "negative": r["negative"]}
                                 for r in rows])
    args = GRPOConfig(
        output_dir=str(out / "trl"), max_steps=steps - start, learning_rate=lr, lr_scheduler_type="constant",
        warmup_steps=0, per_device_train_batch_size=group * prompts_per_step, num_generations=group,
        max_completion_length=max_completion, temperature=temperature, beta=beta, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=True, seed=seed + start, disable_tqdm=not progress,
        bf16=False, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, reward_funcs=persona_reward, args=args, train_dataset=dataset,
                          processing_class=tokenizer)
    if start:
        trainer.create_optimizer_and_scheduler(num_training_steps=steps - start)
        load_checkpoint(out / "checkpoint", model, trainer.optimizer)
        logger.info("resumed %s at step %d", out, start)
    metrics = out / "metrics.jsonl"
    if metrics.is_file():  # cut back to the checkpoint's step: the file never holds steps the weights do not
        kept = [line for line in metrics.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= start]
        metrics.write_text("".join(k + "\n" for k in kept))
    config = {"kind": "thinker_grpo", "policy": str(policy), "data": str(data), "steps": steps, "group": group,
              "prompts_per_step": prompts_per_step, "beta": beta, "lr": lr, "max_completion": max_completion,
              "temperature": temperature, "seed": seed}
    t0 = time.time()

    class Keep(TrainerCallback):
        """Our metrics and safetensors checkpoints, instead of the Trainer's pickles."""

        def on_log(self, args_, state, control, logs=None, **kw):
            if logs and "reward" in logs:
                row = {"step": start + state.global_step, **{k: float(v) for k, v in logs.items()
                                                             if isinstance(v, (int, float))},
                       "elapsed_s": round(time.time() - t0, 1)}
                with metrics.open("a") as f:
                    f.write(json.dumps(row) + "\n")

        def on_step_end(self, args_, state, control, **kw):
            step = start + state.global_step
            if step % save_every == 0 or step == steps:
                save_checkpoint(out / "checkpoint", model, config, step, trainer.optimizer)

    trainer.add_callback(Keep())
    torch.manual_seed(seed + start)
    trainer.train()
    save_checkpoint(out / "checkpoint", model, config, steps, trainer.optimizer)
    model.save_pretrained(out / "hf", safe_serialization=True)
    tokenizer.save_pretrained(out / "hf")
    return {"steps": steps, "hf": str(out / "hf"), "seconds": round(time.time() - t0, 1)}


def evaluate_policy(policy: str | Path, rows: list[dict], max_new_tokens: int = 48) -> dict[str, Any]:
    """Greedy replies of ``policy`` to held-out scenario rows: mean persona reward, first-person and in-voice rates."""
    import re

    from anima.thinker.model.responder_lm import generate, load_responder
    from anima.thinker.persona import load_persona
    from anima.thinker.training.persona_reward import PersonaReward

    model, tokenizer = load_responder(policy)
    replies = [generate(model, tokenizer, r["prompt"], max_new_tokens) for r in rows]
    rewards = PersonaReward()(replies, [r["positive"] for r in rows], [r["negative"] for r in rows])
    first = [bool(re.search(r"\b(I|me|my|we|us|our)\b", a)) for a in replies]
    openers = [any(a.startswith(o) for o in load_persona(r["scenario"]["character"]).openers if o)
               for a, r in zip(replies, rows, strict=False)]
    by_kind: dict[str, list[float]] = {}
    for r, v in zip(rows, rewards, strict=False):
        by_kind.setdefault(r["negative_kind"], []).append(v)
    return {"n": len(rows), "persona_reward": sum(rewards) / len(rows), "first_person_rate": sum(first) / len(rows),
            "in_voice_rate": sum(openers) / len(rows),
            "persona_reward_by_negative": {k: sum(v) / len(v) for k, v in by_kind.items()},
            "examples": [{"prompt": r["prompt"][-160:], "reply": a, "positive": r["positive"]}
                         for r, a in list(zip(rows, replies, strict=False))[:5]]}


def plot_curve(metrics: Path, png: Path, width: int = 900, height: int = 340) -> Path:
    """Persona reward and KL per step (raw, and a 10-step moving average) as a PNG, drawn with PIL."""
    import numpy as np
    from PIL import Image, ImageDraw

    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    panels = (("reward", "persona reward r(a), group mean"), ("kl", "KL to the initial policy"))
    pw = width // len(panels)
    for n, (key, title) in enumerate(panels):
        x0, y0, x1, y1 = n * pw + 50, 30, (n + 1) * pw - 15, height - 35
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        draw.text((x0, 8), title, fill="black")
        draw.rectangle([x0, y0, x1, y1], outline="gray")
        if len(pts) < 2:
            continue
        steps, vals = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
        lo, hi = float(vals.min()), float(vals.max())
        hi = hi if hi > lo else lo + 1e-6

        def xy(s, v, box=(x0, y0, x1, y1), span=(steps[0], steps[-1], lo, hi)):
            (bx0, by0, bx1, by1), (s0, s1, v0, v1) = box, span
            return bx0 + (s - s0) / max(1e-9, s1 - s0) * (bx1 - bx0), by1 - (v - v0) / (v1 - v0) * (by1 - by0)

        draw.line([xy(s, v) for s, v in zip(steps, vals, strict=False)], fill=(160, 190, 230), width=1)
        if len(vals) >= 10:
            smooth = np.convolve(vals, np.ones(10) / 10, mode="valid")
            draw.line([xy(s, v) for s, v in zip(steps[9:], smooth, strict=False)], fill=(20, 70, 160), width=2)
        draw.text((x0 - 45, y0), f"{hi:.3g}", fill="black")
        draw.text((x0 - 45, y1 - 10), f"{lo:.3g}", fill="black")
        draw.text((x0, y1 + 5), f"step {int(steps[0])}", fill="black")
        draw.text((x1 - 60, y1 + 5), f"step {int(steps[-1])}", fill="black")
    img.save(png)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Self-train the Thinker's generator with GRPO (TRL) on the persona reward.")
    parser.add_argument("--policy", type=Path, default=DEFAULT_DATA / "hf", help="HF causal LM folder (default %(default)s)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="responder run with data.jsonl / heldout.jsonl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt (GRPO's G)")
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--beta", type=float, default=0.04, help="KL penalty to the initial policy")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the group's completions")
    parser.add_argument("--save-every", type=int, default=25)
    parser.add_argument("--eval-only", action="store_true", help="score the initial and trained policies on held-out scenarios")
    parser.add_argument("--eval-n", type=int, default=200)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not args.eval_only:
        print(json.dumps(train_grpo(args.policy, args.data, args.out, args.steps, args.group, args.prompts_per_step,
                                    args.beta, args.lr, temperature=args.temperature, save_every=args.save_every,
                                    seed=args.seed,
                                    progress=not args.quiet), indent=1))
    held = _read_jsonl(args.data / "heldout.jsonl")[: args.eval_n]
    report = {"initial": evaluate_policy(args.policy, held), "trained": evaluate_policy(args.out / "hf", held)}
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    if (args.out / "metrics.jsonl").is_file():
        plot_curve(args.out / "metrics.jsonl", args.out / "curve.png")
    print(json.dumps({k: {m: v[m] for m in ("persona_reward", "first_person_rate", "in_voice_rate")}
                      for k, v in report.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
