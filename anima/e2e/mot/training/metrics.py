"""Behaviour metrics for the mixture of transformers: lip sync, jerk, frozen frames, Frechet distance.

A behaviour clip is ``face`` (T25, 112) at 25 fps (``anima.face.params`` layout) and ``body263``
(T20, 263) HumanML3D-263 at 20 fps, the dialogue corpus's format.

- Lip sync: Pearson correlation of the jaw opening angle (``face[:, 100]``) with the speech energy
  of the audio the face speaks (frame RMS in dB, one value per 40 ms face frame), over speech
  frames only, at the best lag within +-``max_lag`` frames (reported; positive = the jaw follows
  the audio). Silence is left out: between utterances the jaw rests and the energy sits on the
  noise floor, which would inflate the correlation of any face that merely closes its mouth when
  nobody speaks. Speech frames are the caller's mask (the corpus's ``agent_speaking``, from its
  voiced segments) or, without one, frames within ``SPEECH_RANGE_DB`` of the clip's loudest frame
  and above ``SILENCE_DB``.
- Jerk (FlowMDM's definition, NOTES "Streaming smoothness"): third finite difference of joint
  positions, |.| summed over x, y, z, max over joints, one value per frame (m/s^3, the body
  module's ``jerk_curve`` on the joints ``recover_from_ric`` gives). The face analogue,
  ``face_param_jerk``, is the same on parameters: the jaw (100:103) and head (103:106) axis-angles
  are the two "joints", so it is rad/s^3 at 25 fps.
- Frozen fraction: the share of frame steps in which no face parameter moves by more than
  ``FROZEN_STEP`` (radians or expression units), to show listening frames are alive.
- ``frechet_distance``: the face module's (Gaussian fits, scipy sqrtm, clamped at 0), with its input checked.

numpy and scipy only: no torch at import (``jerk`` loads the feature decoder lazily).
"""

from __future__ import annotations

import numpy as np

from anima.body.training.metrics import jerk_curve
from anima.face.audio_features import tick_energy_db
from anima.face.params import HEAD, JAW, JAW_OPEN_ANGLE
from anima.face.training.metrics import frechet_distance as _frechet

__all__ = ["frechet_distance", "frozen_fraction", "jerk", "face_param_jerk", "lip_sync", "lip_sync_correlation",
           "speech_energy", "speech_frames"]

FACE_FPS = 25
BODY_FPS = 20
FACE_DIM = 112
BODY_DIM = 263
SILENCE_DB = -55.0  # frames quieter than this (dBFS RMS) are never speech
SPEECH_RANGE_DB = 35.0  # without a mask: speech = within this many dB of the loudest frame
FROZEN_STEP = 1e-3  # a frame step with every |d param| below this does not move


def _face(face: np.ndarray, name: str, min_frames: int = 1) -> np.ndarray:
    face = np.asarray(face, dtype=np.float64)
    if face.ndim != 2 or face.shape[1] != FACE_DIM:
        raise ValueError(f"{name}: face must be (T, {FACE_DIM}), got {face.shape}")
    if face.shape[0] < min_frames:
        raise ValueError(f"{name}: face has {face.shape[0]} frames, need at least {min_frames}")
    return face


