"""PPO of the duplex decoder G against the reward model, with a KL penalty to the initial policy (paper 4.3, eqs. 6-7).

    python -m anima.e2e.duplex.training.ppo --g out/duplex/runs/av --reward out/duplex/runs/reward \\
        --motion out/duplex/runs/motion --tokenizer out/mot/talker/tokenizer --data out/duplex/data \\
        --out out/duplex/runs/ppo --iterations 30

One iteration: ``batch`` windows of train conversations (the recorded user's frames, and the recorded
agent's first ``prefix_s`` as the shared prefix, as the preference pairs were made); the policy G
writes the rest step by step (``preference.rollout``) at temperature 1 over the full distribution,
so the sampled tokens are exactly the policy's and PPO's importance ratios are exact. The sequence
reward is eq. 7::

    R = r_RM(sample) - beta * sum over sampled tokens of (log pi(token) - log pi_0(token)),  beta = 0.01

(the sampled log-ratio, whose expectation is KL(pi || pi_0), as in Stiennon et al. / Ouyang et al.;
the exact KL of the categorical distributions at the sampled positions is logged as ``kl``). The
advantage is R minus a running baseline, divided by a running scale (exponential means, momentum
0.9, of the batches' mean and variance; the first batch whitens itself): one scalar reward per
sample and a few samples per batch make a learned value head a second, noisier regression for
little gain, and the running mean is the classic REINFORCE baseline; the scale makes the step size
independent of the reward model's units. The clipped objective (clip 0.2) is averaged over each
sample's generated tokens, ``epochs`` passes per rollout batch.

What is optimised: the categorical head over the 8 codebooks, i.e. the transformer, the embedding
tables (tied to the heads) and the input projections. The motion diffusion head is kept fixed (no
gradient; MAR's head has no tractable likelihood for a PPO ratio). The motion still changes through
the transformer's hidden states, which condition that head, and the reward model sees it; the
judges logged each iteration (overlap, gap, lips of the samples) show what changed.

Resumable (the policy, the optimizer, the baseline and the random states; pi_0 is the ``--g`` the run
started from, recorded in its config). The run folder is a G checkpoint (kind "duplex", ``load_duplex``)
that the engine and the evaluation can use (as ``g/`` beside ``motion/``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anima.e2e.duplex.training.preference import (
    JUDGES,
    STEP_S,
    Sample,
    rollout,
    score_sample,
    window_batch,
    windows,
)

BETA = 0.01
CLIP = 0.2


def token_logprobs(model, sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
    """One parallel pass of G over the sample: (log-prob of each written token (B, S, K), log-softmax over
    the codebook (B, S, K, codebook_size)). Equals the step-by-step distribution: same inputs, same window."""
    c = model.config
    h = model(model.embed(**sample.inputs(c)))  # (B, S, d)
    logp_all = F.log_softmax(model.audio_logits(h)[..., :c.codebook_size].float(), dim=-1)  # (B, S, K, V)
    tokens = sample.rows.clamp(max=c.codebook_size - 1)  # PAD slots are masked out by the caller
    return logp_all.gather(-1, tokens[..., None])[..., 0], logp_all


class Baseline:
    """Running mean and variance of the sequence rewards (exponential, ``momentum``)."""

    def __init__(self, momentum: float = 0.9) -> None:
        self.momentum, self.mean, self.var, self.count = momentum, 0.0, 1.0, 0

    def advantage(self, rewards: torch.Tensor) -> torch.Tensor:
        """(B,) rewards -> (B,) advantages against the baseline so far; then the baseline takes this batch in."""
        mean, var = float(rewards.mean()), float(rewards.var(unbiased=False)) if rewards.numel() > 1 else 0.0
        if self.count == 0:
            self.mean, self.var = mean, var if var > 0 else 1.0
        adv = (rewards - self.mean) / (self.var ** 0.5 + 1e-6)
        m = self.momentum
        self.mean = m * self.mean + (1 - m) * mean
        self.var = m * self.var + (1 - m) * max(var, 1e-8)
        self.count += 1
        return adv

    def state(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count, "momentum": self.momentum}

    def load(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), int(state["count"])
        self.momentum = float(state.get("momentum", self.momentum))


def ppo_iteration(policy, ref, batch: dict[str, Any], prefix: int, reward_fn: Callable[[Sample], torch.Tensor],
                  opt: torch.optim.Optimizer, baseline: Baseline, beta: float = BETA, clip: float = CLIP,
                  epochs: int = 2, codec=None, judge: Callable[[Sample], list[dict]] | None = None) -> dict[str, float]:
    """Roll out on ``batch`` (sampler tensors), score, and take ``epochs`` clipped PPO steps; returns the metrics."""
    c = policy.config
    policy.eval()  # no dropout: the ratio compares the same function
    sample = rollout(policy, batch, prefix, 1.0, codec, top_k=0)
    mask = sample.generated(c).float()  # (B, S, K)
    n_tok = mask.sum((1, 2)).clamp(min=1)  # (B,)
    with torch.no_grad():
        old_lp, old_all = token_logprobs(policy, sample)
        ref_lp, ref_all = token_logprobs(ref, sample)
        kl_sampled = ((old_lp - ref_lp) * mask).sum((1, 2))  # (B,) eq. 7's penalty
        kl_exact = ((old_all.exp() * (old_all - ref_all)).sum(-1) * mask).sum((1, 2))  # (B,)
        score = reward_fn(sample).float()  # (B,)
        rewards = score - beta * kl_sampled
        adv = baseline.advantage(rewards)
    metrics: dict[str, float] = {"reward": float(score.mean()), "total_reward": float(rewards.mean()),
                                 "kl": float(kl_exact.mean()), "kl_sampled": float(kl_sampled.mean()),
                                 "baseline": baseline.mean, "tokens": float(n_tok.mean())}
    params = [p for p in policy.parameters() if p.requires_grad]
    for _ in range(epochs):
        new_lp, _ = token_logprobs(policy, sample)
        ratio = (new_lp - old_lp).exp()  # (B, S, K)
        a = adv[:, None, None]
        objective = torch.minimum(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a)
        loss = -((objective * mask).sum((1, 2)) / n_tok).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            metrics["loss"] = float(loss)
            metrics["clip_fraction"] = float((((ratio - 1).abs() > clip).float() * mask).sum() / mask.sum().clamp(min=1))
    if judge is not None:
        scores = judge(sample)
        for k in JUDGES:
            values = [s[k] for s in scores if s[k] is not None]
            metrics[f"judge_{k}"] = float(np.mean(values)) if values else float("nan")
    return metrics


def freeze_motion_head(model) -> list[torch.nn.Parameter]:
    """Stop gradients into the diffusion head; returns the parameters PPO trains."""
    for p in model.diffusion.parameters():
        p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from anima.train.options import add_run_arguments

    parser.add_argument("--g", type=Path, required=True, help="G to tune: the initial policy pi_0")
    parser.add_argument("--reward", type=Path, required=True, help="the reward model (reward.py)")
    parser.add_argument("--motion", type=Path, required=True, help="the motion codec (prefix latents, judges' faces)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="the speech tokenizer (for the judges' log; none: no judges)")
    parser.add_argument("--data", type=Path, default=Path("out/duplex/data"))
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumed if it holds a checkpoint)")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4, help="rollouts per iteration")
    parser.add_argument("--epochs", type=int, default=2, help="PPO passes over each rollout batch")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per rollout window")
    parser.add_argument("--prefix", type=float, default=3.0, help="seconds of the recorded agent as the prefix")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--beta", type=float, default=BETA, help="KL penalty (eq. 7; the paper's 0.01)")
    parser.add_argument("--clip", type=float, default=CLIP)
    parser.add_argument("--save-every", type=int, default=5)
    add_run_arguments(parser)


def run(args: argparse.Namespace, reward_fn: Callable[[Sample], torch.Tensor] | None = None) -> dict[str, Any]:
    """The CLI's run. ``reward_fn`` replaces the reward model (tests); ``args.reward`` is then only recorded."""
    from anima.checkpoint import read_config
    from anima.e2e.duplex.model import config_dict, load_duplex
    from anima.e2e.duplex.motion import MotionCodec
    from anima.e2e.duplex.training.data import load_split
    from anima.e2e.duplex.training.preference import corpus_gap_range
    from anima.train import train_loop

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    pi0_dir = Path(args.g).resolve()
    baseline = Baseline()
    if (out / "config.json").is_file():  # resuming: pi_0 is the G the run started from
        saved = read_config(out)
        pi0_dir = Path(saved["config"]["ppo"]["init"])
        if Path(args.g).resolve() != pi0_dir:
            print(f"resuming {out}: pi_0 is {pi0_dir} (the run's start), not --g {args.g}")
        if "baseline" in saved.get("extra", {}):
            baseline.load(saved["extra"]["baseline"])
    policy = load_duplex(pi0_dir)
    ref = load_duplex(pi0_dir)
    for p in ref.parameters():
        p.requires_grad_(False)
    c = policy.config
    codec = MotionCodec.from_pretrained(args.motion).eval()
    if codec.config.latent != c.latent:
        raise SystemExit(f"motion codec latents of {codec.config.latent}, G expects {c.latent}")
    if reward_fn is None:
        from anima.e2e.duplex.training.reward import load_reward

        rm = load_reward(args.reward)
        if (rm.config.codebook_size, rm.config.n_codebooks, rm.config.latent) != (c.codebook_size, c.n_codebooks, c.latent):
            raise SystemExit(f"{args.reward}: the reward model reads other codes or latents than G")

        def reward_fn(sample: Sample) -> torch.Tensor:
            with torch.no_grad():
                return rm(sample)

    convs = load_split(args.data, "train")
    if not convs:
        raise SystemExit(f"{args.data}: no train conversations")
    steps = min(int(round(args.window / STEP_S)), c.context)
    prefix = int(round(args.prefix / STEP_S))
    if not 0 < prefix < steps:
        raise SystemExit(f"--prefix ({prefix} steps) must be shorter than the window ({steps} steps)")
    judge = None
    if args.tokenizer is not None:
        from anima.talker.model.tokenizer import SpeechTokenizer

        tokenizer = SpeechTokenizer.from_pretrained(args.tokenizer).eval()
        gap_range = corpus_gap_range(convs)

        def judge(sample: Sample) -> list[dict]:  # the rollout's windows: the user/agent masks the judges read
            return score_sample(sample, current["batch"], tokenizer, codec, c.delays, gap_range)

    params = freeze_motion_head(policy)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    current: dict[str, Any] = {}

    def step_fn(i: int) -> dict[str, float]:
        current["batch"] = window_batch(windows(convs, steps, args.batch, rng), steps)
        return ppo_iteration(policy, ref, current["batch"], prefix, reward_fn, opt, baseline, args.beta, args.clip,
                             args.epochs, codec, judge)

    g_cfg = read_config(pi0_dir)["config"]
    cfg = {**config_dict(c), "tokenizer_digest": g_cfg.get("tokenizer_digest"), "motion_dir": g_cfg.get("motion_dir"),
           "ppo": {"init": str(pi0_dir), "reward": str(Path(args.reward).resolve()) if args.reward else None,
                   "iterations": args.iterations, "batch": args.batch, "epochs": args.epochs, "window_steps": steps,
                   "prefix_steps": prefix, "lr": args.lr, "beta": args.beta, "clip": args.clip, "seed": args.seed}}
    state = train_loop(policy, opt, step_fn, args.iterations, out, cfg, save_every=args.save_every, desc="duplex ppo",
                       progress=not args.quiet, rngs=[rng], extra=lambda: {"baseline": baseline.state()})
    lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").is_file() else []
    return {"pi0": str(pi0_dir), **(json.loads(lines[-1]) if lines else {}), "step": state.step}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args(argv)), default=float))


if __name__ == "__main__":
    main()

