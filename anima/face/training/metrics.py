"""Face-motion metrics in parameter space, named for what they measure.

The paper (and ARTalk) measure lip sync and dynamics on FLAME *vertices* (LVE, MHD, FDD in mm),
which need the licence-gated FLAME model. These are their analogues on the motion parameters
(``anima.face.motion``), computed separately on speaking frames (the speaker's own speech is
active) and listening frames (it is not):

- ``lip_max_err`` (LVE analogue): sqrt(mean over frames of the max over lip parameters of the
  squared error); lip parameters = the mouth blendshape weights and jawOpen (jaw angle / 0.4 rad),
  all in ARKit weight units (0..1).
- ``param_err`` (MHD analogue): RMS error over all expression weights and jawOpen.
- ``jaw_rmse_deg``: RMS error of the jaw opening angle.
- ``upper_dd`` (FDD analogue, upper-face dynamics deviation): mean over upper-face weights (blinks,
  squints, brows, cheeks, nose) of |std_t(pred) - std_t(gt)|, x100 (weight percent).
- ``head_dd_deg`` (PDD analogue): the same for the three head angles, in degrees.
- ``jaw_dd_deg`` (JDD analogue): the same for the jaw opening angle, in degrees.
- ``expr_fd`` (F-FID analogue): Frechet distance between Gaussians fitted to the predicted and the
  true per-frame expression weights (41-D), pooled over the test set.
- ``pose_fd`` (P-FID analogue): the same for head and jaw angles (5-D, radians).

Temporal standard deviations are taken within each contiguous segment of at least 1 s and
averaged with the segment lengths as weights, so switching between segments adds no variance.

Acceptance checks of the face issue: ``jaw_energy_r`` (Pearson r between the predicted jaw opening
and the speaker's own level in dB, clipped to [-60, 0], over all frames; also over speaking frames
only) and ``listen_std_ratio_head`` / ``listen_std_ratio_expr`` (predicted / true temporal std of
head pose and expression weights on listening segments; 1.0 is perfect, < 1 is a stiffer face).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from anima.face import motion as M
from anima.face import params

DEG = 180.0 / math.pi
MIN_SEGMENT = 25  # frames


def segments(mask: np.ndarray, min_len: int = MIN_SEGMENT) -> list[tuple[int, int]]:
    """[start, end) runs of True in ``mask`` that are at least ``min_len`` long."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_len]


