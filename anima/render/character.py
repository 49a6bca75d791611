"""The Renderer's embedded default: a flat-shaded software renderer for a stylised character.

One call to ``CharacterRenderer.draw`` turns one tick of animation (the 22 body joints and the
112-D face vector) plus an ``Overlay`` (who speaks, the agent's state, the subtitle) into one RGB
frame. The frame has two panels:

* left: the full body, an orthographic front view of the joints (the subject's left, +X, on the
  image's right) at a fixed scale where a standing 1.8 m person fills 80 % of the panel height;
* right: a large close-up of the face, driven by the ARKit view of the face vector
  (``anima.face.params.to_arkit``), under a header with the two speakers' name tags and level
  meters and the agent-state badge, above a caption box.

Why a software renderer: it has no GPU or browser dependency, so every test, demo and CI run can
produce real video. It meets 25 fps on one CPU core by drawing everything that never changes once
(``_build_static``), drawing the moving shapes at 2x and box-filtering them down (anti-aliasing
without per-pixel Python), and caching rendered text.

``python -m anima.render.preview poses out.png`` writes a sheet of sample poses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from anima.body.skeleton import JOINT, NUM_JOINTS, axis_angle_to_matrix
from anima.face.params import (
    ARKIT_INDEX,
    EYE_PITCH_MAX_RAD,
    EYE_YAW_MAX_RAD,
    FACE_DIM,
    ArkitPose,
    to_arkit,
)

SUPERSAMPLE = 2  # moving shapes are drawn at this factor and box-filtered down (anti-aliasing)
BODY_HEIGHT_M = 1.8  # the standing height that ...
BODY_FILL = 0.8  # ... fills this fraction of the body panel's height
AGENT_STATES = ("idle", "listening", "thinking", "speaking")
SPEAKERS = ("agent", "user")

Color = tuple[int, int, int]

# Flat palette.
BG_TOP: Color = (44, 52, 68)
BG_BOTTOM: Color = (26, 31, 42)
PANEL_TOP: Color = (58, 70, 92)
PANEL_BOTTOM: Color = (34, 41, 56)
FLOOR: Color = (70, 80, 100)
SHADOW: Color = (22, 26, 35)
SKIN: Color = (242, 203, 176)
SKIN_SHADE: Color = (214, 164, 138)
BLUSH: Color = (240, 176, 160)
HAIR: Color = (72, 52, 48)
SHIRT: Color = (62, 146, 170)
SHIRT_SHADE: Color = (48, 118, 140)
PANTS: Color = (60, 66, 96)
PANTS_SHADE: Color = (48, 53, 80)
SHOES: Color = (40, 36, 40)
LIPS: Color = (204, 112, 116)
MOUTH_INSIDE: Color = (70, 22, 36)
TONGUE: Color = (196, 92, 104)
TEETH: Color = (250, 248, 242)
EYE_WHITE: Color = (250, 250, 246)
IRIS: Color = (78, 124, 168)
PUPIL: Color = (24, 24, 32)
LASH: Color = (46, 36, 40)
TEXT: Color = (236, 240, 246)
TEXT_DIM: Color = (150, 160, 178)
CAPTION_BG: Color = (18, 22, 30)
TAG_BG: Color = (46, 54, 70)
METER_OFF: Color = (70, 80, 98)
SPEAKER_COLORS: dict[str, Color] = {"agent": (56, 190, 170), "user": (160, 124, 240)}
STATE_COLORS: dict[str, Color] = {
    "idle": (118, 128, 146),
    "listening": (66, 150, 230),
    "thinking": (236, 168, 48),
    "speaking": (72, 190, 112),
}


@dataclass
class Overlay:
    """What the frame shows besides the character: time, speakers, agent state and subtitle."""

    time_s: float = 0.0
    speaker: str | None = None  # "agent", "user" or None: who is speaking now
    agent_state: str = "idle"  # idle / listening / thinking / speaking
    caption: str = ""  # current subtitle (agent's words as heard, or the user's)
    agent_name: str = "Agent"
    user_name: str = "User"
    agent_level: float = 0.0  # 0..1 loudness of the agent this tick
    user_level: float = 0.0  # 0..1 loudness of the user this tick


@dataclass(frozen=True)
class Layout:
    """Pixel boxes (x0, y0, x1, y1) of the frame's parts, at output resolution."""

    width: int
    height: int
    body: tuple[int, int, int, int]  # left panel: the full body
    header: tuple[int, int, int, int]  # name tags, level meters, state badge
    face: tuple[int, int, int, int]  # the face close-up region (drawn at 2x)
    caption: tuple[int, int, int, int]  # subtitle box, inside the face region's bottom
    head_center: tuple[float, float]  # pixel position of the close-up head's centre
    face_unit: float  # pixels per face unit (the head is about 2 units tall)
    mouth_box: tuple[int, int, int, int]  # where the close-up's mouth can be (for tests and crops)

    @classmethod
    def for_size(cls, width: int, height: int) -> Layout:
        """Proportional layout; 960x540 is the reference."""
        split = round(width / 3)
        pad = max(4, round(height * 0.025))
        header_h = round(height * 0.115)
        caption_h = round(height * 0.15)
        face = (split, header_h, width, height)
        caption = (split + 2 * pad, height - pad - caption_h, width - 2 * pad, height - pad)
        # The head (hair top +1.2 units, chin -1.3 with the jaw open) sits between header and caption.
        free_h = caption[1] - face[1]
        unit = free_h / 2.85
        head_center = ((split + width) / 2, face[1] + 1.3 * unit)
        mx, my = head_center[0], head_center[1] + 0.52 * unit  # MOUTH_Y below the head centre
        mouth_box = (round(mx - 0.4 * unit), round(my - 0.2 * unit), round(mx + 0.4 * unit), round(my + 0.36 * unit))
        return cls(width, height, (0, 0, split, height), (split, 0, width, header_h), face, caption,
                   head_center, unit, mouth_box)


# ----------------------------------------------------------------------------------------------
# Small helpers


@functools.lru_cache(maxsize=16)
def load_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A readable sans font: DejaVu if installed, Pillow's bundled default otherwise."""
    for name in ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _text_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> float:
    return float(font.getlength(text))


