"""``anima talker ...``: the neural Talker's corpus (and, as they land, its training and tools).

    anima talker build-corpus [--hours 5] [--out out/talker/corpus] [--seed 0] [--jobs 1] [--quiet]

Each subcommand is added by one ``_add_*`` function listed in ``SUBCOMMANDS``; its handler imports
what it needs when it runs, so ``anima --help`` loads neither torch nor the speech engines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _build_corpus(args: argparse.Namespace) -> int:
    from anima.talker.data.corpus import build_corpus
    from anima.talker.data.sentences import DEFAULT_NOVEL

    try:
        summary = build_corpus(args.out, args.hours, args.novel or DEFAULT_NOVEL, args.seed, args.jobs, args.quiet)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        return _error(str(exc))
    print(json.dumps(summary, indent=2))
    return 0


def _add_build_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-corpus", help="synthesise the speech corpus (espeak-ng voices + Piper, with phoneme timings)",
                       description="Speak the novel's sentences in 12 espeak-ng training voices, the Piper voice and 3 "
                                   "held-out voices with emotion-conditioned prosody; 24 kHz WAVs, a manifest with "
                                   "phoneme timings, splits by sentence. Resumable: re-running continues the build.")
    p.add_argument("--hours", type=float, default=5.0, help="hours of training-voice audio (default 5; held-out voices add 4.5%%)")
    p.add_argument("--out", type=Path, default=Path("out/talker/corpus"), help="corpus folder (default out/talker/corpus)")
    p.add_argument("--novel", type=Path, default=None, help="folder of chapter .txt files (default: the shared novel)")
    p.add_argument("--seed", type=int, default=0, help="voice/emotion/prosody choices (the split does not depend on it)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_build_corpus)


# Add a subcommand: write ``_add_NAME(sub)`` (parser + ``set_defaults(func=handler)``) and list it here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_build_corpus]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``anima talker ...`` to the top-level parser."""
    talker = subparsers.add_parser("talker", help="neural Talker: speech corpus, tokenizer, TTS",
                                   description="The neural Talker (speech tokenizer + TTS). See issue 12.")
    sub = talker.add_subparsers(dest="talker_command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