def speech_energy(audio: np.ndarray, sr: int = 24_000, fps: int = FACE_FPS) -> np.ndarray:
    """Frame RMS energy in dBFS (floor -100), one value per face frame: frame k covers samples [k*sr/fps, (k+1)*sr/fps).

    (N,) -> (T,), T = ceil(N * fps / sr) (a last partial frame is zero-padded).
    """
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"speech_energy: audio must be a non-empty 1-D array, got shape {audio.shape}")
    if sr <= 0 or fps <= 0 or sr % fps:
        raise ValueError(f"speech_energy: sr ({sr}) must be a positive multiple of fps ({fps})")
    return tick_energy_db(audio, tick=sr // fps).astype(np.float64)  # the face module's per-tick level


def speech_frames(energy_db: np.ndarray) -> np.ndarray:
    """Frames that hold speech when no mask is given: above SILENCE_DB and within SPEECH_RANGE_DB of the loudest. (T,) -> (T,) bool"""
    energy_db = np.asarray(energy_db)
    return (energy_db > SILENCE_DB) & (energy_db > energy_db.max() - SPEECH_RANGE_DB)


def lip_sync(face: np.ndarray, audio: np.ndarray, sr: int = 24_000, speech: np.ndarray | None = None,
             max_lag: int = 2) -> tuple[float, int]:
    """(Pearson correlation of jaw opening with speech energy over speech frames, the lag it was found at).

    face (T, 112) at 25 fps; audio (N,) at ``sr`` covering the same time (N about T * sr / 25);
    speech (T,) bool or None (then ``speech_frames`` of the energy). The lag k in [-max_lag, max_lag]
    that maximises corr(jaw[t + k], energy[t]) is chosen, over the speech frames t with t + k inside
    the clip; positive k: the jaw moves after the sound. NaN when fewer than 3 speech frames remain
    or either signal is constant over them.
    """
    face = _face(face, "lip_sync")
    energy = speech_energy(audio, sr)
    t = min(len(energy), len(face))
    if abs(len(energy) - len(face)) > 1:
        raise ValueError(f"lip_sync: audio covers {len(energy)} face frames, face has {len(face)}")
    if max_lag < 0:
        raise ValueError(f"lip_sync: max_lag must be >= 0, got {max_lag}")
    jaw, energy = face[:t, JAW_OPEN_ANGLE], energy[:t]
    if speech is None:
        mask = speech_frames(energy)
    else:
        mask = np.asarray(speech, dtype=bool)
        if mask.shape != (len(face),) and mask.shape != (t,):
            raise ValueError(f"lip_sync: speech mask must be ({len(face)},), got {mask.shape}")
        mask = mask[:t]
    best = (float("nan"), 0)
    for lag in range(-max_lag, max_lag + 1):
        idx = np.flatnonzero(mask)
        idx = idx[(idx + lag >= 0) & (idx + lag < t)]
        if len(idx) < 3:
            continue
        j, e = jaw[idx + lag], energy[idx]
        if j.std() < 1e-12 or e.std() < 1e-12:
            continue
        r = float(np.corrcoef(j, e)[0, 1])
        if np.isnan(best[0]) or r > best[0]:
            best = (r, lag)
    return best


def lip_sync_correlation(face: np.ndarray, audio: np.ndarray, sr: int = 24_000, speech: np.ndarray | None = None,
                         max_lag: int = 2) -> float:
    """The correlation of ``lip_sync`` alone (the issue's acceptance: >= 0.6)."""
    return lip_sync(face, audio, sr, speech, max_lag)[0]


def face_param_jerk(face: np.ndarray, fps: float = FACE_FPS) -> np.ndarray:
    """Per-frame parameter jerk of jaw and head: max over the two of sum_xyz |d^3 angle / dt^3|, rad/s^3. (T, 112) -> (T,)"""
    face = _face(face, "face_param_jerk", min_frames=4)
    angles = np.stack([face[:, JAW], face[:, HEAD]], axis=1)  # (T, 2, 3)
    return jerk_curve(angles, fps)


def jerk(face: np.ndarray, body263: np.ndarray) -> dict[str, float]:
    """Mean and peak jerk of a clip: body joints (m/s^3, 20 fps) and face parameters (rad/s^3, 25 fps).

    face (T25, 112), body263 (T20, 263), each at least 4 frames. The first three frames of each
    curve (no third difference yet) are left out of the mean and the peak.
    """
    from anima.body.data.humanml3d import recover_from_ric  # torch: loaded only when body jerk is asked for

    body = np.asarray(body263, dtype=np.float32)
    if body.ndim != 2 or body.shape[1] != BODY_DIM or len(body) < 4:
        raise ValueError(f"jerk: body263 must be (T >= 4, {BODY_DIM}), got {body.shape}")
    body_curve = jerk_curve(recover_from_ric(body), BODY_FPS)[3:]
    face_curve = face_param_jerk(face)[3:]
    return {"body_jerk_mean": float(body_curve.mean()), "body_jerk_peak": float(body_curve.max()),
            "face_param_jerk_mean": float(face_curve.mean()), "face_param_jerk_peak": float(face_curve.max())}


def frozen_fraction(face: np.ndarray, step: float = FROZEN_STEP) -> float:
    """Share of frame steps in which no face parameter changes by more than ``step``. (T >= 2, 112) -> float"""
    face = _face(face, "frozen_fraction", min_frames=2)
    moved = np.abs(np.diff(face, axis=0)).max(axis=1)  # (T-1,)
    return float(np.mean(moved <= step))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two sets of embeddings. (N, D), (M, D), N, M >= 2 -> float >= 0"""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    for name, x in (("a", a), ("b", b)):
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"frechet_distance: {name} must be (N >= 2, D) embeddings, got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"frechet_distance: {name} holds NaN or inf")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: a has {a.shape[1]} dimensions, b has {b.shape[1]}")
    return _frechet(a, b)


def corpus_report(corpus_dir: str, split: str = "val", limit: int | None = None) -> dict[str, float]:
    """What the dialogue corpus's own agent scores: lip sync over its voiced segments, frozen fractions, jerk.

    Each conversation whole: lip sync with the ``agent_speaking`` mask (best lag in +-2 frames and at
    lag 0), frozen fraction over listening frames (the visitor speaking, the agent not) and over
    speaking frames; averages over conversations.
    """
    from anima.e2e.data.format import open_corpus

    corpus = open_corpus(corpus_dir, split=split)
    rows = []
    for i in range(len(corpus) if limit is None else min(limit, len(corpus))):
        w = corpus.window(i, 0.0, corpus.conversations[i]["frames"] / FACE_FPS)
        if w is None:
            continue
        speaking, listening = w["agent_speaking"], w["user_speaking"] & ~w["agent_speaking"]
        r, lag = lip_sync(w["face"], w["agent_audio"], speech=speaking)
        row = {"lip_sync": r, "lip_sync_lag": lag, "lip_sync_lag0": lip_sync_correlation(w["face"], w["agent_audio"], speech=speaking, max_lag=0),
               "frozen_speaking": frozen_fraction(w["face"][speaking]) if speaking.sum() > 1 else np.nan,
               "frozen_listening": frozen_fraction(w["face"][listening]) if listening.sum() > 1 else np.nan}
        rows.append(row | jerk(w["face"], w["body263"]))
    if not rows:
        raise ValueError(f"{corpus_dir}: no readable {split!r} conversation")
    out = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
    out["lip_sync_min"] = float(np.nanmin([r["lip_sync"] for r in rows]))
    out["conversations"] = len(rows)
    return out


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Score the dialogue corpus's own agent behaviour (lip sync, frozen, jerk).")
    parser.add_argument("--corpus", default="out/dialogues")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(corpus_report(args.corpus, args.split, args.limit), indent=1))
