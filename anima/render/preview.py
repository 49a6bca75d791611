"""Stills and GIFs of rendered video, for READMEs, reports and eyeballing a renderer change.

    python -m anima.render.preview sheet demo.mp4 sheet.png 0.5 2 4 8   # contact sheet at those times
    python -m anima.render.preview gif demo.mp4 demo.gif 3.0 4.0          # 4 s GIF from 3 s in
    python -m anima.render.preview poses poses.png                       # sample poses of the renderer
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from anima.render.character import CharacterRenderer, Overlay, load_font
from anima.render.mp4 import probe, read_frames


def contact_sheet(mp4_path: str | Path, times_s: Sequence[float], out_png: str | Path, columns: int = 4,
                  thumb_width: int = 480) -> Path:
    """Write a grid of the frames nearest to ``times_s``, each labelled with its time.

    Args:
        mp4_path: the video to sample.
        times_s: times in seconds, in reading order.
        out_png: where the PNG goes.
        columns: frames per row.
        thumb_width: width of each frame in the sheet (aspect kept).

    Returns:
        The PNG's path.
    """
    if not times_s:
        raise ValueError("contact_sheet: times_s is empty")
    if columns < 1:
        raise ValueError(f"contact_sheet: columns must be >= 1, got {columns}")
    frames = read_frames(mp4_path, times_s)
    h, w = frames[0].shape[:2]
    tw, th = thumb_width, round(h * thumb_width / w)
    rows = (len(frames) + columns - 1) // columns
    gap = 4
    sheet = Image.new("RGB", (columns * tw + (columns + 1) * gap, rows * th + (rows + 1) * gap), (16, 18, 24))
    font = load_font(max(10, th // 16), bold=True)
    for i, (t, frame) in enumerate(zip(times_s, frames, strict=True)):
        thumb = Image.fromarray(frame).resize((tw, th), Image.Resampling.LANCZOS)
        draw = ImageDraw.Draw(thumb)
        label = f"t = {float(t):.2f} s"
        box = draw.textbbox((8, th - 8), label, font=font, anchor="ld")
        draw.rectangle([box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3], fill=(0, 0, 0))
        draw.text((8, th - 8), label, font=font, anchor="ld", fill=(255, 230, 120))
        sheet.paste(thumb, (gap + (i % columns) * (tw + gap), gap + (i // columns) * (th + gap)))
    out = Path(out_png)
    sheet.save(out)
    return out


def make_gif(mp4_path: str | Path, out_gif: str | Path, start_s: float, duration_s: float, fps: int = 10,
             width: int = 480) -> Path:
    """Write an animated GIF of ``duration_s`` seconds from ``start_s``, resampled to ``fps`` and ``width``.

    Returns:
        The GIF's path.
    """
    if duration_s <= 0 or fps <= 0 or width <= 0:
        raise ValueError(f"make_gif: duration_s, fps and width must be positive, got {duration_s}, {fps}, {width}")
    info = probe(mp4_path)
    end = min(start_s + duration_s, info.duration_s)
    times = list(np.arange(start_s, end, 1.0 / fps)) or [start_s]
    frames = read_frames(mp4_path, times)
    height = round(frames[0].shape[0] * width / frames[0].shape[1])
    images = [Image.fromarray(f).resize((width, height), Image.Resampling.LANCZOS) for f in frames]
    # One adaptive palette per frame keeps skin and UI colours right; the GIF stays small at 480 px.
    paletted = [im.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for im in images]
    out = Path(out_gif)
    paletted[0].save(out, save_all=True, append_images=paletted[1:], duration=round(1000 / fps), loop=0,
                     optimize=False, disposal=1)
    return out


def pose_sheet(out_png: str | Path, width: int = 960, height: int = 540) -> Path:
    """Render six sample poses (neutral, vowel, m/b/p, blink, smile, turned head) on one 2x3 sheet."""
    from anima.body.skeleton import JOINT, REST_JOINTS
    from anima.face.params import ARKIT_INDEX, ArkitPose, from_arkit, neutral, set_weights

    def face(weights: dict[str, float], jaw: float = 0.0, head=(0.0, 0.0, 0.0), gaze=(0.0, 0.0)) -> np.ndarray:
        w = np.zeros(52, np.float32)
        w[ARKIT_INDEX["jawOpen"]] = jaw
        eyes = np.array(gaze, np.float32)
        return set_weights(from_arkit(ArkitPose(w, np.array(head, np.float32), eyes, eyes.copy())), weights)

    waving = REST_JOINTS.copy()
    waving[JOINT["left_elbow"]] = [0.32, 1.25, 0.12]
    waving[JOINT["left_wrist"]] = [0.30, 1.50, 0.20]
    long_caption = ("I was wondering whether you could tell me a very long story about the history of the "
                    "Roman empire and its many emperors")
    poses = [
        ("neutral", REST_JOINTS, neutral(), Overlay()),
        ("vowel 'a'", REST_JOINTS, face({"mouthLowerDownLeft": 0.4, "mouthLowerDownRight": 0.4}, jaw=0.9),
         Overlay(speaker="agent", agent_state="speaking", caption="Hello! How can I help you today?", agent_level=0.8)),
        ("m/b/p", REST_JOINTS, face({"mouthClose": 1.0, "mouthPressLeft": 0.6, "mouthPressRight": 0.6}),
         Overlay(speaker="agent", agent_state="speaking", caption="mmm, maybe", agent_level=0.3)),
        ("blink", REST_JOINTS, face({"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0, "browInnerUp": 0.6}),
         Overlay(speaker="user", agent_state="listening", caption=long_caption, user_level=0.6)),
        ("smile", REST_JOINTS, face({"mouthSmileLeft": 0.9, "mouthSmileRight": 0.9, "cheekSquintLeft": 0.5,
                                     "cheekSquintRight": 0.5}, jaw=0.15), Overlay(agent_state="thinking")),
        ("head turned", waving, face({"browDownLeft": 0.7, "browDownRight": 0.7, "mouthFunnel": 0.7}, jaw=0.3,
                                     head=(0.15, 0.45, 0.2), gaze=(0.2, 0.4)),
         Overlay(speaker="agent", agent_state="speaking", caption="Over there?", agent_level=0.5)),
    ]
    renderer = CharacterRenderer(width, height)
    sheet = Image.new("RGB", (width * 2, height * 3))
    font = load_font(max(10, height // 27), bold=True)
    for i, (label, joints, params, overlay) in enumerate(poses):
        overlay.time_s = 1.5 * i
        tile = Image.fromarray(renderer.draw(joints, params, overlay))
        ImageDraw.Draw(tile).text((8, height - 8), label, font=font, anchor="ld", fill=(255, 230, 120))
        sheet.paste(tile, ((i % 2) * width, (i // 2) * height))
    out = Path(out_png)
    sheet.save(out)
    return out


def main(argv: Sequence[str]) -> None:
    """Command-line entry point; see the module docstring."""
    match list(argv):
        case ["sheet", mp4, png, *times]:
            print(contact_sheet(mp4, [float(t) for t in times] or [0.0], png))
        case ["gif", mp4, gif, start, duration]:
            print(make_gif(mp4, gif, float(start), float(duration)))
        case ["poses", png]:
            print(pose_sheet(png))
        case _:
            raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
