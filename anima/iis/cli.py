"""``anima eval iis`` and ``anima eval characterbox`` (added to the ``eval`` group of the thinker CLI).

    anima eval iis [--json out/iis/iis.json] [--plot out/iis/iis_radar.png] [--judge-url URL --judge-model M]
                   [--from-results [DIR]] [--talker-clips N] [--face-minutes M] [--body-streams N]
    anima eval characterbox --judge-url URL [--judge-model M] [--suite DIR] [--limit N] [--json out.json]

Lazy imports: nothing here loads torch until a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _judge_config(url: str | None, model: str | None, timeout_s: float):
    if not url:
        return None
    from anima.thinker.llm import LLMConfig

    return LLMConfig(base_url=url, model=model or "default", api_key=os.environ.get("ANIMA_LLM_API_KEY") or None,
                     timeout_s=timeout_s, temperature=0.0, max_tokens=600, stream=False)


def _references(extras: dict) -> list[str]:
    from anima.iis.score import dimension_score

    lines = []
    for name, values in extras.get("face_references", {}).items():
        s = dimension_score("fac", values)["score"]
        lines.append(f"  S_fac of the {name} face on the same tracks: {s:.1f} (LVE {values['LVE']:.2f} mm, DD {values['DD']:.2f})")
    for name, values in extras.get("body_references", {}).items():
        s = dimension_score("som", values)["score"]
        lines.append(f"  S_som of {name}: {s:.1f} (FID {values['FID']:.2f}, PJ {values['PJ']:.0f} m/s^3)")
    return lines


def _iis(args: argparse.Namespace) -> int:
    from anima.iis.radar import draw_radar
    from anima.iis.score import ScoreError, iis

    start = time.perf_counter()
    extras: dict = {}
    try:
        if args.from_results is not None:
            from anima.iis.training.measure import metrics_from_results

            metrics = metrics_from_results(args.from_results)
            extras["mode"] = f"from results in {args.from_results}"
        else:
            import torch

            torch.set_num_threads(max(1, args.threads))
            from anima.iis.training.measure import MeasureOptions, measure_all

            opts = MeasureOptions(judge=_judge_config(args.judge_url, args.judge_model, args.judge_timeout_s),
                                  talker_clips=args.talker_clips, face_minutes=args.face_minutes,
                                  body_streams=args.body_streams, render_frames=args.render_frames,
                                  progress=not args.quiet, world=args.world)
            if args.suite is not None:
                opts.suite = args.suite
            metrics, extras = measure_all(opts)
            extras["mode"] = "measured now"
        report = iis(metrics)
    except (FileNotFoundError, ScoreError, ValueError) as exc:
        return _error(str(exc))
    report["extras"] = extras
    report["wall_s"] = round(time.perf_counter() - start, 1)
    from anima.iis.score import format_report

    print(format_report(report))
    refs = _references(extras)
    if refs:
        print("\nreference rows (same formula, same data):")
        print("\n".join(refs))
    for name, error in extras.get("errors", {}).items():
        print(f"  {name}: measurement failed: {error}")
    if extras.get("timings_s"):
        print("\ntime per module (s): " + ", ".join(f"{k} {v}" for k, v in extras["timings_s"].items()))
    print(f"wall time: {report['wall_s']} s")
    plot = draw_radar(report, args.plot)
    print(f"radar plot: {plot}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=float))
        print(f"report: {args.json}")
    return 0


def _characterbox(args: argparse.Namespace) -> int:
    from anima.thinker.training.evaluate import SuiteError, load_suites
    from anima.thinker.training.judge import CharacterBoxJudge, format_characterbox, run_characterbox
    from anima.thinker.world import World, WorldError

    config = _judge_config(args.judge_url, args.judge_model, args.judge_timeout_s)
    if config is None:
        print("no judge: CB not measured (give --judge-url URL of an OpenAI-compatible server)")
        return 2
    try:
        suites = load_suites(args.suite)
        world = World.open(args.world, readonly=True) if args.world else World.open_default(readonly=True)
        judge = CharacterBoxJudge(config)
    except (SuiteError, WorldError, ValueError) as exc:
        return _error(str(exc))
    items = [i for v in suites.values() for i in v][:args.limit]
    report = run_characterbox(items, world, judge, progress=not args.quiet)
    print(format_characterbox(report))
    for failure in report["failed"][:5]:
        print(f"  not judged: {failure['id']}: {failure['error']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
        print(f"report: {args.json}")
    return 0 if report["cb"] is not None else 1


def add_eval_commands(eval_sub) -> None:
    """Add ``iis`` and ``characterbox`` to the ``anima eval`` sub-command group."""
    from anima.iis.paths import DEFAULT_SUITE, RESULTS

    p = eval_sub.add_parser("iis", help="Interactive Intelligence Score: all five modules, paper 7.7 (docs/iis.md)",
                            description="Run each module's own evaluation on small samples (or read their results) and "
                                        "combine them with the paper's formulas; metrics that cannot be computed "
                                        "offline are named and their weight redistributed.")
    p.add_argument("--json", type=Path, default=None, help="write the full report as JSON")
    p.add_argument("--plot", type=Path, default=Path("out/iis/iis_radar.png"), help="radar plot PNG (default out/iis/iis_radar.png)")
    p.add_argument("--from-results", type=Path, nargs="?", const=RESULTS, default=None, metavar="DIR",
                   help=f"read the modules' latest results files instead of running them (default DIR: {RESULTS})")
    p.add_argument("--judge-url", default=None, help="OpenAI-compatible server for the CharacterBox judge (CB)")
    p.add_argument("--judge-model", default=None, help="judge model name")
    p.add_argument("--judge-timeout-s", type=float, default=60.0, help="per-request timeout of the judge")
    p.add_argument("--suite", type=Path, default=None, help=f"thinker suite directory (default {DEFAULT_SUITE.name})")
    p.add_argument("--world", type=Path, default=None, help="world database (default: the shipped one)")
    p.add_argument("--talker-clips", type=int, default=20, help="test-split clips for the talker (default 20)")
    p.add_argument("--face-minutes", type=float, default=4.0, help="minutes of new synthetic dialogue for the face (default 4)")
    p.add_argument("--body-streams", type=int, default=16, help="body transition streams (default 16)")
    p.add_argument("--render-frames", type=int, default=100, help="rendered frames for SSIM (default 100)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_iis)

    c = eval_sub.add_parser("characterbox", help="CharacterBox-style LLM judge (KA BA EE PT IM AD BC, 1-5)",
                            description="Answer suite questions with the story thinker and have an LLM judge score each "
                                        "reply on the seven CharacterBox dimensions.")
    c.add_argument("--judge-url", default=None, help="OpenAI-compatible server of the judge (required)")
    c.add_argument("--judge-model", default=None, help="judge model name")
    c.add_argument("--judge-timeout-s", type=float, default=60.0, help="per-request timeout")
    c.add_argument("--suite", type=Path, default=DEFAULT_SUITE, help=f"suite directory (default {DEFAULT_SUITE.name})")
    c.add_argument("--world", type=Path, default=None, help="world database (default: the shipped one)")
    c.add_argument("--limit", type=int, default=None, help="judge at most this many items")
    c.add_argument("--json", type=Path, default=None, help="write every item's scores and reasons as JSON")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_characterbox)
