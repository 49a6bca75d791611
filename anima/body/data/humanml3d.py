"""HumanML3D's 263-D motion features, computed as the reference (EricGuo5513/HumanML3D) defines them.

    joints = uniform_skeleton(joints)             # (T, 22, 3) bone lengths of skeleton.REST_OFFSETS
    features = extract_features(joints)           # (T - 1, 263)
    recovered = recover_from_ric(features)        # (T - 1, 22, 3) == canonicalize(joints)[:-1]

Layout of one frame (the reference's ``process_file``):
    [0]        root angular velocity about Y (radians per frame, *half* angle, as the reference)
    [1:3]      root linear velocity in XZ, in the root's facing frame
    [3]        root height
    [4:67]     21 x 3 joint positions relative to the root, facing +Z ("ric")
    [67:193]   21 x 6 joint rotations, continuous 6-D (first two columns of the matrix)
    [193:259]  22 x 3 joint velocities in the root's facing frame
    [259:263]  foot contacts: left ankle, left foot, right ankle, right foot (squared speed < 0.002)

Steps, in the reference's order: put the lowest joint of the clip on the floor (y = 0), move
the first frame's root to x = z = 0, rotate the clip so that the first frame faces +Z (hips and
shoulders give the left-right axis), then per frame: the facing rotation from the same joints
(smoothed over time with a Gaussian, sigma 20 frames), velocities in that frame, ric positions.

One reference bug is fixed: the relative root rotation is taken with w >= 0 before its arcsin,
so that a turn through 180 degrees integrates correctly (the reference jumps by a full turn of
half angle there and recover_from_ric no longer reproduces the joints). Two quirks of the
reference are kept on purpose so that features match HumanML3D's: (1) its
inverse kinematics reads the face-joint list as (l_hip, r_hip, sdr_r, sdr_l) although it is
ordered (r_hip, l_hip, r_sdr, l_sdr), so the per-frame facing comes from the shoulder axis
*minus* the hip axis (still the right direction on a human, whose shoulders are wider than its
hips); (2) arm chains start from the root's rotation, not the spine's. Neither affects
``recover_from_ric``, which only uses the root velocities and ric positions.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from anima.body.skeleton import (
    FACE_JOINTS,
    FEET_LEFT,
    FEET_RIGHT,
    KINEMATIC_CHAIN,
    NUM_JOINTS,
    PARENTS,
    REST_OFFSETS,
    resample_joints,
)

FEATURE_DIM = 263
FEET_THRESHOLD = 0.002  # squared displacement per frame (m^2) below which a foot is in contact
# Unit direction of every bone in the rest pose (the reference's t2m_raw_offsets). # (22, 3)
RAW_OFFSETS = np.array(
    [
        [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
        [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
        [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
    ],
    dtype=np.float64,
)
# Feature slices.
ROOT_ROT_VEL = slice(0, 1)
ROOT_LIN_VEL = slice(1, 3)
ROOT_Y = slice(3, 4)
RIC = slice(4, 4 + 21 * 3)
ROT6D = slice(67, 67 + 21 * 6)
LOCAL_VEL = slice(193, 193 + NUM_JOINTS * 3)
CONTACTS = slice(259, 263)
FEATURE_GROUPS = {"root_rot_vel": ROOT_ROT_VEL, "root_lin_vel": ROOT_LIN_VEL, "root_y": ROOT_Y, "ric": RIC,
                  "rot6d": ROT6D, "local_vel": LOCAL_VEL, "contacts": CONTACTS}


# --- quaternions (w, x, y, z), numpy, broadcasting over leading axes ---------------------------

def qmul(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = np.moveaxis(q, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(r, -1, 0)
    return np.stack(
        [w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
         w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2],
        axis=-1,
    )


def qinv(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (..., 3) by unit quaternions ``q`` (..., 4)."""
    u = q[..., 1:]
    uv = np.cross(u, v)
    return v + 2.0 * (q[..., :1] * uv + np.cross(u, uv))


