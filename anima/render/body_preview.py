"""Render a body stream whose prompt changes every few seconds to an MP4 (and a contact sheet).

    anima body render-stream -o out/body/stream.mp4 [--prompts bow bye guide ...] [--every 3.5]
    python -m anima.render.body_preview -o out/body/stream.mp4

The body is ``FloodBody`` with the shipped weights unless ``--body procedural``; frames go through
``VideoRateBody`` (20 -> 25 fps) and the foundation's ``CharacterRenderer`` with a neutral face;
the caption shows the active prompt. A contact sheet PNG of frames around each prompt change is
written next to the MP4.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from anima.body.base import BodyAnimator, VideoRateBody
from anima.body.text import prompt_for_gesture

DEFAULT_PROMPTS = ("bow", "bye", "guide", "respond", "walk", "call", "")


def render_stream(body: BodyAnimator, out: str | Path, prompts: list[str], every_s: list[float], fps: int = 25,
                  width: int = 960, height: int = 540) -> tuple[Path, list[float]]:
    """Push ``prompts[i]`` at the cumulative times of ``every_s`` and render. Returns (mp4, change times)."""
    from anima.face.params import neutral
    from anima.render.character import CharacterRenderer, Overlay
    from anima.render.mp4 import MP4Writer

    starts = list(np.cumsum([0.0] + list(every_s[:-1])))
    total_s = float(sum(every_s))
    renderer = CharacterRenderer(width, height)
    video = VideoRateBody(body)
    face = neutral()
    writer = MP4Writer(out, width, height, fps=fps)
    pending = list(zip(starts, prompts, strict=True))
    caption = ""
    try:
        for k in range(int(round(total_s * fps))):
            t = k / fps
            while pending and pending[0][0] <= t + 1e-9:
                start, prompt = pending.pop(0)
                body.push_prompt(prompt, start)
                caption = f"prompt: {prompt_for_gesture(prompt) or 'idle'}"
            joints = video.frame_at(t)
            writer.write(renderer.draw(joints, face, Overlay(time_s=t, caption=caption, agent_name="FloodDiffusion")))
    except BaseException:
        writer.abort()
        raise
    return writer.close(), starts[1:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="anima body render-stream", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, default=Path("out/body/stream.mp4"))
    p.add_argument("--prompts", nargs="+", default=list(DEFAULT_PROMPTS), help="gesture names or texts ('' = idle)")
    p.add_argument("--every", type=float, nargs="+", default=[3.0, 4.0], help="seconds per prompt, cycled (default 3 4)")
    p.add_argument("--body", choices=("flood", "procedural"), default="flood")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", type=Path, default=None, help="weights folder with vae/ and flood/ (default: shipped)")


def run(args: argparse.Namespace) -> int:
    import torch

    from anima.render.preview import contact_sheet

    torch.set_num_threads(1)
    if args.body == "flood":
        from anima.body.flood import WEIGHTS, FloodBody

        body = FloodBody.load(seed=args.seed, weights=args.weights or WEIGHTS)
    else:
        from anima.body.procedural import ProceduralBody

        body = ProceduralBody(seed=args.seed)
    every = [args.every[i % len(args.every)] for i in range(len(args.prompts))]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    mp4, changes = render_stream(body, args.output, args.prompts, every)
    times = sorted({round(t + d, 2) for t in changes for d in (-0.4, 0.0, 0.4, 0.8)})
    sheet = contact_sheet(mp4, times, mp4.with_suffix(".png"), columns=4, thumb_width=320)
    print(f"wrote {mp4} ({sum(every):.1f} s, prompt changes at {', '.join(f'{t:.1f}' for t in changes)} s) and {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
