"""Renderer: turns body joints, face parameters and speech audio into pixels and MP4 files.

The embedded default is a software renderer (``CharacterRenderer``: a stylised full body plus a
face close-up, 25 fps on one CPU core) and an H.264 + AAC writer (``MP4Writer``); ``probe`` checks
what a written file really holds.
"""

from anima.render.character import CharacterRenderer, Overlay
from anima.render.mp4 import MP4Writer, probe

__all__ = ["CharacterRenderer", "MP4Writer", "Overlay", "probe"]
