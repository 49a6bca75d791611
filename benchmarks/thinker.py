"""Benchmark the story thinker: world build time and size, retrieval latency on the whole-novel
graph, the per-turn reply latency, the vector-search options, and the evaluation scores with the
narrative-present gate on and off. Prints a markdown table and writes JSON.

    python benchmarks/thinker.py [--world W.db] [--novel DIR] [--queries 400] [--skip-build]
                                 [--json benchmarks/results/thinker.json]

The build is timed on a fresh temporary file (MiniLM embedder, one thread, like `anima world build`);
``--skip-build`` keeps the numbers of the previous JSON. Latencies are wall time of single calls on
this machine (median and p95 over ``--queries`` questions at random story times: the suites'
prompts plus questions made from the novel's own sentences).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
NOVEL = ROOT.parent / "shared" / "data" / "novels" / "twenty-thousand-leagues"


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": round(statistics.median(xs) * 1000, 2),
            "p95_ms": round(xs[min(len(xs) - 1, int(0.95 * len(xs)))] * 1000, 2),
            "max_ms": round(xs[-1] * 1000, 2)}


def bench_build(novel: Path) -> dict:
    from anima.thinker.data.build import build_world

    with tempfile.TemporaryDirectory() as tmp:
        result = build_world(novel, Path(tmp) / "world.db", embedder="minilm", progress=False)
    return {"seconds": round(result.seconds, 1), "bytes": result.bytes, "counts": result.counts,
            "build_id": result.build_id}


def queries(world, n: int, seed: int = 0) -> list[tuple[str, int]]:
    from anima.thinker.training.evaluate import SUITE_DIR, load_suites

    rng = random.Random(seed)
    out = [(item.prompt, item.story_time) for items in load_suites(SUITE_DIR).values() for item in items]
    rows = world.conn.execute("SELECT text FROM facts WHERE origin = 'offline' ORDER BY id").fetchall()
    while len(out) < n:
        words = rng.choice(rows)[0].split()
        start = rng.randrange(max(1, len(words) - 6))
        out.append(("What about " + " ".join(words[start:start + 6]).strip(",.;:") + "?", rng.randint(1, world.chapters)))
    rng.shuffle(out)
    return out[:n]


def bench_retrieval(world_path: Path, n: int) -> dict:
    import numpy as np

    from anima.thinker.retrieval import Retriever
    from anima.thinker.world import World

    world = World.open(world_path, readonly=True)
    start = time.perf_counter()
    retriever = Retriever(world)
    load_s = time.perf_counter() - start
    qs = queries(world, n)
    retriever.embed("warm up")  # the model loads once per process; not a per-query cost
    full, search, embed = [], [], []
    for text, story_time in qs:
        t0 = time.perf_counter()
        vector = retriever.embed(text)
        t1 = time.perf_counter()
        retriever.retrieve(text, story_time, vector=vector)
        t2 = time.perf_counter()
        embed.append(t1 - t0)
        search.append(t2 - t1)
        full.append(t2 - t0)
    # The vector search alone, and the alternative of a memory-mapped .npy matrix next to the file.
    matrix = retriever.fact_index.matrix
    q = retriever.embed("Where is the Nautilus?")
    brute = []
    for _ in range(200):
        t0 = time.perf_counter()
        retriever.fact_index.search(q, 20, 12)
        brute.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "facts.npy"
        np.save(path, matrix)
        t0 = time.perf_counter()
        mm = np.load(path, mmap_mode="r")
        first = mm @ q
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(200):
            t0 = time.perf_counter()
            scores = np.asarray(mm @ q)
            scores[retriever.fact_index.known_from > 12] = -np.inf
            np.argpartition(-scores, 20)[:20]
            warm.append(time.perf_counter() - t0)
        del mm, first
    try:
        import sqlite3

        sqlite3.connect(":memory:").enable_load_extension(True)
        loadable = True
    except (AttributeError, sqlite3.Error):
        loadable = False
    info = {"facts": len(retriever.facts), "entities": len(retriever.entities), "lines": len(retriever.lines),
            "dim": int(matrix.shape[1])}
    world.close()
    return {"graph": info, "load_vectors_s": round(load_s, 3), "query": _stats(full), "embed": _stats(embed),
            "search": _stats(search), "vector_search": {
                "numpy_in_memory_top20": _stats(brute), "numpy_memmap_top20_warm": _stats(warm),
                "numpy_memmap_first_query_ms": round(cold * 1000, 2),
                "sqlite_vec": "available" if loadable else
                "not loadable: this Python's sqlite3 was built without enable_load_extension"}}


def bench_respond(world_path: Path, n: int) -> dict:
    from anima.thinker.base import ThinkerContext
    from anima.thinker.persona import load_persona
    from anima.thinker.story import StoryThinker, shared_retriever
    from anima.thinker.world import World

    world = World.open(world_path, readonly=True)
    retriever = shared_retriever(world)
    times = []
    for i, (text, story_time) in enumerate(queries(world, n, seed=1)):
        persona = load_persona(("nemo", "aronnax", "conseil", "ned")[i % 4])
        thinker = StoryThinker(world, persona, story_time, retriever, remember=False)
        t0 = time.perf_counter()
        thinker.respond(text, ThinkerContext())
        times.append(time.perf_counter() - t0)
    world.close()
    return _stats(times)


def bench_eval(world_path: Path) -> dict:
    from anima.thinker.training.evaluate import SUITE_DIR, load_suites, run_suites
    from anima.thinker.world import World

    world = World.open(world_path, readonly=True)
    out = {}
    for gate in (True, False):
        report = run_suites(load_suites(SUITE_DIR), world, gate=gate)
        out["gate_on" if gate else "gate_off"] = {k: {"score": v["score"], "passed": v["passed"], "n": v["n"]}
                                                  for k, v in report["suites"].items()}
    world.close()
    return out


def table(r: dict) -> str:
    b, q, e = r["build"], r["retrieval"], r["eval"]
    rows = ["| measure | value |", "|---|---|"]
    if b:
        rows += [f"| world build, whole novel (47 chapters, MiniLM, 1 thread) | {b['seconds']:.0f} s |",
                 f"| world size | {b['bytes'] / 1e6:.1f} MB ({b['counts']['entities']} entities, "
                 f"{b['counts']['facts']} facts, {b['counts']['lines']} lines) |"]
    rows += [f"| retrieval, embed + dual-level search (median / p95, n={q['query']['n']}) | "
             f"{q['query']['median_ms']:.1f} / {q['query']['p95_ms']:.1f} ms |",
             f"| of which query embedding (MiniLM) | {q['embed']['median_ms']:.1f} / {q['embed']['p95_ms']:.1f} ms |",
             f"| of which gated search (vector + BM25 + graph) | {q['search']['median_ms']:.1f} / {q['search']['p95_ms']:.1f} ms |",
             f"| vector top-20, numpy in memory ({q['graph']['facts']} x {q['graph']['dim']}) | "
             f"{q['vector_search']['numpy_in_memory_top20']['median_ms']:.2f} / "
             f"{q['vector_search']['numpy_in_memory_top20']['p95_ms']:.2f} ms |",
             f"| vector top-20, numpy memory-mapped .npy (warm) | "
             f"{q['vector_search']['numpy_memmap_top20_warm']['median_ms']:.2f} / "
             f"{q['vector_search']['numpy_memmap_top20_warm']['p95_ms']:.2f} ms |",
             f"| loading the vectors from the world file | {q['load_vectors_s'] * 1000:.0f} ms |",
             f"| reply, embedded responder (median / p95) | {r['respond']['median_ms']:.1f} / {r['respond']['p95_ms']:.1f} ms |"]
    for suite in ("timeline", "controls", "robustness"):
        on, off = e["gate_on"][suite], e["gate_off"][suite]
        rows.append(f"| {suite}: gate on / gate off | {on['score']:.1f} % ({on['passed']}/{on['n']}) / "
                    f"{off['score']:.1f} % ({off['passed']}/{off['n']}) |")
    return "\n".join(rows)


def main() -> None:
    from anima.thinker.world import WORLD_ASSET

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=WORLD_ASSET, help="world database (default: the shipped one)")
    ap.add_argument("--novel", type=Path, default=NOVEL, help="novel directory for the build timing")
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--skip-build", action="store_true", help="keep the build numbers of the previous JSON")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "thinker.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    previous = json.loads(args.json.read_text()) if args.json.is_file() else {}
    if args.skip_build or not args.novel.is_dir():
        build = previous.get("build", {})
    else:
        print("timing a whole-novel world build (a few minutes) ...", file=sys.stderr)
        build = bench_build(args.novel)
    load_before = os.getloadavg()
    result = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "load_average_1m_at_start": round(load_before[0], 2)},
              "world": str(args.world), "build": build, "retrieval": bench_retrieval(args.world, args.queries),
              "respond": bench_respond(args.world, min(args.queries, 200)), "eval": bench_eval(args.world)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
