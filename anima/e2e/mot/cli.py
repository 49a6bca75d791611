"""``anima mot ...``: the mixture of transformers (docs/mot.md).

    anima mot data --tokenizer DIR --speaker DIR [--dialogues out/dialogues] [--out out/mot/data]
    anima mot train --speech DIR --out DIR [--mode expert|dense|lora] [--steps N] ...
    anima mot eval --mot DIR [--parts lip commands schedules guidance speech] [--json OUT]
    anima mot say "TEXT" -o say.wav [--voice V] [--emotion E] [--schedule pyramid] [--steps 10]
    anima mot command nod -o nod.npz

``say`` writes the speech and, beside it (``.npz``), the face (T25, 112) and body (T20, 263) it
generated with it; ``command`` writes the behaviour of a silent command. Weights: ``--weights``
(default ``ANIMA_MOT_WEIGHTS`` or the shipped folder) over ``--talker`` (default ``ANIMA_TALKER_WEIGHTS``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anima.subcommands import add_passthrough


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _agent(args: argparse.Namespace):
    from anima.e2e.mot.engine import MoTAgent
    from anima.e2e.mot.sampling import SamplerSettings

    settings = SamplerSettings(schedule=args.schedule, steps=args.steps, guidance=args.guidance)
    return MoTAgent.load(args.weights, args.talker, voice=args.voice, seed=args.seed, settings=settings)


def _say(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile as sf

    try:
        agent = _agent(args)
        chunks = list(agent.talker.stream(args.text, emotion=args.emotion))
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc))
    from anima.e2e.mot.behaviour import resample

    track = agent.tracks[chunks[0].events[0].text]
    audio = np.concatenate([c.samples for c in chunks])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(args.output), audio, 24000)
    face, body = np.stack(track.face), resample(np.stack(track.body), 25, 20)
    np.savez(args.output.with_suffix(".npz"), face=face, body263=body)
    print(f"{args.output}: {audio.size / 24000:.2f} s of speech; {args.output.with_suffix('.npz')}: face {face.shape}, "
          f"body263 {body.shape}; behaviour {agent.stats.seconds:.2f} s of compute")
    return 0


def _command(args: argparse.Namespace) -> int:
    import numpy as np

    from anima.e2e.mot.commands import COMMANDS

    if args.command not in COMMANDS:
        return _error(f"unknown command {args.command!r}; choose one of {', '.join(COMMANDS)}")
    try:
        agent = _agent(args)
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc))
    from anima.e2e.mot.behaviour import resample

    track = agent.command(args.command, 0.0)
    face, body = np.stack(track.face), resample(np.stack(track.body), 25, 20)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.output, face=face, body263=body)
    print(f"{args.output}: face {face.shape}, body263 {body.shape}")
    return 0


def _add_generation(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, default=None, help="MoT weights folder (default ANIMA_MOT_WEIGHTS or shipped)")
    p.add_argument("--talker", type=Path, default=None, help="Kodama talker folder of its speech expert")
    p.add_argument("--voice", default=None, help="a voice of the talker's bank (default: its default voice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedule", default="pyramid", choices=("uniform", "pyramid", "autoregressive"))
    p.add_argument("--steps", type=int, default=10, help="denoising steps (the paper: 50)")
    p.add_argument("--guidance", default="vanilla", choices=("none", "vanilla", "history"))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``anima mot ...`` to the top-level parser."""
    mot = subparsers.add_parser("mot", help="mixture of transformers: speech + face + body from one model",
                                description="HumanExpert's mixture of transformers. See docs/mot.md.")
    sub = mot.add_subparsers(dest="mot_command", required=True)
    for name, module, text in (("data", "anima.e2e.mot.training.data", "build the training data from the dialogue corpus"),
                               ("train", "anima.e2e.mot.training.train", "train the behaviour expert (or an ablation)"),
                               ("eval", "anima.e2e.mot.training.evaluate", "lip sync, commands, schedules, guidance, speech")):
        add_passthrough(sub, name, module, f"anima mot {name}", text)
    p = sub.add_parser("say", help="text -> speech (WAV) + the face and body that go with it (NPZ)")
    p.add_argument("text")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--emotion", default=None)
    _add_generation(p)
    p.set_defaults(func=_say)
    p = sub.add_parser("command", help="a silent command -> face and body (NPZ)")
    p.add_argument("command", help="nod, shake, blink, look_left, look_right, look_up, look_down, bow, wave")
    p.add_argument("-o", "--output", type=Path, required=True)
    _add_generation(p)
    p.set_defaults(func=_command)
