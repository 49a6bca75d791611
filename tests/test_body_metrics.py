"""Motion metrics against slow, obvious references and known answers."""

from __future__ import annotations

import numpy as np
import pytest

from anima.body.skeleton import REST_JOINTS
from anima.body.training.metrics import (
    area_under_jerk,
    foot_skating_ratio,
    frechet_distance,
    jerk_curve,
    mpjpe_mm,
    peak_jerk,
    r_precision,
    transition_jerk,
)

pytestmark = pytest.mark.unit


def _slow_jerk(joints: np.ndarray, fps: float) -> np.ndarray:
    out = np.zeros(len(joints))
    for t in range(3, len(joints)):
        best = 0.0
        for j in range(joints.shape[1]):
            d = joints[t, j] - 3 * joints[t - 1, j] + 3 * joints[t - 2, j] - joints[t - 3, j]
            best = max(best, float(np.abs(d * fps**3).sum()))
        out[t] = best
    return out


def test_jerk_curve_matches_reference_and_cubic_motion():
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(20, 22, 3)) * 0.01
    np.testing.assert_allclose(jerk_curve(joints), _slow_jerk(joints, 20), rtol=1e-10)
    # x(t) = t^3 (seconds): jerk 6 m/s^3 everywhere on one joint
    t = np.arange(30) / 20
    cubic = np.zeros((30, 22, 3))
    cubic[:, 5, 0] = t**3
    np.testing.assert_allclose(jerk_curve(cubic)[3:], 6.0, rtol=1e-9)


def test_transition_jerk_peak_and_area():
    still = np.tile(REST_JOINTS, (100, 1, 1))
    jump = still.copy()
    jump[50:, :, 0] += 0.1  # a 10 cm teleport at frame 50
    curve = transition_jerk([(jump, [50])])
    real = transition_jerk([(still, [50])])
    assert curve.shape == (30,)
    assert peak_jerk(curve) == pytest.approx(2 * 0.1 * 20**3)  # a step's 3rd difference is (1, -2, 1)
    assert peak_jerk(real) == 0.0
    assert area_under_jerk(curve, real) == pytest.approx(np.sum(curve))
    with pytest.raises(ValueError):
        transition_jerk([(still[:10], [5])])


def test_foot_skating():
    still = np.tile(REST_JOINTS, (40, 1, 1))
    assert foot_skating_ratio(still) == 0.0  # feet at 2 cm, not moving
    sliding = still.copy()
    sliding[:, [10, 11], 2] += np.arange(40)[:, None] * 0.05  # 5 cm per frame while grounded
    assert foot_skating_ratio(sliding) == 1.0
    lifted = sliding.copy()
    lifted[:, [10, 11], 1] += 0.2  # in the air: not skating
    assert foot_skating_ratio(lifted) == 0.0


def test_mpjpe_fid_and_r_precision():
    a = np.zeros((5, 22, 3))
    b = a.copy()
    b[..., 1] += 0.01
    assert mpjpe_mm(a, b) == pytest.approx(10.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + 1.0) == pytest.approx(8.0, rel=1e-3)
    # perfect embeddings: each motion equals its text -> R@1 = 1
    texts = rng.normal(size=(40, 16))
    texts /= np.linalg.norm(texts, axis=-1, keepdims=True)
    ids = np.arange(40)
    r = r_precision(texts, texts, ids, texts, ids, repeats=2)
    np.testing.assert_allclose(r, [1.0, 1.0, 1.0])
    # random embeddings: about k / 32
    r = r_precision(rng.normal(size=(40, 16)), texts, ids, texts, ids, repeats=20)
    assert r[0] < 0.15 and r[0] <= r[1] <= r[2]
