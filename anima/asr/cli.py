"""``anima listen FILE.wav [--character C]``: print the transcript of a recording (offline, PocketSphinx)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("listen", help="transcribe a WAV file offline (PocketSphinx)",
                       description="Print the transcript of a recording (any sample rate; stereo is mixed down). "
                                   "The recogniser is adapted to the character's world unless --plain.")
    p.add_argument("audio", type=Path, help="audio file (WAV, FLAC, OGG)")
    p.add_argument("--character", default=None, help="adapt to this persona's world (nemo, aronnax, conseil, ned; default: all)")
    p.add_argument("--world", type=Path, default=None, help="world database (default: the shipped one)")
    p.add_argument("--plain", action="store_true", help="no domain adaptation (PocketSphinx's general English model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anima.asr import load_recognizer
    from anima.asr.base import read_audio
    from anima.thinker.persona import PersonaError

    try:
        samples, rate = read_audio(args.audio)
        recognizer = load_recognizer("pocketsphinx", character=args.character, world=args.world, adapt=not args.plain)
        text = recognizer.transcribe(samples, rate)
    except (ValueError, PersonaError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0
