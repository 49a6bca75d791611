"""The face parameter layout shared by every face module and renderer.

A face frame is a FLAME-style 112-D vector (25 fps)::

    [0:100]   expression   anima's semantic expression basis (see below)
    [100:103] jaw          axis-angle, radians: x = open (positive opens), y = sideways, z = unused
    [103:106] head         axis-angle, radians: x = pitch (positive looks down), y = yaw (positive
                           turns to the subject's left), z = roll
    [106:109] left eye     axis-angle, radians: x = pitch (positive looks down), y = yaw (positive
                           looks to the subject's left), z = 0
    [109:112] right eye    same convention

FLAME's 100 expression coefficients are a PCA basis whose meaning comes with the (licence-gated)
FLAME model, which we do not have. anima therefore uses a *semantic* basis in the same slots:
``expression[i]`` for ``i < 52`` is the weight in [0, 1] of the i-th ARKit blendshape in the
order of ``ARKIT_NAMES``; ``expression[52:100]`` is reserved (zero in the procedural default,
free for learned models' residual detail). Importing real FLAME expressions needs a linear map
fitted on paired data; it is not the identity.

For the 11 blendshapes that are rotations (jawOpen, jawLeft, jawRight and the 8 eyeLook*), the
rotation slots are the source of truth: ``to_arkit`` derives those weights from the angles, and
``from_arkit`` writes both. The face's angles are small, so the axis-angle components are used
directly as pitch / yaw / roll.

Mapping to ARKit (``to_arkit``):
    jawOpen        = clip(jaw.x / JAW_OPEN_MAX_RAD, 0, 1)
    jawLeft/Right  = clip(+-jaw.y / JAW_SIDE_MAX_RAD, 0, 1)   (left = subject's left, +y)
    eyeLookDown*   = clip(eye.x / EYE_PITCH_MAX_RAD, 0, 1);  eyeLookUp* = clip(-eye.x / ..., 0, 1)
    eyeLookOutLeft = clip(left.y / EYE_YAW_MAX_RAD, 0, 1);   eyeLookInLeft = clip(-left.y / ..., 0, 1)
    eyeLookInRight = clip(right.y / EYE_YAW_MAX_RAD, 0, 1);  eyeLookOutRight = clip(-right.y / ..., 0, 1)
    head angles    = head (pitch, yaw, roll), eye angles = (pitch, yaw) per eye
    every other blendshape = expression[i]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FACE_DIM = 112
EXPRESSION = slice(0, 100)
JAW = slice(100, 103)
HEAD = slice(103, 106)
LEFT_EYE = slice(106, 109)
RIGHT_EYE = slice(109, 112)
# Single angles (x = pitch / open, y = yaw / sideways, z = roll; the eyes' z and jaw's z are unused).
JAW_OPEN_ANGLE, JAW_SIDE_ANGLE = 100, 101
HEAD_PITCH, HEAD_YAW, HEAD_ROLL = 103, 104, 105
LEFT_EYE_PITCH, LEFT_EYE_YAW = 106, 107
RIGHT_EYE_PITCH, RIGHT_EYE_YAW = 109, 110
EYE_PITCH = [LEFT_EYE_PITCH, RIGHT_EYE_PITCH]  # both eyes move together in every animator
EYE_YAW = [LEFT_EYE_YAW, RIGHT_EYE_YAW]

JAW_OPEN_MAX_RAD = 0.40  # jaw.x at jawOpen = 1 (about 23 degrees)
JAW_SIDE_MAX_RAD = 0.10
EYE_PITCH_MAX_RAD = 0.45
EYE_YAW_MAX_RAD = 0.60
HEAD_MAX_RAD = 0.60  # valid range of each head angle

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft",
    "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
ARKIT_INDEX: dict[str, int] = {name: i for i, name in enumerate(ARKIT_NAMES)}
ROTATION_DRIVEN = frozenset(
    ["jawOpen", "jawLeft", "jawRight"]
    + [f"eyeLook{d}{s}" for d in ("Down", "In", "Out", "Up") for s in ("Left", "Right")]
)


@dataclass
class ArkitPose:
    """A face in ARKit terms: 52 blendshape weights plus head and eye angles (radians)."""

    blendshapes: np.ndarray  # (52,) in [0, 1]
    head: np.ndarray  # (3,) pitch, yaw, roll
    left_eye: np.ndarray  # (2,) pitch, yaw
    right_eye: np.ndarray  # (2,) pitch, yaw

    def weight(self, name: str) -> float:
        return float(self.blendshapes[ARKIT_INDEX[name]])


def neutral() -> np.ndarray:
    """The neutral face: all zeros. # (112,)"""
    return np.zeros(FACE_DIM, dtype=np.float32)


def _check_shape(params: np.ndarray) -> np.ndarray:
    params = np.asarray(params, dtype=np.float32)
    if params.shape[-1] != FACE_DIM:
        raise ValueError(f"face params: expected last dimension {FACE_DIM}, got shape {params.shape}")
    return params