def lip_weights(motion: np.ndarray) -> np.ndarray:
    """Mouth weights plus jawOpen as a weight. # (T, n_lip + 1)"""
    return np.concatenate([motion[:, M.LIPS], motion[:, [M.JAW_OPEN]] / params.JAW_OPEN_MAX_RAD], axis=1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the rows of a and b (N, D)."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    eps = 1e-8 * np.eye(ca.shape[0])
    covmean = linalg.sqrtm((ca + eps) @ (cb + eps))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    fd = float(np.sum((mu_a - mu_b) ** 2) + np.trace(ca) + np.trace(cb) - 2.0 * np.trace(covmean))
    return max(fd, 0.0)  # round-off can leave a tiny negative for identical sets


@dataclass
class TrackPair:
    """A predicted and a true motion track of one speaker, with its own-speech mask and level."""

    pred: np.ndarray  # (T, 50)
    gt: np.ndarray  # (T, 50)
    speaking: np.ndarray  # (T,) bool
    energy_db: np.ndarray  # (T,)


def _segment_stds(x: np.ndarray, segs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment temporal std (n_seg, D) and segment lengths (n_seg,)."""
    return np.stack([x[a:b].std(0) for a, b in segs]), np.array([b - a for a, b in segs], dtype=np.float64)


def _dynamics(pairs: list[TrackPair], listening: bool) -> dict[str, float]:
    dev = {"upper": [], "head": [], "jaw": []}
    std = {"pred_head": [], "gt_head": [], "pred_expr": [], "gt_expr": []}
    weights = []
    groups = {"upper": M.UPPER_FACE, "head": M.HEAD, "jaw": np.array([M.JAW_OPEN])}
    for p in pairs:
        segs = segments(~p.speaking if listening else p.speaking)
        if not segs:
            continue
        sp, w = _segment_stds(p.pred, segs)
        sg, _ = _segment_stds(p.gt, segs)
        weights.append(w)
        for name, idx in groups.items():
            dev[name].append(np.abs(sp[:, idx] - sg[:, idx]).mean(1))
        std["pred_head"].append(sp[:, M.HEAD].mean(1))
        std["gt_head"].append(sg[:, M.HEAD].mean(1))
        std["pred_expr"].append(sp[:, M.EXPRESSION].mean(1))
        std["gt_expr"].append(sg[:, M.EXPRESSION].mean(1))
    if not weights:
        return {}
    w = np.concatenate(weights)

    def avg(values: list[np.ndarray]) -> float:
        return float(np.sum(np.concatenate(values) * w) / w.sum())

    return {
        "upper_dd": avg(dev["upper"]) * 100.0,
        "head_dd_deg": avg(dev["head"]) * DEG,
        "jaw_dd_deg": avg(dev["jaw"]) * DEG,
        "std_ratio_head": avg(std["pred_head"]) / max(avg(std["gt_head"]), 1e-12),
        "std_ratio_expr": avg(std["pred_expr"]) / max(avg(std["gt_expr"]), 1e-12),
        "seconds": float(w.sum() / 25.0),
    }


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def evaluate(pairs: list[TrackPair]) -> dict[str, float]:
    """All metrics over a test set of speaker tracks (see the module docstring)."""
    if not pairs:
        raise ValueError("evaluate: no tracks")
    for p in pairs:
        if p.pred.shape != p.gt.shape or p.pred.shape[1] != M.MOTION_DIM or len(p.speaking) != len(p.gt):
            raise ValueError(f"evaluate: shapes differ: pred {p.pred.shape}, gt {p.gt.shape}, mask {np.shape(p.speaking)}")
    out: dict[str, float] = {}
    spk = [(p.pred[p.speaking], p.gt[p.speaking]) for p in pairs]
    pred_s = np.concatenate([a for a, _ in spk])
    gt_s = np.concatenate([b for _, b in spk])
    if len(gt_s):
        err_lip = lip_weights(pred_s) - lip_weights(gt_s)
        out["speak_lip_max_err"] = float(np.sqrt(np.mean(np.max(err_lip**2, axis=1))))
        expr_jaw = np.concatenate([M.EXPRESSION, [M.JAW_OPEN]])
        e = pred_s[:, expr_jaw] - gt_s[:, expr_jaw]
        e[:, -1] /= params.JAW_OPEN_MAX_RAD
        out["speak_param_err"] = float(np.sqrt(np.mean(e**2)))
        out["speak_jaw_rmse_deg"] = float(np.sqrt(np.mean((pred_s[:, M.JAW_OPEN] - gt_s[:, M.JAW_OPEN]) ** 2)) * DEG)
    for name, listening in (("speak", False), ("listen", True)):
        for key, value in _dynamics(pairs, listening).items():
            out[f"{name}_{key}"] = value
    pose = np.concatenate([M.HEAD, M.JAW])
    pred_l = np.concatenate([p.pred[~p.speaking] for p in pairs])
    gt_l = np.concatenate([p.gt[~p.speaking] for p in pairs])
    out["listen_expr_fd"] = frechet_distance(pred_l[:, M.EXPRESSION], gt_l[:, M.EXPRESSION])
    out["listen_pose_fd"] = frechet_distance(pred_l[:, pose], gt_l[:, pose])
    # Acceptance: the jaw follows the own voice.
    jaw = np.concatenate([p.pred[:, M.JAW_OPEN] for p in pairs])
    jaw_gt = np.concatenate([p.gt[:, M.JAW_OPEN] for p in pairs])
    level = np.concatenate([np.clip(p.energy_db, -60.0, 0.0) for p in pairs])
    speaking = np.concatenate([p.speaking for p in pairs])
    out["jaw_energy_r"] = _pearson(jaw, level)
    out["jaw_energy_r_speaking"] = _pearson(jaw[speaking], level[speaking])
    out["gt_jaw_energy_r"] = _pearson(jaw_gt, level)
    out["gt_jaw_energy_r_speaking"] = _pearson(jaw_gt[speaking], level[speaking])
    return out
