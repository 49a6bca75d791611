"""HumanML3D-263 features: layout, round trip through recover_from_ric, streaming recovery, dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anima.body.data import humanml3d as H
from anima.body.data.dataset import bandai_text, cmu_descriptions, joints_from_bvh, split_of, still_segments
from anima.body.skeleton import PARENTS, REST_JOINTS, REST_OFFSETS
from anima.testing.bvh import MOCAP

pytestmark = pytest.mark.unit
needs_mocap = pytest.mark.skipif(not MOCAP.is_dir(), reason="../shared/data/mocap not present")
# Clips of the fixed test split (anima.body.data.dataset.split_of), one per rig, and a CMU clip that
# turns through 180 degrees (the case the reference's arcsin gets wrong).
TEST_CLIPS = ["bandai-namco-1/data/dataset-1_bye_happy_001.bvh", "cmu-iclone/005/005_01.bvh",
              "bandai-namco-1/data/dataset-1_walk-back_angry_001.bvh", "cmu-iclone/001/001_08.bvh"]


def _walk(T: int = 60, turn: float = 0.05, seed: int = 0) -> np.ndarray:
    """A synthetic walk: the rest pose moving along a curve, turning, with arm and leg swing."""
    rng = np.random.default_rng(seed)
    out = np.zeros((T, 22, 3))
    yaw = np.cumsum(np.full(T, turn))
    pos = np.cumsum(np.stack([np.sin(yaw), np.zeros(T), np.cos(yaw)], -1) * 0.05, axis=0)
    for t in range(T):
        c, s = np.cos(yaw[t]), np.sin(yaw[t])
        R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        pose = REST_JOINTS.copy()
        pose[[18, 20], 2] += 0.1 * np.sin(0.3 * t)
        pose[[4, 7, 10], 2] += 0.08 * np.sin(0.3 * t + 1)
        pose += rng.normal(0, 0.003, pose.shape)
        out[t] = (pose - REST_JOINTS[0] * [1, 0, 1]) @ R.T + pos[t]
    return out


def test_feature_layout_and_contacts():
    joints = H.uniform_skeleton(_walk())
    f = H.extract_features(joints)
    assert f.shape == (59, 263)
    assert set(np.unique(f[:, 259:])) <= {0.0, 1.0}
    # ric of a frame = root-relative joints facing +Z: the pelvis->left-hip vector points to +X.
    ric = f[:, 4:67].reshape(-1, 21, 3)
    assert np.all(ric[:, 0, 0] > 0)
    # root height is the pelvis height
    np.testing.assert_allclose(f[:, 3], H.canonicalize(joints)[:-1, 0, 1])


def test_round_trip_synthetic_turning_walk():
    for turn in (0.0, 0.05, 0.2, -0.3):  # -0.3 rad/frame passes through 180 degrees fast
        joints = H.uniform_skeleton(_walk(80, turn))
        rec = H.recover_from_ric(H.extract_features(joints))
        np.testing.assert_allclose(rec, H.canonicalize(joints)[:-1], atol=1e-6)


def test_recover_from_ric_torch_matches_numpy_and_is_differentiable():
    f = H.extract_features(H.uniform_skeleton(_walk(30, 0.1)))
    t = torch.from_numpy(f).requires_grad_(True)
    out = H.recover_from_ric(t)
    np.testing.assert_allclose(out.detach().numpy(), H.recover_from_ric(f), atol=1e-12)
    out.sum().backward()
    assert torch.isfinite(t.grad).all()


def test_streaming_recovery_equals_offline():
    f = H.extract_features(H.uniform_skeleton(_walk(50, -0.2)))
    full = H.recover_from_ric(f)
    r = H.RicRecovery()
    parts = np.concatenate([r.push(f[i:i + 4]) for i in range(0, len(f), 4)])
    np.testing.assert_allclose(parts, full, atol=1e-12)


def test_uniform_skeleton_sets_bone_lengths_and_keeps_directions():
    joints = _walk() * 1.2
    out = H.uniform_skeleton(joints)
    target = np.linalg.norm(REST_OFFSETS, axis=-1)
    for j in range(1, 22):
        lengths = np.linalg.norm(out[:, j] - out[:, PARENTS[j]], axis=-1)
        np.testing.assert_allclose(lengths, target[j], atol=1e-9)
        d_in = joints[:, j] - joints[:, PARENTS[j]]
        d_out = out[:, j] - out[:, PARENTS[j]]
        cos = (d_in * d_out).sum(-1) / np.linalg.norm(d_in, axis=-1) / np.linalg.norm(d_out, axis=-1)
        assert cos.min() > 1 - 1e-9


def test_qrot_matches_matrix_reference():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    v = rng.normal(size=(50, 3))
    np.testing.assert_allclose(H.qrot(q, v), np.einsum("nij,nj->ni", H.quat_to_matrix(q), v), atol=1e-12)
    # qbetween takes u to v
    u = rng.normal(size=(50, 3))
    w = H.qbetween(u, v)
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(unit(H.qrot(w, u)), unit(v), atol=1e-9)


def test_bad_inputs():
    with pytest.raises(ValueError, match="expected"):
        H.extract_features(np.zeros((10, 21, 3)))
    with pytest.raises(ValueError, match="at least 2 frames"):
        H.extract_features(np.zeros((1, 22, 3)))
    bad = _walk(10)
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        H.extract_features(bad)
    with pytest.raises(ValueError, match="263"):
        H.recover_from_ric(np.zeros((4, 262)))


@needs_mocap
@pytest.mark.parametrize("clip", TEST_CLIPS)
def test_round_trip_real_clips_within_1mm(clip):
    joints = joints_from_bvh(MOCAP / clip)  # FK -> 22 joints, metres, Y up, 20 fps, uniform bones
    rec = H.recover_from_ric(H.extract_features(joints))
    err_mm = np.abs(rec - H.canonicalize(joints)[:-1]).max() * 1000
    assert err_mm < 1.0


@needs_mocap
def test_texts_split_and_segments():
    assert bandai_text("dataset-1_bow_happy_001") == "a person bows in a happy way"
    assert bandai_text("dataset-1_bye_normal_001") == "a person waves goodbye"
    assert bandai_text("dataset-1_walk-back_not-confident_001") == "a person walks backward in an unconfident way"
    with pytest.raises(ValueError):
        bandai_text("dataset-1_fly_normal_001")
    desc = cmu_descriptions(MOCAP / "cmu-iclone" / "index.csv")
    assert desc[(2, 1)] == "walk"
    assert "," in desc[(1, 1)]  # quoted descriptions with commas survive
    assert split_of("cmu/005_01") == "test" and split_of("bandai/dataset-1_bye_happy_001") == "test"
    joints = joints_from_bvh(MOCAP / "bandai-namco-1/data/dataset-1_bow_normal_001.bvh")
    segments = still_segments(joints)
    assert all(0 <= a < b <= len(joints) - 1 for a, b in segments)