def _gradient(width: int, height: int, top: Color, bottom: Color) -> Image.Image:
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    rows = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t  # (H, 1, 3)
    return Image.fromarray(np.repeat(rows, width, axis=1).round().astype(np.uint8), "RGB")


def _flat(points: np.ndarray) -> list[float]:
    """(N, 2) -> the flat coordinate list Pillow takes."""
    return points.ravel().tolist()


def _chaikin(points: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Corner-cutting smoothing of a closed polygon. (N, 2) -> (N * 2**iterations, 2)"""
    for _ in range(iterations):
        nxt = np.roll(points, -1, axis=0)
        points = np.stack([0.75 * points + 0.25 * nxt, 0.25 * points + 0.75 * nxt], axis=1).reshape(-1, 2)
    return points


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_width: float, max_lines: int) -> list[str]:
    """Greedy word wrap; when too long, keep the *last* lines (the newest words), marked with '…'."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        while _text_width(font, word) > max_width and len(word) > 1:  # split over-long words
            cut = len(word)
            while cut > 1 and _text_width(font, word[:cut]) > max_width:
                cut -= 1
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{current} {word}" if current else word
        if current and _text_width(font, candidate) > max_width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[-max_lines:]
        first = "… " + lines[0]
        while _text_width(font, first) > max_width and " " in first[2:]:
            first = "… " + first[2:].split(" ", 1)[1]
        lines[0] = first
    return lines


def _check_inputs(joints: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    joints = np.asarray(joints, dtype=np.float64)
    face = np.asarray(face, dtype=np.float32)
    if joints.shape != (NUM_JOINTS, 3):
        raise ValueError(f"joints: expected shape ({NUM_JOINTS}, 3), got {joints.shape}")
    if face.shape != (FACE_DIM,):
        raise ValueError(f"face: expected shape ({FACE_DIM},), got {face.shape}")
    if not np.all(np.isfinite(joints)):
        raise ValueError(f"joints: contains NaN or infinite values (shape {joints.shape})")
    if not np.all(np.isfinite(face)):
        raise ValueError(f"face: contains NaN or infinite values (shape {face.shape})")
    return joints, face


def _check_overlay(overlay: Overlay) -> None:
    if overlay.speaker is not None and overlay.speaker not in SPEAKERS:
        raise ValueError(f"overlay.speaker: expected 'agent', 'user' or None, got {overlay.speaker!r}")
    if overlay.agent_state not in AGENT_STATES:
        raise ValueError(f"overlay.agent_state: expected one of {AGENT_STATES}, got {overlay.agent_state!r}")


# ----------------------------------------------------------------------------------------------
# The face close-up geometry, in face units: x = subject's left (image right), y up, z to camera.

HEAD_PIVOT = np.array([0.0, -0.95, -0.15])  # the head turns about the top of the neck
FACE_SURFACE = (0.94, 1.06, 0.9)  # semi-axes of the ellipsoid the face features lie on
HAIR_CENTER = np.array([0.0, 0.2, -0.08])
HAIR_AXES = np.array([0.9, 0.98, 0.95])
EYE_X, EYE_Y, EYE_HALF_W = 0.31, 0.08, 0.165
MOUTH_Y = -0.52
_RING = np.linspace(0.0, 2 * np.pi, 20, endpoint=False)


def _face_outline() -> tuple[np.ndarray, np.ndarray]:
    """The skin region (hairline to chin) as a smoothed closed polygon, and each vertex's jaw weight."""
    half = np.array(
        [  # the subject's left half, from the forehead's middle round the temple down to the chin
            [0.0, 0.6], [0.2, 0.56], [0.5, 0.5], [0.7, 0.36], [0.78, 0.18], [0.79, -0.05],
            [0.76, -0.3], [0.68, -0.56], [0.52, -0.8], [0.3, -0.97], [0.0, -1.04],
        ]
    )
    left = half[1:-1][::-1] * [-1.0, 1.0]
    outline = _chaikin(np.concatenate([half, left]), iterations=2)
    # A side parting: the hairline dips a little right of centre.
    outline[:, 1] -= 0.06 * np.exp(-(((outline[:, 0] + 0.18) / 0.25) ** 2)) * (outline[:, 1] > 0.3)
    jaw_weight = np.clip((-0.25 - outline[:, 1]) / 0.7, 0.0, 1.0)
    return outline, jaw_weight


class _FaceProjector:
    """Lifts face-plane points onto the head ellipsoid, turns them with the head, projects to pixels."""

    def __init__(self, head: np.ndarray, center_px: tuple[float, float], unit_px: float) -> None:
        self.rotation = axis_angle_to_matrix(np.asarray(head, dtype=np.float64))  # (3, 3)
        self.center = np.asarray(center_px, dtype=np.float64)
        self.unit = unit_px

    def lift(self, xy: np.ndarray, depth: float | np.ndarray = 0.0) -> np.ndarray:
        a, b, c = FACE_SURFACE
        inside = 1.0 - (xy[:, 0] / a) ** 2 - (xy[:, 1] / b) ** 2
        z = c * np.sqrt(np.clip(inside, 0.02, None)) + depth
        return np.column_stack([xy, z])  # (N, 3)

    def project3(self, points: np.ndarray) -> np.ndarray:
        turned = (points - HEAD_PIVOT) @ self.rotation.T + HEAD_PIVOT  # (N, 3)
        return self.center + self.unit * turned[:, :2] * [1.0, -1.0]  # (N, 2) pixels, y down

    def __call__(self, xy: np.ndarray, depth: float | np.ndarray = 0.0) -> np.ndarray:
        return self.project3(self.lift(np.atleast_2d(xy), depth))

    def depth_of(self, point: np.ndarray) -> float:
        return float(((np.asarray(point) - HEAD_PIVOT) @ self.rotation.T)[2] + HEAD_PIVOT[2])

    def ellipsoid_silhouette(self, center: np.ndarray, axes: np.ndarray, n: int = 40) -> np.ndarray:
        """Outline of a turned ellipsoid seen along z: an ellipse. (n, 2) pixels."""
        a_mat = self.rotation @ np.diag(1.0 / axes**2) @ self.rotation.T  # x^T A x = 1 in view space
        m = a_mat[:2, :2] - np.outer(a_mat[:2, 2], a_mat[2, :2]) / a_mat[2, 2]  # Schur complement
        eigval, eigvec = np.linalg.eigh(m)
        phi = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
        ring = (eigvec * (1.0 / np.sqrt(eigval))) @ np.stack([np.cos(phi), np.sin(phi)])  # (2, n)
        mid = self.project3(center[None])[0]
        return mid + self.unit * ring.T * [1.0, -1.0]


@dataclass
class _FaceControls:
    """The ARKit weights the drawing uses, read once per frame. "l"/"r" = the subject's left/right."""

    blink: tuple[float, float]
    wide: tuple[float, float]
    squint: tuple[float, float]
    cheek: tuple[float, float]
    gaze: tuple[tuple[float, float], tuple[float, float]]  # (pitch, yaw) per eye, radians
    brow_inner: float
    brow_outer: tuple[float, float]
    brow_down: tuple[float, float]
    jaw: float
    jaw_side: float
    close: float
    press: float
    funnel: float
    pucker: float
    smile: tuple[float, float]
    frown: tuple[float, float]
    stretch: tuple[float, float]
    upper_up: float
    lower_down: float
    roll_upper: float
    roll_lower: float
    mouth_side: float

    @classmethod
    def from_pose(cls, pose: ArkitPose) -> _FaceControls:
        w = pose.blendshapes

        def pair(name: str) -> tuple[float, float]:
            return float(w[ARKIT_INDEX[name + "Left"]]), float(w[ARKIT_INDEX[name + "Right"]])

        def one(name: str) -> float:
            return float(w[ARKIT_INDEX[name]])

        return cls(
            blink=pair("eyeBlink"), wide=pair("eyeWide"), squint=pair("eyeSquint"), cheek=pair("cheekSquint"),
            gaze=((float(pose.left_eye[0]), float(pose.left_eye[1])), (float(pose.right_eye[0]), float(pose.right_eye[1]))),
            brow_inner=one("browInnerUp"), brow_outer=pair("browOuterUp"), brow_down=pair("browDown"),
            jaw=one("jawOpen"), jaw_side=one("jawLeft") - one("jawRight"), close=one("mouthClose"),
            press=0.5 * sum(pair("mouthPress")), funnel=one("mouthFunnel"), pucker=one("mouthPucker"),
            smile=pair("mouthSmile"), frown=pair("mouthFrown"), stretch=pair("mouthStretch"),
            upper_up=0.5 * sum(pair("mouthUpperUp")), lower_down=0.5 * sum(pair("mouthLowerDown")),
            roll_upper=one("mouthRollUpper"), roll_lower=one("mouthRollLower"),
            mouth_side=one("mouthLeft") - one("mouthRight"),
        )


@dataclass
class _MouthShape:
    """The mouth's curves in face units, each (N, 2) from the subject's right corner to the left."""

    upper_outer: np.ndarray
    upper_inner: np.ndarray
    lower_inner: np.ndarray
    lower_outer: np.ndarray
    gap: float  # lip opening at the centre, face units
    t: np.ndarray  # (N,) position along the mouth, -1 (right corner) .. 1 (left corner)


def _mouth_shape(c: _FaceControls, n: int = 21) -> _MouthShape:
    """Lip curves from the ARKit mouth weights: the jaw drops the lower lip, closure seals the lips."""
    t = np.linspace(-1.0, 1.0, n)
    left = t > 0  # the subject's left corner is at t = +1 (image right)
    roundness = max(c.funnel, c.pucker)

    def per_side(values: tuple[float, float]) -> np.ndarray:
        return np.where(left, values[0], values[1])

    smile, frown, stretch = per_side(c.smile), per_side(c.frown), per_side(c.stretch)
    half_width = (
        0.25 * (1 + 0.32 * stretch + 0.24 * smile + 0.05 * frown)
        * (1 - 0.42 * c.pucker - 0.3 * c.funnel) * (1 - 0.1 * c.jaw)
    )
    x = 0.08 * c.mouth_side + 0.05 * c.jaw_side * c.jaw + t * half_width
    corner_y = MOUTH_Y + 0.075 * smile - 0.065 * frown - 0.045 * c.jaw - 0.01 * stretch
    # Lip opening: the jaw and the lip raisers open it; mouthClose / mouthPress seal it (m, b, p).
    seal = max(c.close, c.press)
    gap = (0.34 * c.jaw + 0.05 * c.lower_down + 0.04 * c.upper_up + 0.07 * c.funnel) * (1 - seal)
    gap *= 1 - 0.6 * c.pucker * (1 - c.jaw)
    gap = max(0.0, gap)
    upper_mid = MOUTH_Y + 0.03 * c.upper_up + 0.15 * gap
    lower_mid = upper_mid - gap
    power = 0.75 - 0.25 * roundness  # rounder opening for funnel / pucker
    bulge = (1 - t**2) ** power
    upper_inner_y = corner_y + (upper_mid - corner_y) * bulge
    lower_inner_y = corner_y + (lower_mid - corner_y) * bulge
    # Lip thickness: pressed / rolled lips thin out, pursed lips thicken; a small cupid's bow on top.
    thick_up = 0.065 * (1 - 0.55 * c.press - 0.6 * c.roll_upper + 0.45 * roundness)
    thick_low = 0.085 * (1 - 0.5 * c.press - 0.6 * c.roll_lower + 0.45 * roundness)
    lip_profile = np.sqrt(1 - t**2)
    bow = 0.016 * np.exp(-(((np.abs(t) - 0.28) / 0.16) ** 2)) - 0.01 * np.exp(-((t / 0.1) ** 2))
    upper_outer_y = upper_inner_y + thick_up * lip_profile + bow * lip_profile
    lower_outer_y = lower_inner_y - thick_low * lip_profile

    def curve(y: np.ndarray) -> np.ndarray:
        return np.column_stack([x, y])

    return _MouthShape(curve(upper_outer_y), curve(upper_inner_y), curve(lower_inner_y), curve(lower_outer_y), gap, t)


# ----------------------------------------------------------------------------------------------
# The renderer


class CharacterRenderer:
    """Draws one frame (full body, face close-up, overlay) per call; see the module docstring.

    Args:
        width: output width in pixels.
        height: output height in pixels.
    """

    def __init__(self, width: int = 960, height: int = 540) -> None:
        if width < 320 or height < 180:
            raise ValueError(f"CharacterRenderer: size must be at least 320x180, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.layout = Layout.for_size(self.width, self.height)
        x0, y0, x1, y1 = self.layout.body
        self.body_scale = BODY_FILL * (y1 - y0) / BODY_HEIGHT_M  # pixels per metre at 1x, fixed
        self.floor_y = y0 + (y1 - y0) * (1 - (1 - BODY_FILL) * 0.45)
        self._face_outline, self._jaw_weight = _face_outline()
        self._fonts = {
            "caption": load_font(max(10, round(self.height * 0.04))),
            "tag": load_font(max(9, round(self.height * 0.03)), bold=True),
            "badge": load_font(max(9, round(self.height * 0.028)), bold=True),
            "time": load_font(max(8, round(self.height * 0.026))),
        }
        self._build_static()

    # -- public ---------------------------------------------------------------------------------

    def draw(self, joints: np.ndarray, face: np.ndarray, overlay: Overlay | None = None) -> np.ndarray:
        """Render one frame.

        Args:
            joints: (22, 3) joint positions in metres (HumanML3D order, Y up, facing +Z).
            face: (112,) face parameters (``anima.face.params`` layout).
            overlay: speakers, state and caption; a blank ``Overlay()`` when None.

        Returns:
            (height, width, 3) uint8 RGB image.

        Raises:
            ValueError: wrong shapes, NaN / inf values, or an unknown speaker / agent state.
        """
        joints, face = _check_inputs(joints, face)
        overlay = Overlay() if overlay is None else overlay
        _check_overlay(overlay)
        pose = to_arkit(face)
        controls = _FaceControls.from_pose(pose)
        frame = self._static.copy()
        s = SUPERSAMPLE

        body = self._body_bg.copy()
        self._draw_body(ImageDraw.Draw(body), joints, controls, pose.head)
        frame.paste(body.reduce(s), self.layout.body[:2])

        face_img = self._face_bg.copy()
        self._draw_face(ImageDraw.Draw(face_img), controls, pose.head)
        frame.paste(face_img.reduce(s), self._face_crop[:2])

        self._draw_overlay(frame, overlay)
        return np.array(frame)

    # -- static layers --------------------------------------------------------------------------

    def _build_static(self) -> None:
        """Draw everything that never moves once, at 2x, and keep the crops the moving parts use."""
        s, lay = SUPERSAMPLE, self.layout
        full = _gradient(self.width * s, self.height * s, BG_TOP, BG_BOTTOM)
        right = _gradient((lay.face[2] - lay.face[0]) * s, self.height * s, PANEL_TOP, PANEL_BOTTOM)
        full.paste(right, (lay.face[0] * s, 0))
        draw = ImageDraw.Draw(full)
        # The floor of the body panel.
        fy = self.floor_y * s
        draw.line([(lay.body[0] * s + 20 * s, fy), (lay.body[2] * s - 20 * s, fy)], fill=FLOOR, width=2 * s)
        draw.line([(lay.body[2] * s, 0), (lay.body[2] * s, self.height * s)], fill=BG_BOTTOM, width=2 * s)
        # The close-up's neck and shoulders do not move with the head, so they are static.
        cx, cy = lay.head_center[0] * s, lay.head_center[1] * s
        u = lay.face_unit * s
        shoulders = np.array([[-2.3, -2.0], [-1.9, -1.5], [-0.7, -1.22], [0.7, -1.22], [1.9, -1.5], [2.3, -2.0], [2.3, -3.2], [-2.3, -3.2]])
        to_px = np.array([cx, cy]) + u * _chaikin(shoulders, 2) * [1.0, -1.0]
        draw.polygon(_flat(to_px), fill=SHIRT)
        neck = np.array([[-0.3, -0.55], [0.3, -0.55], [0.33, -1.25], [0.0, -1.4], [-0.33, -1.25]])
        draw.polygon(_flat(np.array([cx, cy]) + u * neck * [1.0, -1.0]), fill=SKIN_SHADE)
        collar = np.array([[-0.5, -1.2], [0.0, -1.5], [0.5, -1.2]])
        draw.line(_flat(np.array([cx, cy]) + u * collar * [1.0, -1.0]), fill=SHIRT_SHADE, width=max(2, round(0.06 * u)), joint="curve")
        # Caption box.
        cap = [v * s for v in lay.caption]
        draw.rounded_rectangle(cap, radius=14 * s, fill=CAPTION_BG)
        self._static = full.reduce(s)
        self._full2x = full
        self._tiles: dict[tuple, Image.Image] = {}
        # The moving parts redraw over crops of the 2x background.
        self._body_bg = full.crop(tuple(v * s for v in lay.body))
        # The head never leaves this box (head angles are limited to 0.6 rad), so only it is redrawn.
        x0 = max(lay.face[0], int(lay.head_center[0] - 1.75 * lay.face_unit))
        x1 = min(lay.face[2], int(lay.head_center[0] + 1.75 * lay.face_unit))
        y0 = max(lay.face[1], int(lay.head_center[1] - 1.5 * lay.face_unit))
        y1 = min(lay.caption[1], int(lay.head_center[1] + 1.55 * lay.face_unit))
        self._face_crop = (x0, y0, x1, y1)
        self._face_bg = full.crop(tuple(v * s for v in self._face_crop))

    # -- body -----------------------------------------------------------------------------------

    def _draw_body(self, draw: ImageDraw.ImageDraw, joints: np.ndarray, c: _FaceControls, head: np.ndarray) -> None:
        """Limbs as rounded strokes, a torso polygon and a small head, painted far to near."""
        s = SUPERSAMPLE
        scale = self.body_scale * s
        panel_w = (self.layout.body[2] - self.layout.body[0]) * s
        # Track the pelvis sideways so a walking character stays in view; the floor stays put.
        origin = np.array([panel_w / 2 - joints[JOINT["pelvis"], 0] * scale, self.floor_y * s])

        def px(p: np.ndarray) -> np.ndarray:
            return origin + scale * np.asarray(p)[..., :2] * [1.0, -1.0]

        J = joints
        up = np.array([0.0, 1.0, 0.0])
        across = (J[JOINT["left_hip"]] - J[JOINT["right_hip"]]) + (J[JOINT["left_shoulder"]] - J[JOINT["right_shoulder"]])
        across /= max(np.linalg.norm(across), 1e-6)
        forward = np.cross(across, up)
        # Soft floor shadow under the body.
        foot_y = min(J[JOINT["left_foot"], 1], J[JOINT["right_foot"], 1], 0.0)
        sx = px(J[JOINT["pelvis"]])[0]
        sy = origin[1] - foot_y * scale
        draw.ellipse([sx - 0.32 * scale, sy - 0.04 * scale, sx + 0.32 * scale, sy + 0.04 * scale], fill=SHADOW)

        items: list[tuple[float, int, Callable[[], None]]] = []  # (depth, order, painter)

        def limb(a: str, b: str, width_m: float, color: Color, bias: float = 0.0) -> None:
            pa, pb = J[JOINT[a]], J[JOINT[b]]

            def paint() -> None:
                w = width_m * scale
                qa, qb = px(pa), px(pb)
                draw.line([tuple(qa), tuple(qb)], fill=color, width=max(1, round(w)))
                for q in (qa, qb):
                    draw.ellipse([q[0] - w / 2, q[1] - w / 2, q[0] + w / 2, q[1] + w / 2], fill=color)

            items.append((0.5 * (pa[2] + pb[2]) + bias, len(items), paint))

        for side, pants, shirt in (("left", PANTS, SHIRT), ("right", PANTS_SHADE, SHIRT_SHADE)):
            # Legs sit a little behind the torso so the pants shape covers the hip caps.
            limb(f"{side}_hip", f"{side}_knee", 0.15, pants, bias=-0.06)
            limb(f"{side}_knee", f"{side}_ankle", 0.115, pants, bias=-0.02)
            limb(f"{side}_ankle", f"{side}_foot", 0.09, SHOES, bias=0.01)
            limb(f"{side}_shoulder", f"{side}_elbow", 0.095, shirt, bias=0.06)
            limb(f"{side}_elbow", f"{side}_wrist", 0.075, SKIN if side == "left" else SKIN_SHADE, bias=0.07)

            def hand(side: str = side) -> None:
                w, e = J[JOINT[f"{side}_wrist"]], J[JOINT[f"{side}_elbow"]]
                tip = px(w + 0.07 * (w - e) / max(np.linalg.norm(w - e), 1e-6))
                r = 0.05 * scale
                draw.ellipse([tip[0] - r, tip[1] - r, tip[0] + r, tip[1] + r], fill=SKIN)

            items.append((J[JOINT[f"{side}_wrist"], 2] + 0.08, len(items), hand))

        def torso() -> None:
            lat_sh = J[JOINT["left_shoulder"]] - J[JOINT["right_shoulder"]]
            lat_hip = J[JOINT["left_hip"]] - J[JOINT["right_hip"]]
            body_up = J[JOINT["neck"]] - J[JOINT["pelvis"]]
            body_up /= max(np.linalg.norm(body_up), 1e-6)
            spine = J[JOINT["spine1"]]
            lat_mid = across * 0.13
            shirt = [
                J[JOINT["right_shoulder"]] - 0.12 * lat_sh + 0.04 * body_up,
                J[JOINT["neck"]] - 0.02 * body_up,
                J[JOINT["left_shoulder"]] + 0.12 * lat_sh + 0.04 * body_up,
                J[JOINT["left_shoulder"]] + 0.1 * lat_sh - 0.12 * body_up,
                spine + lat_mid,
                spine + lat_mid - 0.08 * body_up,
                spine - lat_mid - 0.08 * body_up,
                spine - lat_mid,
                J[JOINT["right_shoulder"]] - 0.1 * lat_sh - 0.12 * body_up,
            ]
            draw.polygon(_flat(_chaikin(px(np.array(shirt)), 2)), fill=SHIRT)
            pelvis = J[JOINT["pelvis"]]
            pants = [
                spine - lat_mid - 0.07 * body_up,
                spine + lat_mid - 0.07 * body_up,
                J[JOINT["left_hip"]] + 0.55 * lat_hip,
                J[JOINT["left_hip"]] + 0.45 * lat_hip - 0.1 * body_up,
                pelvis - 0.12 * body_up,
                J[JOINT["right_hip"]] - 0.45 * lat_hip - 0.1 * body_up,
                J[JOINT["right_hip"]] - 0.55 * lat_hip,
            ]
            draw.polygon(_flat(px(np.array(pants))), fill=PANTS)
            neck_a, neck_b = px(J[JOINT["neck"]] - 0.03 * body_up), px(J[JOINT["head"]])
            draw.line([tuple(neck_a), tuple(neck_b)], fill=SKIN_SHADE, width=round(0.075 * scale))

        torso_depth = float(np.mean(J[[JOINT["pelvis"], JOINT["spine2"], JOINT["neck"]], 2]))
        items.append((torso_depth, len(items), torso))
        items.append((float(J[JOINT["head"], 2]) + 0.1, len(items), lambda: self._draw_small_head(draw, J, px, scale, forward, c, head)))
        for _, _, paint in sorted(items, key=lambda item: (item[0], item[1])):
            paint()

    def _draw_small_head(self, draw: ImageDraw.ImageDraw, J: np.ndarray,
                         px: Callable[[np.ndarray], np.ndarray], scale: float, forward: np.ndarray,
                         c: _FaceControls, head: np.ndarray) -> None:
        """The body view's head: a circle with hair and the face's eyes, brows and mouth, simplified."""
        neck, head_joint = J[JOINT["neck"]], J[JOINT["head"]]
        up = head_joint - neck
        up /= max(np.linalg.norm(up), 1e-6)
        center = px(head_joint + 0.07 * up)
        r = 0.115 * scale
        # Where the face points: the body's facing plus the face's own head yaw and pitch.
        yaw = float(np.arctan2(forward[0], forward[2])) + float(head[1])
        pitch = float(head[0])
        roll = float(np.arctan2(up[0], up[1])) + float(head[2])  # image-space tilt, subject's left = right
        draw.ellipse([center[0] - r * 1.08, center[1] - r * 1.12, center[0] + r * 1.08, center[1] + r * 1.02], fill=HAIR)
        if np.cos(yaw) < 0.15:  # facing away: the back of the head is all hair
            return
        fc = center + r * np.array([0.55 * np.sin(yaw), 0.12 + 0.35 * np.sin(pitch)])
        fw, fh = r * 0.92 * (0.55 + 0.45 * np.cos(yaw)), r * 0.98
        draw.ellipse([fc[0] - fw, fc[1] - fh * 0.8, fc[0] + fw, fc[1] + fh], fill=SKIN)
        cos_r, sin_r = np.cos(roll), np.sin(roll)

        def at(dx: float, dy: float) -> np.ndarray:  # face-local offset (image axes) -> pixels
            return fc + r * np.array([dx * cos_r * np.cos(yaw) + dy * sin_r, -dx * sin_r + dy * cos_r])

        lw = max(1, round(0.11 * r))
        for sign, blink, gaze in ((1, c.blink[0], c.gaze[0]), (-1, c.blink[1], c.gaze[1])):
            e = at(0.36 * sign, -0.05)
            if blink > 0.55:
                draw.line([tuple(e - [0.15 * r, 0]), tuple(e + [0.15 * r, 0])], fill=LASH, width=lw)
            else:
                er = 0.12 * r
                g = e + r * np.array([0.06 * gaze[1] / EYE_YAW_MAX_RAD, 0.05 * gaze[0] / EYE_PITCH_MAX_RAD])
                draw.ellipse([g[0] - er, g[1] - er * (1 - blink), g[0] + er, g[1] + er * (1 - blink)], fill=PUPIL)
            b = at(0.36 * sign, -0.3 - 0.1 * c.brow_inner - 0.08 * c.brow_outer[0 if sign > 0 else 1] + 0.06 * c.brow_down[0 if sign > 0 else 1])
            draw.line([tuple(b - [0.16 * r, 0]), tuple(b + [0.16 * r, 0])], fill=HAIR, width=lw)
        m = at(0.0, 0.45 + 0.12 * c.jaw)
        gap = (0.34 * c.jaw + 0.07 * c.funnel) * (1 - max(c.close, c.press))
        mw = 0.26 * r * (1 + 0.3 * (sum(c.smile) + sum(c.stretch)) / 2 - 0.4 * max(c.pucker, c.funnel))
        mh = max(0.035, 0.5 * gap) * r
        draw.ellipse([m[0] - mw, m[1] - mh, m[0] + mw, m[1] + mh], fill=MOUTH_INSIDE)

    # -- face close-up --------------------------------------------------------------------------

    def _draw_face(self, draw: ImageDraw.ImageDraw, c: _FaceControls, head: np.ndarray) -> None:
        """The close-up: hair, ears, skin, cheeks, nose, eyes, brows, mouth (back to front)."""
        s = SUPERSAMPLE
        lay = self.layout
        center = ((lay.head_center[0] - self._face_crop[0]) * s, (lay.head_center[1] - self._face_crop[1]) * s)
        proj = _FaceProjector(head, center, lay.face_unit * s)
        u = proj.unit

        draw.polygon(_flat(proj.ellipsoid_silhouette(HAIR_CENTER, HAIR_AXES)), fill=HAIR)
        for sign in (1.0, -1.0):
            ear = np.array([0.8 * sign, -0.02, -0.05])
            if proj.depth_of(ear) > -0.45:
                e = proj.project3(ear[None])[0]
                draw.ellipse([e[0] - 0.13 * u, e[1] - 0.2 * u, e[0] + 0.13 * u, e[1] + 0.2 * u], fill=SKIN_SHADE)
        outline = self._face_outline.copy()
        drop = 0.3 * c.jaw  # the chin follows the jaw
        outline[:, 1] -= drop * self._jaw_weight
        outline[:, 0] += 0.06 * c.jaw_side * self._jaw_weight
        draw.polygon(_flat(proj(outline)), fill=SKIN, outline=SKIN_SHADE, width=max(1, round(0.02 * u)))

        # Cheeks: ellipses on the face surface, so they foreshorten when the head turns.
        ring = np.column_stack([0.12 * np.cos(_RING), 0.07 * np.sin(_RING)])
        for sign, cheek in ((1.0, c.cheek[0]), (-1.0, c.cheek[1])):
            draw.polygon(_flat(proj(ring + [0.47 * sign, -0.27 + 0.04 * cheek])), fill=BLUSH)
        # Nose: a short curve in front of the face plane, so it shifts more than the eyes when turning.
        nose_t = np.linspace(-1, 1, 7)
        nose = np.column_stack([0.09 * nose_t, -0.2 - 0.035 * (1 - nose_t**2)])
        draw.line(_flat(proj(nose, depth=0.14)), fill=SKIN_SHADE, width=max(1, round(0.035 * u)), joint="curve")

        for side in (0, 1):
            self._draw_eye(draw, proj, c, side)
        for side in (0, 1):
            self._draw_brow(draw, proj, c, side)
        self._draw_mouth(draw, proj, c)

    def _draw_eye(self, draw: ImageDraw.ImageDraw, proj: _FaceProjector, c: _FaceControls, side: int) -> None:
        """Eye white, iris and pupil (moved by gaze), then skin lids that close with the blink."""
        sign = 1.0 if side == 0 else -1.0  # side 0 = the subject's left = image right
        u = proj.unit
        blink, wide, squint = c.blink[side], c.wide[side], max(c.squint[side], 0.6 * c.cheek[side])
        cx, cy = EYE_X * sign, EYE_Y
        t = np.linspace(-1.0, 1.0, 13)
        x = cx + EYE_HALF_W * t
        upper_h = 0.105 * (1 + 0.5 * wide - 0.35 * squint)
        lower_h = 0.07 * (1 - 0.45 * squint)
        lower = cy - lower_h * (1 - t**2) ** 0.9
        open_upper = cy + upper_h * (1 - t**2) ** 0.8
        upper = open_upper * (1 - blink) + lower * blink  # fully closed: the lid meets the lower lid
        white = np.column_stack([np.concatenate([x, x[::-1]]), np.concatenate([open_upper, lower[::-1]])])
        draw.polygon(_flat(proj(white)), fill=EYE_WHITE)
        pitch, yaw = c.gaze[side]
        iris_c = np.array([[cx + 0.09 * np.clip(yaw / EYE_YAW_MAX_RAD, -1, 1), cy - 0.055 * np.clip(pitch / EYE_PITCH_MAX_RAD, -1, 1)]])
        q = proj(iris_c)[0]
        for radius, color in ((0.078, IRIS), (0.038, PUPIL)):
            rr = radius * u
            draw.ellipse([q[0] - rr, q[1] - rr, q[0] + rr, q[1] + rr], fill=color)
        hl = q + np.array([0.025, -0.03]) * u
        draw.ellipse([hl[0] - 0.016 * u, hl[1] - 0.016 * u, hl[0] + 0.016 * u, hl[1] + 0.016 * u], fill=EYE_WHITE)
        # Skin above the (moving) upper lid and below the lower lid hides what the lids cover.
        margin = 0.06
        xo = np.array([cx - EYE_HALF_W - margin, cx + EYE_HALF_W + margin])
        top, bottom = cy + 0.2, cy - 0.14
        upper_cover = np.column_stack([np.concatenate([[xo[0]], x, [xo[1], xo[1], xo[0]]]),
                                       np.concatenate([[cy], upper, [cy, top, top]])])
        lower_cover = np.column_stack([np.concatenate([[xo[0]], x, [xo[1], xo[1], xo[0]]]),
                                       np.concatenate([[cy], lower, [cy, bottom, bottom]])])
        draw.polygon(_flat(proj(upper_cover)), fill=SKIN)
        draw.polygon(_flat(proj(lower_cover)), fill=SKIN)
        crease = np.column_stack([x[2:-2], open_upper[2:-2] + 0.035 + 0.02 * blink])
        draw.line(_flat(proj(crease)), fill=SKIN_SHADE, width=max(1, round(0.014 * u)), joint="curve")
        draw.line(_flat(proj(np.column_stack([x, lower]))), fill=SKIN_SHADE, width=max(1, round(0.012 * u)), joint="curve")
        # Lash line along the upper lid, with a flick at the outer corner.
        lash = np.column_stack([np.concatenate([x, [cx + sign * (EYE_HALF_W + 0.045)]]),
                                np.concatenate([upper, [cy + 0.03]])])
        if sign < 0:
            lash = np.concatenate([lash[-1:], lash[:-1]])
        draw.line(_flat(proj(lash)), fill=LASH, width=max(1, round(0.03 * u)), joint="curve")

    def _draw_brow(self, draw: ImageDraw.ImageDraw, proj: _FaceProjector, c: _FaceControls, side: int) -> None:
        """A tapered brow: inner end raised by browInnerUp, outer by browOuterUp, both lowered by browDown."""
        sign = 1.0 if side == 0 else -1.0
        down, outer_up = c.brow_down[side], c.brow_outer[side]
        base = EYE_Y + 0.215
        inner = np.array([0.12 - 0.025 * down, base + 0.01 + 0.11 * c.brow_inner - 0.09 * down])
        mid = np.array([0.3, base + 0.05 + 0.04 * c.brow_inner + 0.06 * outer_up - 0.05 * down])
        outer = np.array([0.47, base - 0.01 + 0.11 * outer_up - 0.02 * down])
        t = np.linspace(0.0, 1.0, 9)[:, None]
        spine = (1 - t) ** 2 * inner + 2 * (1 - t) * t * mid + t**2 * outer  # quadratic Bezier (9, 2)
        spine[:, 0] *= sign
        tangent = np.gradient(spine, axis=0)
        normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        normal *= np.sign(normal[:, 1:2] + 1e-9)  # point up
        half = 0.035 - 0.02 * t  # thick inner end, thin outer end
        shape = np.concatenate([spine + normal * half, (spine - normal * half)[::-1]])
        draw.polygon(_flat(proj(shape, depth=0.02)), fill=HAIR)

    def _draw_mouth(self, draw: ImageDraw.ImageDraw, proj: _FaceProjector, c: _FaceControls) -> None:
        """Lips, the dark interior (zero height when sealed), teeth and tongue, the lip seam."""
        m = _mouth_shape(c)
        u = proj.unit
        lips = np.concatenate([m.upper_outer, m.lower_outer[::-1]])
        draw.polygon(_flat(proj(lips, depth=0.03)), fill=LIPS)
        if m.gap > 0.004:
            inside = np.concatenate([m.upper_inner, m.lower_inner[::-1]])
            draw.polygon(_flat(proj(inside, depth=0.03)), fill=MOUTH_INSIDE)
            mid = np.abs(m.t) < 0.62
            if m.gap > 0.1:  # the tongue rests on the lower teeth
                tongue = m.lower_inner[mid] + [0.0, 0.035]
                tongue = np.concatenate([tongue, (m.lower_inner[mid] + [0.0, 0.2 * m.gap + 0.02])[::-1]])
                tongue[:, 1] = np.maximum(tongue[:, 1], m.lower_inner[mid].min(axis=0)[1])
                draw.polygon(_flat(proj(_chaikin(tongue, 1), depth=0.03)), fill=TONGUE)
            upper_teeth = np.concatenate([m.upper_inner[mid], (m.upper_inner[mid] - [0.0, min(0.055, 0.45 * m.gap)])[::-1]])
            draw.polygon(_flat(proj(upper_teeth, depth=0.03)), fill=TEETH)
            low = np.abs(m.t) < 0.5
            lower_teeth = np.concatenate([m.lower_inner[low], (m.lower_inner[low] + [0.0, min(0.03, 0.2 * m.gap)])[::-1]])
            draw.polygon(_flat(proj(lower_teeth, depth=0.03)), fill=TEETH)
        seam = m.upper_inner if m.gap > 0.004 else 0.5 * (m.upper_inner + m.lower_inner)
        draw.line(_flat(proj(seam, depth=0.03)), fill=MOUTH_INSIDE, width=max(1, round(0.022 * u)), joint="curve")

    # -- overlay --------------------------------------------------------------------------------

    def _draw_overlay(self, frame: Image.Image, overlay: Overlay) -> None:
        """Name tags with level meters, the state badge, the clock and the caption (at 1x)."""
        lay = self.layout
        x0, y0, x1, y1 = lay.header
        pad = max(4, round(self.height * 0.022))
        tag_h = y1 - y0 - 2 * pad
        tag_w = round((x1 - x0) * 0.32)
        levels = {"agent": overlay.agent_level, "user": overlay.user_level}
        names = {"agent": overlay.agent_name, "user": overlay.user_name}
        for i, role in enumerate(SPEAKERS):
            active = overlay.speaker == role
            tx, ty = x0 + pad + i * (tag_w + pad), y0 + pad
            frame.paste(self._tag_tile(names[role], role, active, (tx, ty, tx + tag_w, ty + tag_h)), (tx, ty))
            self._draw_meter(frame, (tx + round(tag_w * 0.6), ty + tag_h // 2), round(tag_w * 0.34), tag_h, levels[role], role, active)
        badge = self._badge_tile(overlay.agent_state, x1 - pad, y0 + pad, tag_h)
        frame.paste(badge, (x1 - pad - badge.width, y0 + pad))
        draw = ImageDraw.Draw(frame)
        t = max(0.0, float(overlay.time_s))
        draw.text((lay.body[0] + pad, lay.body[1] + pad), f"{int(t // 60):02d}:{t % 60:05.2f}",
                  font=self._fonts["time"], fill=TEXT_DIM)
        if overlay.caption.strip():
            cx0, cy0, cx1, cy1 = lay.caption
            accent = SPEAKER_COLORS.get(overlay.speaker or "", TEXT_DIM)
            bar = max(3, round(self.height * 0.008))
            draw.rectangle([cx0 + pad, cy0 + pad, cx0 + pad + bar, cy1 - pad], fill=accent)
            inner_w = cx1 - cx0 - 4 * pad - bar
            mask = _caption_mask(overlay.caption, self._fonts["caption"], inner_w, cy1 - cy0 - 2 * pad)
            frame.paste(TEXT, (cx0 + 2 * pad + bar, cy0 + pad, cx0 + 2 * pad + bar + mask.width, cy0 + pad + mask.height), mask)

    def _draw_meter(self, frame: Image.Image, left_mid: tuple[int, int], width: int, tag_h: int, level: float,
                    role: str, active: bool) -> None:
        """A segmented level meter: lit segments up to the level, in the speaker's colour."""
        level = float(np.clip(level if np.isfinite(level) else 0.0, 0.0, 1.0))
        segments = 10
        gap = max(1, width // 40)
        seg_w = (width - gap * (segments - 1)) / segments
        lit = int(round(level * segments))
        draw = ImageDraw.Draw(frame)
        color = (250, 250, 250) if active else SPEAKER_COLORS[role]
        for k in range(segments):
            h = round(tag_h * (0.18 + 0.32 * (k + 1) / segments))
            xa = left_mid[0] + k * (seg_w + gap)
            draw.rectangle([round(xa), left_mid[1] - h // 2, round(xa + seg_w) - 1, left_mid[1] + h // 2],
                           fill=color if k < lit else METER_OFF)


    def _tile(self, key: tuple, box: tuple[int, int, int, int],
              paint: Callable[[ImageDraw.ImageDraw, int, int], None]) -> Image.Image:
        """A cached header element: painted at 2x over its own background crop, then reduced."""
        tile = self._tiles.get(key)
        if tile is None:
            s = SUPERSAMPLE
            tile = self._full2x.crop(tuple(v * s for v in box))
            paint(ImageDraw.Draw(tile), tile.width, tile.height)
            tile = tile.reduce(s)
            if len(self._tiles) > 64:  # names can change at run time; keep the cache bounded
                self._tiles.clear()
            self._tiles[key] = tile
        return tile

    def _tag_tile(self, name: str, role: str, active: bool, box: tuple[int, int, int, int]) -> Image.Image:
        """A speaker's name tag (a rounded pill), filled with the speaker colour when active."""
        accent = SPEAKER_COLORS[role]
        font = self._fonts["tag"]

        def paint(draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
            draw.rounded_rectangle([0, 0, w - 1, h - 1], radius=h // 2, fill=accent if active else TAG_BG,
                                   outline=accent, width=2 * SUPERSAMPLE)
            r, dot_x = h * 0.16, h * 0.45
            draw.ellipse([dot_x - r, h / 2 - r, dot_x + r, h / 2 + r], fill=(255, 255, 255) if active else accent)

        tile = self._tile(("tag", name, role, active, box), box, paint)
        if ("tag-text", name, role, active, box) not in self._tiles:
            tile = tile.copy()
            height = tile.height
            label, max_w = name, tile.width * 0.58 - height * 0.7
            while label and _text_width(font, label) > max_w:
                label = label[:-1]
            if label != name:
                label = label[:-1] + "…"
            ImageDraw.Draw(tile).text((height * 0.7, height / 2), label, font=font, anchor="lm",
                                      fill=(255, 255, 255) if active else TEXT)
            self._tiles[("tag-text", name, role, active, box)] = tile
        return self._tiles[("tag-text", name, role, active, box)]

    def _badge_tile(self, state: str, right: int, top: int, height: int) -> Image.Image:
        """The agent-state badge: the upper-case state on a pill of the state's colour, right-aligned."""
        text = state.upper()
        font = self._fonts["badge"]
        width = round(_text_width(font, text) + height * 1.3)
        box = (right - width, top, right, top + height)

        def paint(draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
            draw.rounded_rectangle([0, 0, w - 1, h - 1], radius=h // 2, fill=STATE_COLORS[state])
            r = h * 0.13
            draw.ellipse([h * 0.45 - r, h / 2 - r, h * 0.45 + r, h / 2 + r], fill=(255, 255, 255))

        key = ("badge-text", state, box)
        if key not in self._tiles:
            tile = self._tile(("badge", state, box), box, paint).copy()
            ImageDraw.Draw(tile).text((height * 0.75, height / 2), text, font=font, anchor="lm", fill=(255, 255, 255))
            self._tiles[key] = tile
        return self._tiles[key]


@functools.lru_cache(maxsize=64)
def _caption_mask(text: str, font: ImageFont.FreeTypeFont, width: int, height: int) -> Image.Image:
    """The wrapped subtitle (at most 2 lines, the newest words) as an 8-bit coverage mask."""
    lines = _wrap(" ".join(text.split()), font, width, max_lines=2)
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (height // 3, 0)
    line_h = ascent + descent + 4
    top = (height - line_h * len(lines)) / 2 + 2
    for i, line in enumerate(lines):
        draw.text((0, top + i * line_h), line, font=font, fill=255)
    return mask
