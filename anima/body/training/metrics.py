"""Motion metrics: transition jerk (Peak Jerk, Area Under Jerk), foot skating, MPJPE, FID, R-precision.

Jerk follows FlowMDM's definition as NOTES gives it: the third finite difference of joint
positions, |.| summed over x, y, z, maximum over joints, one value per frame; here in m/s^3
(differences scaled by fps^3 at 20 fps). ``transition_jerk`` averages that curve over windows of
``TRANSITION_WINDOW`` frames centred on prompt changes; Peak Jerk is the curve's maximum and Area
Under Jerk is sum |curve - curve of real data at real transitions|.

Foot skating ratio (the GMD definition): the fraction of frames in which a foot joint (left or
right ``foot``, the toes) is within ``CONTACT_HEIGHT_M`` of the floor and slides more than
``SKATE_STEP_M`` horizontally to the next frame.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from anima.body.skeleton import BODY_FPS

TRANSITION_WINDOW = 30  # frames, centred on the prompt change
CONTACT_HEIGHT_M = 0.05
SKATE_STEP_M = 0.025  # per 20 fps frame (0.5 m/s)


def jerk_curve(joints: np.ndarray, fps: float = BODY_FPS) -> np.ndarray:
    """Per-frame jerk: max over joints of sum_xyz |d^3 p / dt^3|. (T, J, 3) -> (T,) (first 3 are 0)."""
    d3 = np.diff(np.asarray(joints, dtype=np.float64), n=3, axis=0) * fps**3  # (T-3, J, 3)
    out = np.zeros(len(joints))
    out[3:] = np.abs(d3).sum(-1).max(-1)
    return out


def transition_jerk(sequences: list[tuple[np.ndarray, list[int]]], window: int = TRANSITION_WINDOW,
                    fps: float = BODY_FPS) -> np.ndarray:
    """Mean jerk curve over windows centred on transitions. [(joints (T, J, 3), [change frames])] -> (window,)"""
    curves = []
    half = window // 2
    for joints, changes in sequences:
        curve = jerk_curve(joints, fps)
        for c in changes:
            if c - half >= 3 and c + window - half <= len(curve):
                curves.append(curve[c - half:c + window - half])
    if not curves:
        raise ValueError("transition_jerk: no transition has a full window inside its sequence")
    return np.mean(curves, axis=0)


def peak_jerk(curve: np.ndarray) -> float:
    return float(np.max(curve))


def area_under_jerk(curve: np.ndarray, real_curve: np.ndarray) -> float:
    return float(np.sum(np.abs(np.asarray(curve) - np.asarray(real_curve))))


def foot_skating_ratio(joints: np.ndarray, feet: tuple[int, int] = (10, 11)) -> float:
    """Fraction of frame pairs where a grounded foot slides > SKATE_STEP_M. (T, 22, 3) -> float"""
    joints = np.asarray(joints, dtype=np.float64)
    if len(joints) < 2:
        return 0.0
    f = joints[:, list(feet)]  # (T, 2, 3)
    grounded = (f[1:, :, 1] < CONTACT_HEIGHT_M) & (f[:-1, :, 1] < CONTACT_HEIGHT_M)  # (T-1, 2)
    slide = np.linalg.norm(f[1:, :, [0, 2]] - f[:-1, :, [0, 2]], axis=-1) > SKATE_STEP_M
    return float(np.mean(np.any(grounded & slide, axis=-1)))


def mpjpe_mm(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean per-joint position error in millimetres. (..., J, 3), (..., J, 3) -> float"""
    return float(np.linalg.norm(np.asarray(predicted) - np.asarray(target), axis=-1).mean() * 1000.0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two sets of embeddings. (N, D), (M, D) -> float"""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.all(np.isfinite(covmean)):
        eps = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def r_precision(motion: np.ndarray, text: np.ndarray, text_ids: np.ndarray, pool: np.ndarray,
                pool_ids: np.ndarray, top_k: int = 3, candidates: int = 32, repeats: int = 10,
                seed: int = 0) -> np.ndarray:
    """R-precision@1..top_k: rank each motion's own text among ``candidates - 1`` other texts.

    motion (N, D) and text (N, D) unit embeddings of matching pairs with ids text_ids (N,);
    pool (P, D) embeddings of distinct texts with ids pool_ids (P,) to draw wrong texts from.
    Returns (top_k,) fractions, averaged over ``repeats`` random draws.
    """
    rng = np.random.default_rng(seed)
    hits = np.zeros(top_k)
    total = 0
    for _ in range(repeats):
        for i in range(len(motion)):
            others = np.nonzero(pool_ids != text_ids[i])[0]
            pick = rng.choice(others, size=min(candidates - 1, len(others)), replace=False)
            cands = np.concatenate([text[i:i + 1], pool[pick]])  # (C, D), the true text first
            dist = np.linalg.norm(cands - motion[i], axis=-1)
            rank = int(np.sum(dist < dist[0]))
            hits += rank < np.arange(1, top_k + 1)
            total += 1
    return hits / max(total, 1)