def qbetween(v0: np.ndarray, v1: np.ndarray) -> np.ndarray:
    """The shortest-arc rotation taking direction ``v0`` to ``v1``. (..., 3), (..., 3) -> (..., 4)"""
    v = np.cross(v0, v1)
    w = np.sqrt((v0**2).sum(-1, keepdims=True) * (v1**2).sum(-1, keepdims=True)) + (v0 * v1).sum(-1, keepdims=True)
    q = np.concatenate([w, v], axis=-1)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.moveaxis(q, -1, 0)
    m = np.stack(
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
         2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
         2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        axis=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


# --- the reference's processing ------------------------------------------------------------------

def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """Length of each bone (the joint's offset from its parent; 0 for the root). (..., 22, 3) -> (..., 22)"""
    parents = np.array([0] + list(PARENTS[1:]))
    lengths = np.linalg.norm(joints - joints[..., parents, :], axis=-1)
    lengths[..., 0] = 0.0
    return lengths


def uniform_skeleton(joints: np.ndarray, target_offsets: np.ndarray = REST_OFFSETS) -> np.ndarray:
    """Retarget a clip to the target skeleton's bone lengths, keeping every bone's direction.

    The reference's ``uniform_skeleton``: IK to unit-direction rotations, then FK with the target
    offsets, which amounts to rescaling each bone along its own direction; the root trajectory is
    scaled by the ratio of leg lengths (knee->ankle + ankle->foot bones, the reference's l_idx).
    (T, 22, 3) -> (T, 22, 3)
    """
    joints = np.asarray(joints, dtype=np.float64)
    target = np.linalg.norm(np.asarray(target_offsets, dtype=np.float64), axis=-1)
    target[0] = 0.0
    source = bone_lengths(joints[0])
    leg = [5, 8]  # bones ending at the right knee and ankle: the reference's l_idx1, l_idx2
    scale = target[leg].sum() / max(source[leg].sum(), 1e-9)
    out = np.empty_like(joints)
    out[:, 0] = joints[:, 0] * scale
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        bone = joints[:, j] - joints[:, p]
        norm = np.linalg.norm(bone, axis=-1, keepdims=True)
        out[:, j] = out[:, p] + bone / np.maximum(norm, 1e-12) * target[j]
    return out


def _forward(joints: np.ndarray, reference_quirk: bool) -> np.ndarray:
    """Each frame's (unnormalised) forward direction in the XZ plane. (T, 22, 3) -> (T, 3)"""
    r_hip, l_hip, r_sdr, l_sdr = FACE_JOINTS
    if reference_quirk:  # the reference's IK unpacks the list as l_hip, r_hip, sdr_r, sdr_l
        across = (joints[:, l_hip] - joints[:, r_hip]) + (joints[:, r_sdr] - joints[:, l_sdr])
    else:
        across = (joints[:, r_hip] - joints[:, l_hip]) + (joints[:, r_sdr] - joints[:, l_sdr])
    across = across / np.linalg.norm(across, axis=-1, keepdims=True)
    forward = np.cross(np.array([[0.0, 1.0, 0.0]]), across)
    return forward


def canonicalize(joints: np.ndarray) -> np.ndarray:
    """Floor at y = 0, first root at x = z = 0, first frame facing +Z. (T, 22, 3) -> (T, 22, 3)"""
    positions = np.array(joints, dtype=np.float64)
    positions[..., 1] -= positions[..., 1].min()
    positions -= positions[0, 0] * np.array([1.0, 0.0, 1.0])
    forward = _forward(positions[:1], reference_quirk=False)[0]
    forward /= np.linalg.norm(forward)
    q = qbetween(forward, np.array([0.0, 0.0, 1.0]))
    return qrot(np.broadcast_to(q, positions.shape[:-1] + (4,)), positions)


def _inverse_kinematics(joints: np.ndarray) -> np.ndarray:
    """The reference's ``inverse_kinematics_np(smooth_forward=True)``. (T, 22, 3) -> (T, 22, 4)"""
    forward = _forward(joints, reference_quirk=True)
    forward = gaussian_filter1d(forward, 20, axis=0, mode="nearest")
    forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    root = qbetween(forward, np.broadcast_to(np.array([0.0, 0.0, 1.0]), forward.shape))
    root[0] = np.array([1.0, 0.0, 0.0, 0.0])  # the reference pins the first frame's facing
    quats = np.zeros(joints.shape[:-1] + (4,))
    quats[:, 0] = root
    for chain in KINEMATIC_CHAIN:
        R = root  # every chain starts from the root's rotation (reference quirk 2)
        for parent, child in zip(chain[:-1], chain[1:], strict=False):
            u = np.broadcast_to(RAW_OFFSETS[child], forward.shape)
            v = joints[:, child] - joints[:, parent]
            v = v / np.linalg.norm(v, axis=-1, keepdims=True)
            local = qmul(qinv(R), qbetween(u, v))
            quats[:, child] = local
            R = qmul(R, local)
    return quats


def extract_features(joints: np.ndarray, feet_threshold: float = FEET_THRESHOLD) -> np.ndarray:
    """HumanML3D features of a joint sequence (20 fps, metres, Y up). (T, 22, 3) -> (T - 1, 263)

    The input should already have uniform bone lengths (``uniform_skeleton``) if it is to be
    compared with other clips; canonical placement (floor, origin, facing) is applied here.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"extract_features: expected (T, 22, 3) joints, got {joints.shape}")
    if joints.shape[0] < 2:
        raise ValueError(f"extract_features: need at least 2 frames, got {joints.shape[0]}")
    if not np.all(np.isfinite(joints)):
        raise ValueError("extract_features: joints contain NaN or inf")
    positions = canonicalize(joints)
    global_positions = positions.copy()

    # Foot contacts: squared displacement to the next frame below the threshold.
    def contacts(ids: tuple[int, int]) -> np.ndarray:
        d = ((positions[1:, list(ids)] - positions[:-1, list(ids)]) ** 2).sum(-1)  # (T-1, 2)
        return (d < feet_threshold).astype(np.float64)

    feet_l, feet_r = contacts(FEET_LEFT), contacts(FEET_RIGHT)

    quats = _inverse_kinematics(positions)  # (T, 22, 4)
    mats = quat_to_matrix(quats)
    cont6d = np.concatenate([mats[..., 0], mats[..., 1]], axis=-1)  # (T, 22, 6)
    r_rot = quats[:, 0]  # (T, 4)
    velocity = qrot(r_rot[1:], positions[1:, 0] - positions[:-1, 0])  # (T-1, 3)
    r_velocity = qmul(r_rot[1:], qinv(r_rot[:-1]))  # (T-1, 4)
    # Same rotation, w >= 0: the reference skips this, and its arcsin then gets the wrong sign on
    # the frame where the facing crosses 180 degrees (q and -q), which breaks recover_from_ric.
    r_velocity = np.where(r_velocity[:, :1] < 0, -r_velocity, r_velocity)

    # ric: root-relative in XZ, rotated to face +Z.
    ric = positions.copy()
    ric[..., 0] -= ric[:, 0:1, 0]
    ric[..., 2] -= ric[:, 0:1, 2]
    ric = qrot(np.repeat(r_rot[:, None], NUM_JOINTS, axis=1), ric)

    root_y = ric[:, 0, 1:2]
    root_data = np.concatenate([np.arcsin(np.clip(r_velocity[:, 2:3], -1, 1)), velocity[:, [0, 2]], root_y[:-1]], axis=-1)
    rot_data = cont6d[:, 1:].reshape(len(cont6d), -1)
    ric_data = ric[:, 1:].reshape(len(ric), -1)
    local_vel = qrot(np.repeat(r_rot[:-1, None], NUM_JOINTS, axis=1), global_positions[1:] - global_positions[:-1])
    local_vel = local_vel.reshape(len(local_vel), -1)
    data = np.concatenate([root_data, ric_data[:-1], rot_data[:-1], local_vel, feet_l, feet_r], axis=-1)
    assert data.shape[1] == FEATURE_DIM
    return data


# --- recovery ------------------------------------------------------------------------------------

def _tqrot(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    u = q[..., 1:]
    uv = torch.cross(u, v, dim=-1)
    return v + 2.0 * (q[..., :1] * uv + torch.cross(u, uv, dim=-1))


def _root_quat(angle: torch.Tensor) -> torch.Tensor:
    """Inverse of the facing rotation for a half angle: qinv((cos a, 0, sin a, 0)). (...,) -> (..., 4)"""
    zeros = torch.zeros_like(angle)
    return torch.stack([torch.cos(angle), zeros, -torch.sin(angle), zeros], dim=-1)


def recover_from_ric(features: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Joint positions from features: integrate root rotation and XZ velocity, place the ric joints.

    (..., T, 263) -> (..., T, 22, 3); numpy in, numpy out; torch in, torch out (differentiable).
    """
    is_numpy = isinstance(features, np.ndarray)
    data = torch.from_numpy(features) if is_numpy else features
    if data.shape[-1] != FEATURE_DIM:
        raise ValueError(f"recover_from_ric: expected (..., T, 263) features, got {tuple(data.shape)}")
    rot_vel = data[..., 0]
    angle = torch.cumsum(torch.cat([torch.zeros_like(rot_vel[..., :1]), rot_vel[..., :-1]], dim=-1), dim=-1)
    inv_root = _root_quat(angle)  # (..., T, 4)
    step = torch.zeros(data.shape[:-1] + (3,), dtype=data.dtype)
    step[..., 1:, 0] = data[..., :-1, 1]
    step[..., 1:, 2] = data[..., :-1, 2]
    root = torch.cumsum(_tqrot(inv_root, step), dim=-2)  # (..., T, 3)
    root = torch.cat([root[..., :1], data[..., 3:4], root[..., 2:3]], dim=-1)
    ric = data[..., RIC].reshape(data.shape[:-1] + (21, 3))
    joints = _tqrot(inv_root[..., None, :].expand(ric.shape[:-1] + (4,)), ric)
    joints = joints + torch.stack([root[..., 0], torch.zeros_like(root[..., 0]), root[..., 2]], dim=-1)[..., None, :]
    out = torch.cat([root[..., None, :], joints], dim=-2)
    return out.numpy() if is_numpy else out


class RicRecovery:
    """``recover_from_ric`` one chunk at a time, for a stream of feature frames.

    ``push(features)`` returns the joints of those frames exactly as ``recover_from_ric`` would
    for the whole stream so far (the root's angle and position carry over between chunks).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.angle = 0.0  # root half angle of the last frame pushed
        self.position = np.zeros(3)  # root XZ of the last frame pushed (y unused)
        self._pending: np.ndarray | None = None  # last frame's (rot_vel, vx, vz), applied to the next frame

    def push(self, features: np.ndarray) -> np.ndarray:
        """(n, 263) -> (n, 22, 3)."""
        features = np.asarray(features, dtype=np.float64)
        n = len(features)
        if n == 0:
            return np.zeros((0, NUM_JOINTS, 3))
        # Frame i integrates the velocities of frame i - 1 (the previous chunk's last for i = 0).
        prev = np.concatenate([self._pending[None] if self._pending is not None else np.zeros((1, 3)), features[:-1, :3]])
        angle = self.angle + np.cumsum(prev[:, 0])  # (n,)
        inv = np.stack([np.cos(angle), np.zeros(n), -np.sin(angle), np.zeros(n)], axis=-1)  # (n, 4)
        step = np.stack([prev[:, 1], np.zeros(n), prev[:, 2]], axis=-1)  # (n, 3)
        root = self.position + np.cumsum(qrot(inv, step), axis=0)  # (n, 3)
        ric = features[:, RIC].reshape(n, 21, 3)
        joints = qrot(np.repeat(inv[:, None], 21, axis=1), ric)  # (n, 21, 3)
        joints[..., 0] += root[:, None, 0]
        joints[..., 2] += root[:, None, 2]
        out = np.concatenate([np.stack([root[:, 0], features[:, 3], root[:, 2]], axis=-1)[:, None], joints], axis=1)
        self.angle, self.position = float(angle[-1]), root[-1]
        self._pending = features[-1, :3].copy()
        return out


# --- normalisation -------------------------------------------------------------------------------

def feature_stats(features: np.ndarray, contact_bias: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std for normalising features, the text-to-motion way: one std per feature group
    (the group's mean std), contacts' std multiplied by ``contact_bias`` so they weigh less.
    (N, 263) -> (263,), (263,)
    """
    mean = features.mean(axis=0)
    raw = features.std(axis=0)
    std = np.empty_like(raw)
    for name, group in FEATURE_GROUPS.items():
        std[group] = raw[group].mean() * (contact_bias if name == "contacts" else 1.0)
    return mean, np.maximum(std, 1e-4)


def features_from_video_joints(joints: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """HumanML3D-263 at 20 fps from joints at the video rate. (T, 22, 3) -> (round(T * 20 / fps), 263) float32

    ``extract_features`` gives one row fewer than its input (velocities need a next frame): the last
    row is repeated. Features are canonical for the whole clip (origin and facing of its first frame).
    """
    j20 = resample_joints(np.asarray(joints, dtype=np.float64), fps, 20)
    if j20.shape[0] < 2:
        return np.zeros((j20.shape[0], FEATURE_DIM), dtype=np.float32)
    feats = extract_features(j20)
    return np.concatenate([feats, feats[-1:]], axis=0).astype(np.float32)
