"""Where a duplex decoder step's time goes (issue 15 speed goal: p95 <= 40 ms per 80 ms step).

    python benchmarks/e2e_step_profile.py --weights out/duplex/weights --talker out/mot/talker \\
        [--user out/dialogues/c000046/user.flac] [--steps 300] [--json benchmarks/results/e2e_step_profile.json]

Runs ``DuplexAgent.step``'s parts one by one on a recorded user (one torch thread): the speech
tokenizer's streaming encoder, G's transformer step, its diffusion head (for several DDIM step
counts), the tokenizer's streaming decoder and the motion codec's streaming decoder. Run it with
nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=Path("out/duplex/weights"))
    p.add_argument("--talker", type=Path, default=Path("out/mot/talker"))
    p.add_argument("--user", type=Path, default=Path("out/dialogues/c000046/user.flac"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "e2e_step_profile.json")
    args = p.parse_args()

    import numpy as np
    import torch

    from anima.core.audio import load_wav
    from anima.e2e.duplex.engine import STEP_SAMPLES, DuplexAgent

    torch.set_num_threads(1)
    agent = DuplexAgent.load(args.weights, args.talker)
    user = load_wav(str(args.user))[: (args.steps + 10) * STEP_SAMPLES]
    tok, model, codec = agent.tokenizer, agent.model, agent.codec
    state, enc, dec, motion = model.new_state(), tok.new_encoder_state(), tok.new_decoder_state(), codec.new_state()
    times: dict[str, list[float]] = {"encoder": [], "transformer": [], "heads + sampling": [], "decoder": [], "motion codec": []}
    diff = {n: [] for n in (10, 5, 3)}
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for i in range(args.steps + 10):
            t0 = time.perf_counter()
            codes = tok.encode_step(enc, torch.from_numpy(user[i * STEP_SAMPLES:(i + 1) * STEP_SAMPLES])[None])
            t1 = time.perf_counter()
            x = model.embed(state.agent_row[:, None], codes[:, :, -1][:, None], state.motion[:, None] if state.motion is not None else None,
                            None, None, None, None, None, None)
            h = model(x, state)[:, 0]
            t2 = time.perf_counter()
            logits = model.audio_logits(h)[..., :model.config.codebook_size] / 0.8
            kth = logits.topk(50, dim=-1).values[..., -1:]
            row = torch.multinomial(logits.masked_fill(logits < kth, -float("inf")).softmax(-1).flatten(0, 1), 1, generator=gen).view(1, -1)
            t3 = time.perf_counter()
            lat = {}
            for n in diff:
                s0 = time.perf_counter()
                lat[n] = model.sample_motion(h, steps=n, generator=gen)
                diff[n].append(time.perf_counter() - s0)
            state.agent_row, state.motion = row, lat[10]
            t4 = time.perf_counter()
            tok.decode_step(dec, row[:, :, None])
            t5 = time.perf_counter()
            codec.decode_step(motion, lat[10].view(1, model.config.frames_per_step, model.config.latent))
            t6 = time.perf_counter()
            if i >= 10:
                for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t5 - t4, t6 - t5), strict=True):
                    times[k].append(v)
    rows = {k: (1000 * float(np.median(v)), 1000 * float(np.percentile(v, 95))) for k, v in times.items()}
    rows.update({f"diffusion head, {n} DDIM steps": (1000 * float(np.median(v[10:])), 1000 * float(np.percentile(v[10:], 95)))
                 for n, v in diff.items()})
    print(f"{'part':34s} {'median ms':>10s} {'p95 ms':>8s}")
    for k, (med, p95) in rows.items():
        print(f"{k:34s} {med:10.1f} {p95:8.1f}")
    total = sum(rows[k][0] for k in times) + rows["diffusion head, 10 DDIM steps"][0]
    print(f"{'sum of medians (10 DDIM steps)':34s} {total:10.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"parts_ms": {k: {"median": m, "p95": q} for k, (m, q) in rows.items()},
                                     "sum_of_medians_ms": total, "steps": args.steps, "threads": 1,
                                     "machine": platform.processor() or platform.machine()}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
