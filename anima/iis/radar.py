"""The IIS radar plot (PNG), drawn with Pillow (matplotlib is not a dependency).

    draw_radar(report, "docs/img/iis_radar.png")   # report = anima.iis.score.iis(...)

One axis per dimension (0-100, rings every 20); the measured polygon, and the paper's own full-system
S_cog for reference where given. A dimension with nothing measured is drawn at 0 and labelled "n/m".
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from anima.iis.score import DIMENSION_NAMES, DIMENSIONS

SIZE = 640


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def draw_radar(report: dict, path: str | Path, title: str = "Interactive Intelligence Score") -> Path:
    """Write the radar of ``report``'s five dimension scores to ``path``; returns the path."""
    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    cx, cy, radius = SIZE / 2, SIZE / 2 + 30, SIZE * 0.29
    n = len(DIMENSIONS)

    def point(i: int, value: float, clip: bool = True) -> tuple[float, float]:
        angle = -math.pi / 2 + 2 * math.pi * i / n
        r = radius * (max(0.0, min(100.0, value)) if clip else value) / 100.0
        return cx + r * math.cos(angle), cy + r * math.sin(angle)

    small, big = _font(13), _font(18)
    for ring in (20, 40, 60, 80, 100):
        draw.polygon([point(i, ring) for i in range(n)], outline=(210, 210, 210))
        x, y = point(0, ring)
        draw.text((x + 5, y), str(ring), fill=(150, 150, 150), font=small, anchor="ld")
    for i, dim in enumerate(DIMENSIONS):
        draw.line([point(i, 0), point(i, 100)], fill=(200, 200, 200))
        score = report["dimensions"][dim]["score"]
        x, y = point(i, 125, clip=False)
        label = f"{DIMENSION_NAMES[dim]}\n{'n/m' if score is None else f'{score:.1f}'}"
        draw.multiline_text((x, y), label, fill=(40, 40, 40), font=small, anchor="mm", align="center")  # outside the 100 ring
    values = [report["dimensions"][d]["score"] or 0.0 for d in DIMENSIONS]
    poly = [point(i, v) for i, v in enumerate(values)]
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(overlay).polygon(poly, fill=(40, 110, 200, 70))
    image.paste(overlay, (0, 0), overlay)
    draw = ImageDraw.Draw(image)
    draw.line(poly + [poly[0]], fill=(40, 110, 200), width=3)
    for p in poly:
        draw.ellipse([p[0] - 4, p[1] - 4, p[0] + 4, p[1] + 4], fill=(40, 110, 200))
    total = report.get("iis")
    draw.text((SIZE / 2, 18), title, fill=(0, 0, 0), font=big, anchor="mt")
    paper = report.get("paper", {})
    sub = (f"IIS {'n/m' if total is None else f'{total:.1f}'} (this system, offline substitutes: docs/iis.md)   "
           f"paper: {paper.get('iis', '-')} / {paper.get('iis_conclusion', '-')}")
    draw.text((SIZE / 2, 44), sub, fill=(60, 60, 60), font=small, anchor="mt")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
