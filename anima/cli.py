"""The ``anima`` command line.

    anima demo                         render the shipped conversation, print where the MP4 is
    anima render CONVERSATION.yaml -o out.mp4 [--realtime] [--width W --height H] [--seed N]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

from anima import __version__
from anima.registry import add_backend_arguments

# Modules that add their own subcommands with ``register(subparsers)``; each sets ``func`` on its
# parsers (called with the parsed args, returns the exit code).
COMMAND_MODULES = ("anima.body.cli", "anima.face.cli", "anima.thinker.cli", "anima.serve.cli", "anima.talker.cli", "anima.asr.cli",
                   "anima.e2e.cli", "anima.e2e.mot.cli", "anima.e2e.duplex.cli")


def _add_render_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--realtime", action="store_true", help="pace by the wall clock (as a live session would)")
    p.add_argument("--width", type=int, default=960, help="video width in pixels (default 960)")
    p.add_argument("--height", type=int, default=540, help="video height in pixels (default 540)")
    p.add_argument("--seed", type=int, default=None, help="random seed for idle motion (default: the file's)")
    p.add_argument("--character", default="nemo", help="story thinker: persona (nemo, aronnax, conseil, ned)")
    p.add_argument("--story-time", type=int, default=None, help="story thinker: the character's present chapter (1-47)")
    p.add_argument("--world", type=Path, default=None, help="story thinker: world database (default: the shipped one)")
    add_backend_arguments(p, body_default="flood", thinker=True)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report", type=Path, default=None, help="also write the session report as JSON here")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anima", description="Real-time, full-duplex interactive digital humans.")
    parser.add_argument("--version", action="version", version=f"anima {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render a two-party conversation file to MP4",
                            description="Render a conversation (YAML: user turns as text or WAV, agent replies, optional barge-in times) to an MP4 with video and mixed audio.")
    render.add_argument("conversation", type=Path, help="conversation YAML file")
    render.add_argument("-o", "--output", type=Path, required=True, help="output MP4 path")
    _add_render_options(render)

    demo = sub.add_parser("demo", help="render the shipped example conversation",
                          description="Render the shipped Nautilus conversation (4 agent turns, one barge-in) and print the MP4's path.")
    demo.add_argument("-o", "--output", type=Path, default=Path("out/demo.mp4"), help="output MP4 path (default out/demo.mp4)")
    _add_render_options(demo)
    for module in COMMAND_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(sub)
    return parser


def _summary(result, out: Path) -> dict:
    m = result.metrics
    return {
        "output": str(out),
        "media_s": round(result.media_s, 3),
        "wall_s": round(result.wall_s, 3),
        "rtf": round(result.rtf, 3),
        "reply_latency_s": [round(x, 3) for x in m.reply_latency_s],
        "barge_in_latency_s": [round(x, 3) for x in m.barge_in_latency_s],
        "underrun_ticks": m.underrun_ticks,
        "late_ticks": m.late_ticks,
        "history": [{"speaker": t.speaker, "text": t.text, "interrupted": t.interrupted} for t in result.history.turns],
        "errors": result.errors,
    }


def _render(args: argparse.Namespace, conversation: Path) -> int:
    from anima.cascade import CascadeOptions, render_conversation
    from anima.core.conversation import ConversationError
    from anima.core.session import SessionError

    options = CascadeOptions(thinker=args.thinker, face=args.face, body=args.body, talker=args.talker, engine=args.engine, width=args.width,
                             height=args.height, realtime=args.realtime, seed=args.seed, character=args.character,
                             story_time=args.story_time, world=args.world)
    if args.width < 320 or args.height < 240 or args.width % 2 or args.height % 2:
        print("error: --width/--height must be even and at least 320x240", file=sys.stderr)
        return 2
    if args.output.suffix.lower() != ".mp4":
        print(f"error: output must be an .mp4 file, got {args.output}", file=sys.stderr)
        return 2
    try:
        result = render_conversation(conversation, args.output, options, progress=not args.quiet)
    except (ConversationError, ValueError, FileNotFoundError) as exc:  # bad input, or weights a backend needs are missing
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SessionError as exc:  # a stage failed for good: the render stopped there
        print(f"error: {exc} (after {exc.result.media_s:.1f} s of media)", file=sys.stderr)
        return 1
    summary = _summary(result, args.output)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(summary, indent=2))
    for err in result.errors:
        print(f"warning: {err}", file=sys.stderr)
    agent_turns = sum(1 for t in result.history.turns if t.speaker == "agent")
    print(f"wrote {args.output} ({result.media_s:.1f} s, {agent_turns} agent turns, rendered at {result.rtf:.2f}x real time)")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    match args.command:
        case "render":
            return _render(args, args.conversation)
        case "demo":
            from anima.cascade import demo_conversation_path

            return _render(args, demo_conversation_path())
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
