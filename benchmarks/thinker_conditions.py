"""The Thinker's four conditions (paper 7.6) on a frozen suite, and the self-training's before/after.

    python benchmarks/thinker_conditions.py --responder out/thinker/grpo/hf --initial out/thinker/responder/hf \
        [--suite anima/assets/suites/thinker-heldout-17] [--json benchmarks/results/thinker_conditions.json]

Conditions: baseline (flat retrieval, the rule responder voices a retrieved sentence), self-train
(flat retrieval, the GRPO-trained generator writes the answers), diegetic (gated retrieval, rules),
full (gated retrieval, generator); plus the generator before GRPO (``--initial``) in the full
condition, so the loop's own effect on the suite shows. Keyword scoring as ``anima eval thinker``;
also counted per condition: replies that name the speaker in the third person outside a
self-introduction, and the median reply time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def third_person_about_self(report: dict) -> int:
    """Replies naming their own speaker as narration would ("Captain Nemo stood up"), not "I am Ned Land"."""
    from anima.thinker.persona import load_persona

    n = 0
    for suite in report["suites"].values():
        for item in suite["items"]:
            p = load_persona(item["character"])
            names = {p.entity, p.name} | {a for a, first, last in p.attribution
                                          if first <= item["story_time"] <= last and not a.startswith("the ")}
            text = item["response"]
            if any(re.search(rf"\b{re.escape(x)}\b", text) for x in names) and not re.search(r"\bI am\b|\bI'm\b", text):
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", type=Path, default=ROOT / "anima" / "assets" / "suites" / "thinker-heldout-17")
    ap.add_argument("--responder", type=Path, required=True, help="the self-trained generator (after GRPO)")
    ap.add_argument("--initial", type=Path, default=None, help="the generator before GRPO (its supervised start)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "thinker_conditions.json")
    args = ap.parse_args()
    import torch

    from anima.thinker.training.evaluate import CONDITIONS, format_conditions, load_suites, run_suites
    from anima.thinker.world import World

    torch.set_num_threads(1)
    suites = load_suites(args.suite)
    world = World.open_default(readonly=True)
    runs = {name: (gate, args.responder if gen else None) for name, (gate, gen) in CONDITIONS.items()}
    if args.initial:
        runs["full, before GRPO"] = (True, args.initial)
    reports, rows = {}, {}
    for name, (gate, responder) in runs.items():
        t0 = time.perf_counter()
        report = run_suites(suites, world, gate=gate, responder=responder)
        latencies = [i["latency_ms"] for s in report["suites"].values() for i in s["items"]]
        rows[name] = {"gate": gate, "responder": str(responder) if responder else None,
                      "scores": {k: v["score"] for k, v in report["suites"].items()},
                      "third_person_about_self": third_person_about_self(report),
                      "latency_median_ms": float(np.median(latencies)), "seconds": round(time.perf_counter() - t0, 1),
                      "items": {k: [{"id": i["id"], "passed": i["passed"], "response": i["response"]} for i in v["items"]]
                                for k, v in report["suites"].items()}}
        reports[name] = report
        print(f"{name}: {rows[name]['scores']} third-person {rows[name]['third_person_about_self']} "
              f"({rows[name]['seconds']} s)", flush=True)
    print(format_conditions(reports))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"suite": str(args.suite.relative_to(ROOT)) if args.suite.is_relative_to(ROOT)
                                     else str(args.suite), "conditions": rows}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