def to_arkit(params: np.ndarray) -> ArkitPose:
    """Map one 112-D face vector to ARKit blendshapes and angles (see module docstring)."""
    p = _check_shape(params)
    if p.ndim != 1:
        raise ValueError(f"face params: to_arkit takes one frame of shape (112,), got {p.shape}")
    w = np.clip(p[:52].copy(), 0.0, 1.0)
    jaw, left, right = p[JAW], p[LEFT_EYE], p[RIGHT_EYE]
    w[ARKIT_INDEX["jawOpen"]] = np.clip(jaw[0] / JAW_OPEN_MAX_RAD, 0, 1)
    w[ARKIT_INDEX["jawLeft"]] = np.clip(jaw[1] / JAW_SIDE_MAX_RAD, 0, 1)
    w[ARKIT_INDEX["jawRight"]] = np.clip(-jaw[1] / JAW_SIDE_MAX_RAD, 0, 1)
    for side, eye in (("Left", left), ("Right", right)):
        w[ARKIT_INDEX[f"eyeLookDown{side}"]] = np.clip(eye[0] / EYE_PITCH_MAX_RAD, 0, 1)
        w[ARKIT_INDEX[f"eyeLookUp{side}"]] = np.clip(-eye[0] / EYE_PITCH_MAX_RAD, 0, 1)
        # Looking toward the subject's left (+yaw) is "out" for the left eye, "in" for the right.
        sign = 1.0 if side == "Left" else -1.0
        w[ARKIT_INDEX[f"eyeLookOut{side}"]] = np.clip(sign * eye[1] / EYE_YAW_MAX_RAD, 0, 1)
        w[ARKIT_INDEX[f"eyeLookIn{side}"]] = np.clip(-sign * eye[1] / EYE_YAW_MAX_RAD, 0, 1)
    return ArkitPose(w.astype(np.float32), p[HEAD].copy(), left[:2].copy(), right[:2].copy())


def from_arkit(pose: ArkitPose) -> np.ndarray:
    """Inverse of ``to_arkit`` (exact for weights in [0, 1] and angles in range). # (112,)"""
    w = np.asarray(pose.blendshapes, dtype=np.float32)
    if w.shape != (52,):
        raise ValueError(f"ArkitPose.blendshapes: expected shape (52,), got {w.shape}")
    p = neutral()
    p[:52] = np.clip(w, 0, 1)
    p[JAW] = (
        w[ARKIT_INDEX["jawOpen"]] * JAW_OPEN_MAX_RAD,
        (w[ARKIT_INDEX["jawLeft"]] - w[ARKIT_INDEX["jawRight"]]) * JAW_SIDE_MAX_RAD,
        0.0,
    )
    p[HEAD] = pose.head
    p[LEFT_EYE][:2] = pose.left_eye
    p[RIGHT_EYE][:2] = pose.right_eye
    # Keep the rotation-driven expression slots consistent with the angles.
    p[:52] = to_arkit(p).blendshapes
    return p


def set_weights(params: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    """Write named ARKit weights into the expression slots (in place); rotation-driven names raise."""
    for name, value in weights.items():
        if name not in ARKIT_INDEX:
            raise KeyError(f"unknown ARKit blendshape {name!r}")
        if name in ROTATION_DRIVEN:
            raise KeyError(f"{name} is driven by the jaw/eye angles; set those instead")
        params[ARKIT_INDEX[name]] = value
    return params


def check_ranges(params: np.ndarray) -> None:
    """Raise ValueError naming the first out-of-range slot of a (..., 112) array."""
    p = _check_shape(params)
    if not np.all(np.isfinite(p)):
        raise ValueError("face params: contain NaN or infinite values")
    expr = p[..., :52]
    if expr.min() < -1e-6 or expr.max() > 1 + 1e-6:
        raise ValueError(f"face params: expression weights outside [0, 1] ({expr.min():.3f}..{expr.max():.3f})")
    if np.abs(p[..., 52:100]).max() > 1e-6 and not np.all(np.isfinite(p[..., 52:100])):
        raise ValueError("face params: reserved expression slots are not finite")
    limits = (
        ("jaw open", p[..., 100], -0.05, JAW_OPEN_MAX_RAD + 1e-6),
        ("jaw side", p[..., 101], -JAW_SIDE_MAX_RAD - 1e-6, JAW_SIDE_MAX_RAD + 1e-6),
        ("head", p[..., HEAD], -HEAD_MAX_RAD, HEAD_MAX_RAD),
        ("eye pitch", p[..., [106, 109]], -EYE_PITCH_MAX_RAD - 1e-6, EYE_PITCH_MAX_RAD + 1e-6),
        ("eye yaw", p[..., [107, 110]], -EYE_YAW_MAX_RAD - 1e-6, EYE_YAW_MAX_RAD + 1e-6),
    )
    for name, values, lo, hi in limits:
        if values.min() < lo or values.max() > hi:
            raise ValueError(f"face params: {name} outside [{lo:.2f}, {hi:.2f}] rad ({values.min():.3f}..{values.max():.3f})")
