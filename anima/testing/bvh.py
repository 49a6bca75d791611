"""Synthetic BVH files for tests and examples: the HumanML3D rest skeleton under any joint names.

    text = bvh_text()                       # Mixamo names, 3 frames walking forward, cm, Y up, 30 fps
    read_bvh("x.bvh", text=text)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anima.body.skeleton import PARENTS, REST_OFFSETS

MOCAP = Path(__file__).resolve().parents[3] / "shared" / "data" / "mocap"  # ../shared/data/mocap from the repo
MIXAMO_NAMES = (
    "Hips", "LeftUpLeg", "RightUpLeg", "Spine", "LeftLeg", "RightLeg", "Spine1", "LeftFoot", "RightFoot",
    "Spine2", "LeftToeBase", "RightToeBase", "Neck", "LeftShoulder", "RightShoulder", "Head", "LeftArm",
    "RightArm", "LeftForeArm", "RightForeArm", "LeftHand", "RightHand",
)


def bvh_text(names=MIXAMO_NAMES, frames: np.ndarray | None = None, frame_time: str = "0.0333333",
             prefix: str = "mixamorig:", scale: float = 100.0) -> str:
    """A BVH of the HumanML3D rest skeleton (cm, Y up) with the given names.

    Channels: the root has 6 (XYZ position, ZXY rotation), every other joint 3 (ZXY rotation).
    ``frames`` (T, 6 + 3 * 21) defaults to 3 frames of rest pose walking forward in +Z.
    """
    children = {j: [c for c in range(len(PARENTS)) if PARENTS[c] == j] for j in range(len(PARENTS))}
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if j == 0 else "JOINT"
        offset = np.zeros(3) if j == 0 else REST_OFFSETS[j] * scale
        lines.append(f"{pad}{kind} {prefix}{names[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.4f} {offset[1]:.4f} {offset[2]:.4f}")
        if j == 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j]:
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 5 0", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    if frames is None:
        frames = np.zeros((3, 6 + 3 * 21))
        frames[:, 1] = REST_OFFSETS[0][1] * scale
        frames[:, 2] = np.arange(3) * 2.0
    lines += ["MOTION", f"Frames: {len(frames)}", f"Frame Time: {frame_time}"]
    lines += [" ".join(f"{v:.5f}" for v in row) for row in frames]
    return "\n".join(lines) + "\n"


