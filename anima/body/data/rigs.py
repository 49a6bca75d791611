"""Map a BVH rig onto the 22-joint HumanML3D skeleton: metres, Y up, right-handed.

    rig = detect_rig(bvh)                     # "cmu-iclone", "bandai", or a name-matched generic rig
    joints = to_humanml_joints(bvh, rig)      # (T, 22, 3) metres, Y up, at the file's frame rate

Each rig names, for every HumanML3D joint, the BVH joint whose position it takes, or a blend of
two of them where the rig has no such joint:

- ``cmu-iclone`` (CMU mocap retargeted to iClone's CC_Base rig, ~100 bones): all 22 joints exist
  (Hip, Waist, Spine01, Spine02, NeckTwist01, Head, Clavicle, Upperarm, Forearm, Hand, Thigh,
  Calf, Foot, ToeBase); twist, share, finger, toe, jaw and eye bones are ignored.
- ``bandai`` (Bandai Namco Research Motiondataset, 22 bones): the torso has three joints between
  the pelvis and the neck (Hips, Spine, Chest) where HumanML3D has four. We put HumanML3D's
  spine1 halfway along the Hips->Spine bone (a point rigidly attached to Hips), and map spine2 to
  Spine and spine3 to Chest. The collar split exists (Shoulder_* sits near the neck base, where
  SMPL's collar is; UpperArm_* is the shoulder joint), so collars and shoulders are real joints.
  Only bone *directions* reach the features: ``uniform_skeleton`` then gives every bone the
  target length, as HumanML3D does.
- generic: case-insensitive aliases (Mixamo ``mixamorig:LeftUpLeg``, CMU/Motionbuilder
  ``LeftUpLeg``/``LeftLeg``/``LeftArm``, ``L_Thigh`` style, ...). A rig where some joints are
  not found raises ``RigError`` listing the missing HumanML3D joints and the file's joint names.

Units and axes are detected, not assumed: the up axis is the dominant axis of head-above-ankles,
the unit (m, cm, mm, inch) is the one that makes the standing height plausible, and a file whose
toes point backwards relative to the hips' left/right in most frames (a left-handed export of
an unknown rig) is mirrored in X.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from anima.body.data.bvh import BVH
from anima.body.skeleton import JOINT_NAMES, NUM_JOINTS

log = logging.getLogger(__name__)

# A source is either a joint name or (a, b, w): the point (1 - w) * a + w * b.
Source = str | tuple[str, str, float]


class RigError(ValueError):
    """The BVH's skeleton cannot be mapped to the 22 HumanML3D joints."""


@dataclass(frozen=True)
class Rig:
    name: str
    sources: dict[str, Source]  # HumanML3D joint name -> source


