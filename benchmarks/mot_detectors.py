"""How well the rule-based command detectors (anima.e2e.mot.detectors) tell the silent commands apart.

    .venv/bin/python benchmarks/mot_detectors.py [--dialogues out/dialogues] [--windows 400]

1. Tuning set, seeds 0-199: every command's clip and an idle clip per seed; prints the threshold
   each command's rule suggests (the geometric mean of the highest score without the behaviour and
   the 2nd percentile with it; a zero "without" counts as a quarter of the 2nd percentile).
   detectors.THRESHOLDS were copied from here.
2. Held out, seeds 1000-1199: the confusion of ``detect`` with the module's thresholds (right /
   wrong / none per command, and what idle clips are called).
3. Talking: 3 s windows of the dialogue corpus where the agent speaks throughout; the share flagged
   with any command is the false-detection rate (goal < 10 %).

Writes benchmarks/results/mot_detectors.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from anima.e2e.mot import detectors
from anima.e2e.mot.commands import COMMANDS, command_clip, idle_clip

TUNE_SEEDS = range(0, 200)
HELDOUT_SEEDS = range(1000, 1200)
WINDOW_S = 3.0


def clip_scores(seeds: range) -> dict[str, list[dict[str, float]]]:
    """{command or "idle": [scores of each seed's clip]}."""
    out: dict[str, list[dict[str, float]]] = {name: [] for name in (*COMMANDS, "idle")}
    for seed in seeds:
        for name in COMMANDS:
            clip = command_clip(name, seed)
            out[name].append(detectors.scores(clip.face, clip.body263))
        clip = idle_clip(seed)
        out["idle"].append(detectors.scores(clip.face, clip.body263))
    return out


def suggest(table: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per command: the highest score of a clip without it, the 2nd percentile with it, and their geometric mean
    (a highest score below a quarter of the percentile counts as that quarter: no threshold near zero)."""
    out = {}
    for name in COMMANDS:
        positive = np.array([s[name] for s in table[name]])
        negative = np.array([s[name] for other, rows in table.items() if other != name for s in rows])
        low, high = float(np.percentile(positive, 2)), float(negative.max())
        out[name] = {"max_without": round(high, 4), "p2_with": round(low, 4),
                     "suggested": round(float(np.sqrt(low * max(high, low / 4))), 4)}
    return out


def confusion(table: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, int]]:
    """Per clip kind: right / wrong / none counts of ``detect`` (and what the wrong ones were called)."""
    out = {}
    for name, rows in table.items():
        calls = Counter()
        for s in rows:
            margins = {k: v / detectors.THRESHOLDS[k] for k, v in s.items()}
            best = max(margins, key=margins.__getitem__)
            calls[best if margins[best] >= 1.0 else None] += 1
        right = calls.pop(name, 0) if name != "idle" else calls.pop(None, 0)
        none = calls.pop(None, 0)
        out[name] = {"right": right, "wrong": sum(calls.values()), "none": none,
                     "wrong_as": {str(k): v for k, v in calls.most_common()}}
    return out


def talking(root: Path, limit: int) -> dict[str, object]:
    """The detector on 3 s windows where the agent speaks throughout (first ``limit`` such windows)."""
    from anima.e2e.data.format import open_corpus

    corpus = open_corpus(root)
    flagged: Counter = Counter()
    rows: list[dict[str, float]] = []
    gestures: Counter = Counter()
    n = i = 0
    for i, conv in enumerate(corpus.conversations):
        for a, b, *_ in conv.get("segments", {}).get("agent", []):
            start = float(a)
            while start + WINDOW_S <= float(b) and n < limit:
                window = corpus.window(i, start, WINDOW_S)
                start += WINDOW_S
                if window is None or not window["agent_speaking"].all() or not window["valid_body"].all():
                    continue
                n += 1
                call = detectors.detect(window["face"], window["body263"])
                flagged[call] += 1
                if call is not None:  # the dialogue's own gesture at the time: a real bow or nod is no false alarm
                    ids = window["prompt_id"][window["prompt_id"] >= 0]
                    gestures[f"{call}: {window['prompts'][int(np.bincount(ids).argmax())]}"] += 1
                rows.append(detectors.scores(window["face"], window["body263"]))
        if n >= limit:
            break
    hits = n - flagged[None]
    return {"windows": n, "conversations": i + 1, "flagged": hits, "rate": round(hits / max(n, 1), 4),
            "by_command": {str(k): v for k, v in flagged.most_common() if k is not None},
            "flagged_with_prompt": dict(gestures.most_common()),
            "p95_score": {k: round(float(np.percentile([r[k] for r in rows], 95)), 4) for k in COMMANDS} if rows else {}}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=Path, default=Path("out/dialogues"))
    parser.add_argument("--windows", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mot_detectors.json"))
    args = parser.parse_args()

    t0 = time.perf_counter()
    tuning = suggest(clip_scores(TUNE_SEEDS))
    print(f"{'command':11s} {'max without':>11s} {'p2 with':>8s} {'suggested':>9s} {'in use':>7s}")
    for name, row in tuning.items():
        print(f"{name:11s} {row['max_without']:11.4f} {row['p2_with']:8.4f} {row['suggested']:9.4f} {detectors.THRESHOLDS[name]:7.4f}")
    held = confusion(clip_scores(HELDOUT_SEEDS))
    print(f"\nheld out (seeds {HELDOUT_SEEDS.start}-{HELDOUT_SEEDS.stop - 1}): {'right':>5s} {'wrong':>5s} {'none':>5s}  wrong as")
    for name, row in held.items():
        print(f"{name:11s} {row['right']:5d} {row['wrong']:5d} {row['none']:5d}  {row['wrong_as']}")
    total = sum(r["right"] for r in held.values())
    clips = sum(r["right"] + r["wrong"] + r["none"] for r in held.values())
    result: dict[str, object] = {"thresholds": detectors.THRESHOLDS, "tuning_seeds": [0, 199], "tuning": tuning,
                                 "heldout_seeds": [1000, 1199], "heldout": held,
                                 "heldout_accuracy": round(total / clips, 4)}
    print(f"held-out accuracy (idle counted right when None): {total}/{clips}")
    if args.dialogues.is_dir():
        talk = talking(args.dialogues, args.windows)
        result["talking"] = talk
        print(f"\ntalking windows ({WINDOW_S:.0f} s, agent speaking throughout): {talk['flagged']}/{talk['windows']} "
              f"flagged = {100 * talk['rate']:.1f} %  {talk['by_command']}")
        print(f"95th percentile of each score on them: {talk['p95_score']}")
        print(f"flagged, with the motion prompt in force: {talk['flagged_with_prompt']}")
    else:
        print(f"\n{args.dialogues}: no dialogue corpus, talking windows skipped")
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
