"""``anima duplex ...``: the end-to-end duplex decoder (docs/duplex.md).

    anima duplex data [--dialogues out/dialogues] [--out out/duplex/data] --tokenizer DIR
    anima duplex train-motion --dialogues out/dialogues --out out/duplex/runs/motion --steps N
    anima duplex train --stage audio|av --out DIR ... (resumable, torchrun-ready)
    anima duplex eval --weights DIR [--split test] [--json OUT]
    anima duplex listen USER.wav -o OUT.wav [--character ned] [--seed 0]

``listen`` plays a recording of the user into the decoder, 80 ms at a time as a live session would,
and writes what the agent answered: OUT.wav (stereo: user left, agent right) and, beside it
(``.npz``), the face (T25, 112) and joints (T25, 22, 3) it showed. Weights: ``--weights`` (default
``ANIMA_DUPLEX_WEIGHTS`` or the shipped folder) with ``--talker`` (default ``ANIMA_TALKER_WEIGHTS``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anima.subcommands import add_passthrough


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _listen(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile as sf
    import torch

    from anima.core.audio import load_wav
    from anima.e2e.duplex.engine import DEFAULT_WEIGHTS, STEP_SAMPLES, DuplexAgent, is_speech

    torch.set_num_threads(args.threads)
    try:
        user = load_wav(str(args.input))  # any rate in, 24 kHz mono float32 out
        agent = DuplexAgent.load(args.weights or DEFAULT_WEIGHTS, args.talker, character=args.character, seed=args.seed,
                                 temperature=args.temperature)
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc))
    steps = -(-user.size // STEP_SAMPLES) + 1  # one more step: the delay holds the last frame back
    user = np.pad(user, (0, steps * STEP_SAMPLES - user.size))
    audio, face, joints = [], [], []
    for i in range(steps):
        chunk = user[i * STEP_SAMPLES:(i + 1) * STEP_SAMPLES]
        agent.user_speaking = is_speech(chunk)
        result = agent.step(chunk)
        agent.agent_speaking = is_speech(result.audio)
        audio.append(result.audio)
        face.append(result.face)
        joints.append(result.joints)
    # The agent's audio of step i is its frame i - 1: shift it back one step to line up with the user.
    agent_audio = np.concatenate(audio)[STEP_SAMPLES:]
    n = min(agent_audio.size, user.size)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(args.output), np.stack([user[:n], agent_audio[:n]], axis=1), 24_000)
    np.savez(args.output.with_suffix(".npz"), face=np.concatenate(face)[2:], joints=np.concatenate(joints)[2:])
    print(f"wrote {args.output} ({n / 24_000:.1f} s, user left, agent right) and {args.output.with_suffix('.npz')}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``anima duplex ...`` to the top-level parser."""
    duplex = subparsers.add_parser("duplex", help="end-to-end duplex decoder: hears the user, writes voice, face and body",
                                   description="Body of Her's end-to-end duplex decoder. See docs/duplex.md.")
    sub = duplex.add_subparsers(dest="duplex_command", required=True)
    for name, module, text in (("data", "anima.e2e.duplex.training.data", "both parties' speech codes + motion per 80 ms step"),
                               ("train-motion", "anima.e2e.duplex.training.train_motion", "train the motion codec"),
                               ("train", "anima.e2e.duplex.training.train", "train the decoder (stage audio, then av)"),
                               ("eval", "anima.e2e.duplex.training.evaluate", "turn-taking, motion, speech, speed")):
        add_passthrough(sub, name, module, f"anima duplex {name}", text)
    p = sub.add_parser("listen", help="a user recording in, the agent's answer out (stereo WAV + face/body NPZ)")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--character", default=None, help="the identity to play (a persona key the decoder knows)")
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--talker", type=Path, default=None, help="talker weights (its tokenizer/); default ANIMA_TALKER_WEIGHTS")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_listen)