def _sided(template: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in template.items():
        out[f"left_{key}"] = value.format(s="L")
        out[f"right_{key}"] = value.format(s="R")
    return out


CMU_ICLONE = Rig(
    "cmu-iclone",
    {
        "pelvis": "CC_Base_Hip",
        "spine1": "CC_Base_Waist",
        "spine2": "CC_Base_Spine01",
        "spine3": "CC_Base_Spine02",
        "neck": "CC_Base_NeckTwist01",
        "head": "CC_Base_Head",
        **_sided(
            {
                "hip": "CC_Base_{s}_Thigh", "knee": "CC_Base_{s}_Calf", "ankle": "CC_Base_{s}_Foot",
                "foot": "CC_Base_{s}_ToeBase", "collar": "CC_Base_{s}_Clavicle",
                "shoulder": "CC_Base_{s}_Upperarm", "elbow": "CC_Base_{s}_Forearm", "wrist": "CC_Base_{s}_Hand",
            }
        ),
    },
)

BANDAI = Rig(
    "bandai",
    {
        "pelvis": "Hips",
        "spine1": ("Hips", "Spine", 0.5),  # no joint there: halfway along the Hips->Spine bone
        "spine2": "Spine",
        "spine3": "Chest",
        "neck": "Neck",
        "head": "Head",
        **_sided(
            {
                "hip": "UpperLeg_{s}", "knee": "LowerLeg_{s}", "ankle": "Foot_{s}", "foot": "Toes_{s}",
                "collar": "Shoulder_{s}", "shoulder": "UpperArm_{s}", "elbow": "LowerArm_{s}", "wrist": "Hand_{s}",
            }
        ),
    },
)

RIGS = {rig.name: rig for rig in (CMU_ICLONE, BANDAI)}

# Generic aliases, matched against names normalised by _normalise (lower case, no prefix, no
# separators). "{s}" is the side: left/l, right/r.
_ALIASES: dict[str, tuple[str, ...]] = {
    "pelvis": ("hips", "hip", "pelvis", "root"),
    "spine1": ("spine", "spine0", "spine00", "waist", "lowerback", "abdomen"),
    "spine2": ("spine1", "spine01", "chest", "upperback"),
    "spine3": ("spine2", "spine02", "upperchest", "chest2", "thorax", "spine3"),
    "neck": ("neck", "neck1", "necktwist01", "lowerneck"),
    "head": ("head",),
    "hip": ("{s}upleg", "{s}thigh", "{s}upperleg", "{s}hip", "{s}femur"),
    "knee": ("{s}leg", "{s}calf", "{s}lowerleg", "{s}knee", "{s}shin", "{s}tibia"),
    "ankle": ("{s}foot", "{s}ankle"),
    "foot": ("{s}toebase", "{s}toe", "{s}toes", "{s}ball"),
    "collar": ("{s}shoulder", "{s}clavicle", "{s}collar"),
    "shoulder": ("{s}arm", "{s}upperarm", "{s}humerus"),
    "elbow": ("{s}forearm", "{s}lowerarm", "{s}elbow"),
    "wrist": ("{s}hand", "{s}wrist"),
}
_SIDES = {"left": ("left", "l"), "right": ("right", "r")}


def _normalise(name: str) -> str:
    name = name.split(":")[-1]  # mixamorig:LeftArm
    name = re.sub(r"^(cc_base_|bip0?1_?|def_|mixamorig)", "", name, flags=re.IGNORECASE)
    return re.sub(r"[\s_.\-]", "", name).lower()


def _generic_rig(names: list[str]) -> tuple[Rig, list[str]]:
    """Match names by alias; returns the rig and the HumanML3D joints that were not found."""
    by_norm: dict[str, str] = {}
    for n in names:
        by_norm.setdefault(_normalise(n), n)
    sources: dict[str, Source] = {}
    missing = []
    for joint in JOINT_NAMES:
        side, _, base = joint.partition("_") if joint.startswith(("left_", "right_")) else ("", "", joint)
        candidates = []
        for alias in _ALIASES[base]:
            if "{s}" in alias:
                candidates += [alias.format(s=s) for s in _SIDES[side]]
                candidates += [alias.format(s="") + s for s in _SIDES[side]]  # UpperArm_L style
            else:
                candidates.append(alias)
        found = next((by_norm[c] for c in candidates if c in by_norm), None)
        if found is None:
            missing.append(joint)
        else:
            sources[joint] = found
    # A rig with fewer spine joints: interpolate spine1 on the pelvis->spine2 bone, reuse neck.
    if "spine1" in missing and "spine2" in sources and "pelvis" in sources:
        sources["spine1"] = (sources["pelvis"], sources["spine2"], 0.5)  # type: ignore[assignment]
        missing.remove("spine1")
    if "spine3" in missing and "spine2" in sources and "neck" in sources:
        sources["spine3"] = (sources["spine2"], sources["neck"], 0.4)  # type: ignore[assignment]
        missing.remove("spine3")
    return Rig("generic", sources), missing


def detect_rig(bvh: BVH) -> Rig:
    """The rig of a BVH: a known one when all its joints are present, else a generic alias match."""
    names = set(bvh.joint_names)
    for rig in RIGS.values():
        needed = {s if isinstance(s, str) else s[0] for s in rig.sources.values()}
        needed |= {s[1] for s in rig.sources.values() if not isinstance(s, str)}
        if needed <= names:
            return rig
    rig, missing = _generic_rig(bvh.joint_names)
    if missing:
        shown = ", ".join(bvh.joint_names[:40]) + (" ..." if len(bvh.joint_names) > 40 else "")
        raise RigError(
            f"{bvh.path}: unknown rig: could not find joints for {', '.join(missing)} "
            f"(known rigs: {', '.join(RIGS)}; the file has: {shown})"
        )
    return rig


_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254}
_TYPICAL_HEIGHT_M = 1.45  # head joint above the ankles when standing


