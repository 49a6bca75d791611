"""``anima data ...``: the dyadic dialogue corpus (docs/dialogues.md).

    anima data dialogues -n 100 -o out/dialogues [--workers 4] [--seed 0] [--start 0] [--video]
    anima data stats out/dialogues [--png out/dialogues/stats.png] [--json out/dialogues/stats.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _dialogues(args: argparse.Namespace) -> int:
    from anima.e2e.data.dialogues import RenderOptions, generate
    from anima.registry import BODIES, FACES

    try:
        FACES.check(args.face)
        BODIES.check(args.body)
        report = generate(args.n, args.output, workers=args.workers, seed=args.seed, start=args.start,
                          options=RenderOptions(face=args.face, body=args.body, video=args.video), progress=not args.quiet)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for conv_id, error in report["failed"]:
        print(f"failed {conv_id}: {error}", file=sys.stderr)
    m = report["manifest"]
    print(f"{args.output}: rendered {report['done']}, skipped {report['skipped']} already complete, failed {len(report['failed'])}; "
          f"this run {report['media_s'] / 3600:.3f} h of media in {report['wall_s']:.0f} s wall "
          f"({report['rtf']:.3f} core-s per media s); corpus {len(m['conversations'])} conversations, {m['hours']:.3f} h, splits {m['splits']}")
    return 1 if report["failed"] else 0


def _stats(args: argparse.Namespace) -> int:
    from anima.e2e.data.stats import corpus_stats, format_stats, histogram_png

    try:
        stats = corpus_stats(args.corpus)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    png = histogram_png(stats, args.png or args.corpus / "stats.png")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(stats, indent=1))
    print(format_stats(stats))
    print(f"histogram: {png}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``anima data ...`` to the top-level parser."""
    data = subparsers.add_parser("data", help="the dyadic dialogue corpus: generate, statistics",
                                 description="Training data for the end-to-end engines. See docs/dialogues.md.")
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("dialogues", help="render conversations headless through the cascade into a corpus folder",
                       description="Render N conversations (story thinker, scripted visitor) with both audio tracks, face, "
                                   "body, prompts and turn events. Resumable: finished conversations are skipped.")
    p.add_argument("-n", type=int, required=True, help="how many conversations (indices start .. start+n-1)")
    p.add_argument("-o", "--output", type=Path, required=True, help="corpus folder")
    p.add_argument("--workers", type=int, default=1, help="worker processes (one per core; default 1)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed: same seed, same scripts (default 0)")
    p.add_argument("--start", type=int, default=0, help="first conversation index (to split a corpus over machines)")
    p.add_argument("--face", default="procedural", help="face backend (registry name; default procedural)")
    p.add_argument("--body", default="procedural", help="body backend (registry name; default procedural)")
    p.add_argument("--video", action="store_true", help="also write video.mp4 per conversation (slow)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_dialogues)
    s = sub.add_parser("stats", help="hours, turns, gaps/overlaps and interruptions of a corpus, with a histogram PNG")
    s.add_argument("corpus", type=Path)
    s.add_argument("--png", type=Path, default=None, help="histogram path (default CORPUS/stats.png)")
    s.add_argument("--json", type=Path, default=None, help="also write the statistics as JSON here")
    s.set_defaults(func=_stats)
