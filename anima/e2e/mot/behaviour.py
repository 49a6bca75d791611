"""Behaviour tokens: face (25 fps) and body (HumanML3D-263) packed one token per 80 ms audio frame.

The speech tokenizer runs at 12.5 Hz, so a behaviour token covers two 25 fps frames: the two face
vectors (112 each, anima/face/params.py) and the body features of the same two instants (263 each,
resampled from 20 to 25 fps by linear interpolation; the velocity channels are per 20 fps frame and
stay so, since ``unpack`` resamples back). Token layout (750,)::

    [face(2n) 112][face(2n+1) 112][body(2n) 263][body(2n+1) 263]
"""

from __future__ import annotations

import numpy as np

FACE_DIM, BODY_DIM = 112, 263
FACE_FPS, BODY_FPS = 25, 20
FRAMES_PER_TOKEN = 2
TOKEN_DIM = FRAMES_PER_TOKEN * (FACE_DIM + BODY_DIM)  # 750
TOKEN_S = FRAMES_PER_TOKEN / FACE_FPS  # 0.08
STD_FLOOR = 1e-3  # a dimension that never moves in the data (reserved face slots) normalises to 0, not to noise


def resample(x: np.ndarray, src_fps: float, dst_fps: float, frames: int | None = None) -> np.ndarray:
    """Linear interpolation in time. (T, D) -> (frames or round(T * dst / src), D)"""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"resample: expected (frames, dims), got shape {x.shape}")
    n = round(x.shape[0] * dst_fps / src_fps) if frames is None else frames
    if x.shape[0] == 0 or n == 0:
        return np.zeros((n, x.shape[1]), np.float32)
    t = np.clip(np.arange(n) / dst_fps * src_fps, 0, x.shape[0] - 1)
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, x.shape[0] - 1)
    w = (t - lo)[:, None].astype(np.float32)
    return (1 - w) * x[lo] + w * x[hi]


def pack(face: np.ndarray, body263: np.ndarray) -> np.ndarray:
    """(T25, 112) face + (T20, 263) body -> (T25 // 2, 750) tokens."""
    face, body263 = np.asarray(face, np.float32), np.asarray(body263, np.float32)
    if face.ndim != 2 or face.shape[1] != FACE_DIM:
        raise ValueError(f"face: expected (frames, {FACE_DIM}) at 25 fps, got {face.shape}")
    if body263.ndim != 2 or body263.shape[1] != BODY_DIM:
        raise ValueError(f"body263: expected (frames, {BODY_DIM}) at 20 fps, got {body263.shape}")
    return pack_frames(face, resample(body263, BODY_FPS, FACE_FPS, frames=face.shape[0]))


def pack_frames(face: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Both already at 25 fps and aligned: (T, 112) + (T, 263) -> (T // 2, 750)."""
    if face.shape[0] != body.shape[0]:
        raise ValueError(f"pack_frames: {face.shape[0]} face frames but {body.shape[0]} body frames")
    n = face.shape[0] // FRAMES_PER_TOKEN
    f = face[:n * FRAMES_PER_TOKEN].reshape(n, FRAMES_PER_TOKEN * FACE_DIM)
    b = body[:n * FRAMES_PER_TOKEN].reshape(n, FRAMES_PER_TOKEN * BODY_DIM)
    return np.concatenate([f, b], axis=1)  # (N, 750)


def unpack(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 750) tokens -> face (2N, 112) at 25 fps, body263 (round(2N * 0.8), 263) at 20 fps."""
    tokens = np.asarray(tokens, np.float32)
    if tokens.ndim != 2 or tokens.shape[1] != TOKEN_DIM:
        raise ValueError(f"behaviour tokens: expected (N, {TOKEN_DIM}), got {tokens.shape}")
    n = tokens.shape[0]
    split = FRAMES_PER_TOKEN * FACE_DIM
    face = tokens[:, :split].reshape(n * FRAMES_PER_TOKEN, FACE_DIM)
    body = tokens[:, split:].reshape(n * FRAMES_PER_TOKEN, BODY_DIM)
    return face, resample(body, FACE_FPS, BODY_FPS)


def statistics(tokens: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (floored) over every token of a list of (N_i, 750) arrays."""
    if not tokens:
        raise ValueError("statistics: no behaviour tokens")
    allt = np.concatenate(tokens, axis=0).astype(np.float64)
    return allt.mean(0).astype(np.float32), np.maximum(allt.std(0), STD_FLOOR).astype(np.float32)