def _rotation_to_y_up(up: np.ndarray) -> np.ndarray:
    """A proper rotation taking the axis-aligned unit vector ``up`` to +Y. # (3, 3)"""
    axis = int(np.argmax(np.abs(up)))
    sign = np.sign(up[axis])
    if axis == 1:
        return np.diag([1.0, sign, sign])  # -Y up: half turn about X
    if axis == 2:  # Z up: (x, y, z) -> (x, z, -y) ; -Z up: (x, -z, y)
        return np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]) if sign > 0 else np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    # X up: (x, y, z) -> (-y, x, z) ; -X up: (y, -x, z)
    return np.array([[0, -1.0, 0], [1, 0, 0], [0, 0, 1]]) if sign > 0 else np.array([[0, 1.0, 0], [-1, 0, 0], [0, 0, 1]])


def to_humanml_joints(bvh: BVH, rig: Rig | None = None) -> np.ndarray:
    """The 22 HumanML3D joints of every frame, in metres, Y up. # (T, 22, 3)

    Frame rate is the file's (``bvh.fps``); resample with ``skeleton.resample_joints``.
    """
    rig = rig or detect_rig(bvh)
    _, world = bvh.global_transforms()  # (T, J, 3)
    out = np.zeros((bvh.num_frames, NUM_JOINTS, 3))
    for j, joint in enumerate(JOINT_NAMES):
        source = rig.sources[joint]
        if isinstance(source, str):
            out[:, j] = world[:, bvh.index(source)]
        else:
            a, b, w = source
            out[:, j] = (1 - w) * world[:, bvh.index(a)] + w * world[:, bvh.index(b)]
    ankles = out[:, [7, 8]].mean(axis=1)
    rise = np.median(out[:, 15] - ankles, axis=0)  # head above ankles, file units # (3,)
    if not np.all(np.isfinite(rise)) or np.linalg.norm(rise) < 1e-9:
        raise RigError(f"{bvh.path}: degenerate skeleton (head and ankles coincide)")
    axis = int(np.argmax(np.abs(rise)))
    up = np.zeros(3)
    up[axis] = np.sign(rise[axis])
    out = out @ _rotation_to_y_up(up).T
    height = abs(rise[axis])
    unit = min(_UNITS, key=lambda u: abs(np.log(height * _UNITS[u] / _TYPICAL_HEIGHT_M)))
    out *= _UNITS[unit]
    # Handedness of an unknown rig: facing from the hips (HumanML3D's forward = up x (right -
    # left)) must agree with the direction the toes point in most frames (a sprint kicks the toes
    # back in some); if not, the export was mirrored. Known rigs are known to be right-handed.
    across = out[:, 2] - out[:, 1]
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    toes = (out[:, 10] - out[:, 7]) + (out[:, 11] - out[:, 8])
    if rig.name not in RIGS and np.median(np.sign(np.sum(forward * toes, axis=-1))) < 0:
        log.warning("%s: toes point backwards for this left/right labelling; mirroring X", bvh.path)
        out[..., 0] *= -1
    log.debug("%s: rig %s, up axis %s, unit %s", bvh.path, rig.name, "XYZ"[axis], unit)
    return out
