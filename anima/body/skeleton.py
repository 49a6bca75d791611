"""The 22-joint HumanML3D (SMPL-order) skeleton: names, parents, rest pose, forward kinematics.

Metres, Y up, the body faces +Z, +X is the subject's left. Motion runs at 20 fps.
"""

from __future__ import annotations

import numpy as np

BODY_FPS = 20
NUM_JOINTS = 22
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
JOINT = {name: i for i, name in enumerate(JOINT_NAMES)}
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
# HumanML3D's kinematic chains: right leg, left leg, spine to head, right arm, left arm.
KINEMATIC_CHAIN = ((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21), (9, 13, 16, 18, 20))
FEET_RIGHT = (8, 11)
FEET_LEFT = (7, 10)
FACE_JOINTS = (2, 1, 17, 16)  # r hip, l hip, r shoulder, l shoulder: give the forward direction

# A standing rest pose (arms relaxed at the sides), absolute positions in metres. # (22, 3)
REST_JOINTS = np.array(
    [
        [0.00, 0.93, 0.00], [0.09, 0.86, 0.00], [-0.09, 0.86, 0.00], [0.00, 1.04, -0.01],
        [0.10, 0.48, 0.01], [-0.10, 0.48, 0.01], [0.00, 1.17, -0.01], [0.11, 0.08, -0.02],
        [-0.11, 0.08, -0.02], [0.00, 1.23, 0.00], [0.12, 0.02, 0.10], [-0.12, 0.02, 0.10],
        [0.00, 1.45, -0.01], [0.07, 1.37, -0.01], [-0.07, 1.37, -0.01], [0.00, 1.58, 0.02],
        [0.18, 1.40, -0.02], [-0.18, 1.40, -0.02], [0.21, 1.12, -0.03], [-0.21, 1.12, -0.03],
        [0.23, 0.87, 0.00], [-0.23, 0.87, 0.00],
    ],
    dtype=np.float64,
)
# Offset of each joint from its parent in the rest pose. # (22, 3)
REST_OFFSETS = np.array(
    [REST_JOINTS[0]] + [REST_JOINTS[j] - REST_JOINTS[PARENTS[j]] for j in range(1, NUM_JOINTS)]
)


def forward_kinematics(local_rotations: np.ndarray, root_position: np.ndarray | None = None) -> np.ndarray:
    """Joint positions from per-joint local rotations applied to the rest offsets.

    local_rotations: (..., 22, 3, 3) rotation of each joint relative to its parent (the root's is
    global). root_position: (..., 3) pelvis position; the rest pelvis when None.
    Returns (..., 22, 3).
    """
    rot = np.asarray(local_rotations, dtype=np.float64)
    if rot.shape[-3:] != (NUM_JOINTS, 3, 3):
        raise ValueError(f"forward_kinematics: expected (..., 22, 3, 3) rotations, got {rot.shape}")
    batch = rot.shape[:-3]
    root = REST_JOINTS[0] if root_position is None else np.asarray(root_position, dtype=np.float64)
    positions = np.zeros(batch + (NUM_JOINTS, 3))
    world_rot = np.zeros(batch + (NUM_JOINTS, 3, 3))
    positions[..., 0, :] = root
    world_rot[..., 0, :, :] = rot[..., 0, :, :]
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        world_rot[..., j, :, :] = world_rot[..., p, :, :] @ rot[..., j, :, :]
        positions[..., j, :] = positions[..., p, :] + np.einsum("...ij,j->...i", world_rot[..., p, :, :], REST_OFFSETS[j])
    return positions


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula. (..., 3) -> (..., 3, 3)."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.maximum(angle, 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    c, s = np.cos(angle[..., 0]), np.sin(angle[..., 0])
    C = 1 - c
    m = np.stack(
        [
            c + x * x * C, x * y * C - z * s, x * z * C + y * s,
            y * x * C + z * s, c + y * y * C, y * z * C - x * s,
            z * x * C - y * s, z * y * C + x * s, c + z * z * C,
        ],
        axis=-1,
    ).reshape(aa.shape[:-1] + (3, 3))
    return m


def resample_joints(joints: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Linear resampling of a joint sequence in time. (T, 22, 3) -> (round(T*dst/src), 22, 3)."""
    joints = np.asarray(joints)
    if joints.shape[0] < 2:
        return joints.copy()
    n_out = max(1, int(round(joints.shape[0] * dst_fps / src_fps)))
    t = np.minimum(np.arange(n_out) * src_fps / dst_fps, joints.shape[0] - 1)
    i0 = np.floor(t).astype(int)
    i1 = np.minimum(i0 + 1, joints.shape[0] - 1)
    a = (t - i0)[:, None, None]
    return joints[i0] * (1 - a) + joints[i1] * a
