"""The compact motion space the learned face models work in: 50 of the 112 face slots.

The 112-D layout (``anima.face.params``) carries redundant and unused slots: the 11 rotation-driven
ARKit weights (jawOpen, jawLeft/Right, eyeLook*) are functions of the jaw and eye angles, the 48
reserved expression slots are zero, and jaw.z / eye.z are unused. The models see only the free
slots::

    [0:41]   the 41 ARKit weights that are not rotation-driven (ARKIT_NAMES order), in [0, 1]
    [41:43]  jaw x (open), jaw y (sideways), radians
    [43:46]  head pitch, yaw, roll, radians
    [46:48]  left eye pitch, yaw;  [48:50] right eye pitch, yaw, radians

``to_motion`` picks them out; ``from_motion`` writes them back, clips every slot into the valid
range and derives the rotation-driven weights from the angles, so its output always passes
``params.check_ranges`` (non-finite values become the neutral value).

    python -c "from anima.face import motion; print(motion.MOTION_DIM, motion.NAMES[41:43])"
"""

from __future__ import annotations

import numpy as np

from anima.face import params

_FREE_ARKIT = [i for i, name in enumerate(params.ARKIT_NAMES) if name not in params.ROTATION_DRIVEN]
_ANGLES = [params.JAW_OPEN_ANGLE, params.JAW_SIDE_ANGLE, params.HEAD_PITCH, params.HEAD_YAW, params.HEAD_ROLL,
           params.LEFT_EYE_PITCH, params.LEFT_EYE_YAW, params.RIGHT_EYE_PITCH, params.RIGHT_EYE_YAW]
SLOTS: np.ndarray = np.array(_FREE_ARKIT + _ANGLES)  # (50,) into the 112-D vector
NUM_FREE_ARKIT = len(_FREE_ARKIT)  # 41: motion[:NUM_FREE_ARKIT] are blendshape weights
MOTION_DIM = len(SLOTS)
NAMES: tuple[str, ...] = tuple(params.ARKIT_NAMES[i] for i in _FREE_ARKIT) + (
    "jaw_open", "jaw_side", "head_pitch", "head_yaw", "head_roll",
    "left_eye_pitch", "left_eye_yaw", "right_eye_pitch", "right_eye_yaw",
)

# Groups of motion dimensions, for metrics and reports.
EXPRESSION = np.arange(NUM_FREE_ARKIT)  # all free blendshapes
JAW = np.array([41, 42])
JAW_OPEN = 41
HEAD = np.array([43, 44, 45])
HEAD_PITCH, HEAD_YAW = 43, 44
EYES = np.array([46, 47, 48, 49])
EYE_PITCH = np.array([46, 48])  # left, right
EYE_YAW = np.array([47, 49])
_UPPER_NAMES = ("eyeBlink", "eyeSquint", "eyeWide", "brow", "cheekSquint", "noseSneer")
UPPER_FACE = np.array([i for i, n in enumerate(NAMES[:NUM_FREE_ARKIT]) if n.startswith(_UPPER_NAMES)])
LIPS = np.array([i for i, n in enumerate(NAMES[:NUM_FREE_ARKIT]) if n.startswith(("mouth", "tongue", "cheekPuff"))])

_LO = np.zeros(MOTION_DIM, dtype=np.float32)
_HI = np.ones(MOTION_DIM, dtype=np.float32)
_LO[41:50] = (-0.05, -params.JAW_SIDE_MAX_RAD, *(-0.9 * params.HEAD_MAX_RAD,) * 3,
              -params.EYE_PITCH_MAX_RAD, -params.EYE_YAW_MAX_RAD, -params.EYE_PITCH_MAX_RAD, -params.EYE_YAW_MAX_RAD)
_HI[41:50] = (params.JAW_OPEN_MAX_RAD, params.JAW_SIDE_MAX_RAD, *(0.9 * params.HEAD_MAX_RAD,) * 3,
              params.EYE_PITCH_MAX_RAD, params.EYE_YAW_MAX_RAD, params.EYE_PITCH_MAX_RAD, params.EYE_YAW_MAX_RAD)
_I = params.ARKIT_INDEX


def to_motion(face: np.ndarray) -> np.ndarray:
    """(..., 112) face params -> (..., 50) motion vectors."""
    face = np.asarray(face, dtype=np.float32)
    if face.shape[-1] != params.FACE_DIM:
        raise ValueError(f"to_motion: expected last dimension {params.FACE_DIM}, got shape {face.shape}")
    return face[..., SLOTS]


def clip_motion(motion: np.ndarray) -> np.ndarray:
    """Clip (..., 50) motion into the valid ranges; non-finite values become 0 (neutral)."""
    m = np.nan_to_num(np.asarray(motion, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(m, _LO, _HI)


def from_motion(motion: np.ndarray) -> np.ndarray:
    """(..., 50) motion -> (..., 112) face params that pass ``params.check_ranges``."""
    m = np.asarray(motion, dtype=np.float32)
    if m.shape[-1] != MOTION_DIM:
        raise ValueError(f"from_motion: expected last dimension {MOTION_DIM}, got shape {m.shape}")
    m = clip_motion(m)
    out = np.zeros(m.shape[:-1] + (params.FACE_DIM,), dtype=np.float32)
    out[..., SLOTS] = m
    jaw, left, right = out[..., 100], out[..., 106:108], out[..., 109:111]
    out[..., _I["jawOpen"]] = np.clip(jaw / params.JAW_OPEN_MAX_RAD, 0, 1)
    out[..., _I["jawLeft"]] = np.clip(out[..., 101] / params.JAW_SIDE_MAX_RAD, 0, 1)
    out[..., _I["jawRight"]] = np.clip(-out[..., 101] / params.JAW_SIDE_MAX_RAD, 0, 1)
    for side, eye, sign in (("Left", left, 1.0), ("Right", right, -1.0)):
        out[..., _I[f"eyeLookDown{side}"]] = np.clip(eye[..., 0] / params.EYE_PITCH_MAX_RAD, 0, 1)
        out[..., _I[f"eyeLookUp{side}"]] = np.clip(-eye[..., 0] / params.EYE_PITCH_MAX_RAD, 0, 1)
        out[..., _I[f"eyeLookOut{side}"]] = np.clip(sign * eye[..., 1] / params.EYE_YAW_MAX_RAD, 0, 1)
        out[..., _I[f"eyeLookIn{side}"]] = np.clip(-sign * eye[..., 1] / params.EYE_YAW_MAX_RAD, 0, 1)
    return out
