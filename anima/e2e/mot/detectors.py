"""A rule-based detector of the silent commands on behaviour parameters: did the clip nod, bow, wave ...?

No learning: each command has one evidence score computed from the face (25 fps, 112-D) and the
body (HumanML3D-263, 20 fps), and a threshold. It scores what the behaviour expert generates for a
command (``anima.e2e.mot.commands``)::

    scores(face, body263)   # {"nod": 0.041, "shake": 0.004, ..., "wave": 0.0}
    detect(face, body263)   # "nod", or None when no score passes its threshold

The scores, in the units of the thresholds below:

    nod / shake   head pitch / yaw band-passed to 1-4 Hz: the largest RMS over any 1 s window (rad)
    blink         the number of full eyelid closures (both lids >= 0.85) held >= 0.16 s; the idle's
                  quick blinks stay closed 0.04-0.1 s, so they do not count
    look_*        head + eye pitch / yaw relative to the clip's first 0.2 s, held: the largest value
                  the signed offset keeps for 0.8 s (rad; left = +yaw, up = -pitch)
    bow           forward tilt of the trunk (pelvis -> neck of the joints recovered by
                  ``recover_from_ric``) relative to the first 0.2 s, held 0.4 s (rad)
    wave          a wrist above its shoulder with a 1-4 Hz side-to-side oscillation: the largest RMS
                  of the lateral wrist position over any 1 s window, counted only while raised (m)

``detect`` picks the command whose score exceeds its threshold by the largest ratio.
"""

from __future__ import annotations

import numpy as np

from anima.body.skeleton import JOINT
from anima.face import params

FPS = 25  # face
BODY_FPS = 20  # body263

# Thresholds, fixed on the clips of seeds 0-199 of ``commands.command_clip`` (each command's 200 clips
# against the other commands' and 200 idle clips; benchmarks/mot_detectors.py --tune): each is the
# geometric mean of the highest score of a clip without the behaviour and the 2nd percentile of the
# clips with it, so it sits in the middle of the gap on a log scale. Held-out seeds 1000-1199 and
# talking windows of the dialogue corpus then measure them (benchmarks/results/mot_detectors.json).
THRESHOLDS: dict[str, float] = {
    "nod": 0.0255,
    "shake": 0.0387,
    "blink": 1.5,  # a count, set by hand: two long closures (the rule's 1.0 would accept one)
    "look_left": 0.2454,
    "look_right": 0.2477,
    "look_up": 0.185,
    "look_down": 0.1998,
    "bow": 0.1543,
    "wave": 0.0275,
}

BAND_HZ = (1.0, 4.0)  # nods, shakes and waves oscillate in this band; drift and breathing are below it
WINDOW_S = 1.0  # oscillation energy is measured over windows this long
STEP_FILTER_S = 0.8  # running median removing steps (longer than the slowest nod's 0.67 s period)
BASELINE_S = 0.2  # "the clip start" that look and bow offsets are relative to
LOOK_HOLD_S = 0.8
BOW_HOLD_S = 0.4
CLOSED = 0.85  # eyeBlink weight that counts as closed
BLINK_HOLD_S = 0.16
RAISED_M = 0.0  # a wrist at least this far above its shoulder counts as raised

_BLINK = [params.ARKIT_INDEX["eyeBlinkLeft"], params.ARKIT_INDEX["eyeBlinkRight"]]


def _oscillation(x: np.ndarray, fps: float, lo: float = BAND_HZ[0], hi: float = BAND_HZ[1]) -> np.ndarray:
    """What of ``x`` (T,) oscillates at [lo, hi] Hz. # (T,)

    A running median over STEP_FILTER_S is subtracted first: it follows monotone ramps exactly, so a
    turn of the head to one side (a look) leaves nothing, while an oscillation of shorter period is
    kept. The rest is band-passed with an FFT after removing the linear trend.
    """
    from scipy.ndimage import median_filter

    n = x.shape[0]
    if n < 4:
        return np.zeros_like(x)
    x = x - median_filter(x, size=int(round(STEP_FILTER_S * fps)) | 1, mode="nearest")
    t = np.arange(n)
    x = x - np.polyval(np.polyfit(t, x, 1), t)
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(n, 1.0 / fps)
    spectrum[(freqs < lo) | (freqs > hi)] = 0.0
    return np.fft.irfft(spectrum, n)


def _max_window_rms(x: np.ndarray, fps: float, weight: np.ndarray | None = None) -> float:
    """The largest RMS of ``x`` (T,) over windows of WINDOW_S (times ``weight`` (T,) in 0/1 if given)."""
    e = x * x if weight is None else x * x * weight
    k = min(max(1, int(round(WINDOW_S * fps))), e.shape[0])
    if k == 0:
        return 0.0
    means = np.convolve(e, np.ones(k) / k, mode="valid")
    return float(np.sqrt(means.max()))


def _held(x: np.ndarray, frames: int) -> float:
    """The largest value ``x`` (T,) stays at or above for ``frames`` consecutive frames."""
    frames = min(max(frames, 1), x.shape[0])
    windows = np.lib.stride_tricks.sliding_window_view(x, frames)  # (T - frames + 1, frames)
    return float(windows.min(axis=1).max())


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in ``mask`` (T,)."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(edges[1::2] - edges[0::2])


def _face_scores(face: np.ndarray) -> dict[str, float]:
    pitch = face[:, params.HEAD_PITCH].astype(np.float64)
    yaw = face[:, params.HEAD_YAW].astype(np.float64)
    out = {"nod": _max_window_rms(_oscillation(pitch, FPS), FPS), "shake": _max_window_rms(_oscillation(yaw, FPS), FPS)}
    closed = face[:, _BLINK].min(axis=1) >= CLOSED
    hold = int(round(BLINK_HOLD_S * FPS))
    out["blink"] = float(sum(n >= hold for n in _runs(closed)))
    gaze_pitch = pitch + face[:, params.EYE_PITCH].mean(axis=1)
    gaze_yaw = yaw + face[:, params.EYE_YAW].mean(axis=1)
    base = max(1, int(round(BASELINE_S * FPS)))
    dp, dy = gaze_pitch - gaze_pitch[:base].mean(), gaze_yaw - gaze_yaw[:base].mean()
    hold = int(round(LOOK_HOLD_S * FPS))
    out.update(look_left=_held(dy, hold), look_right=_held(-dy, hold), look_up=_held(-dp, hold), look_down=_held(dp, hold))
    return out


def _body_scores(body263: np.ndarray) -> dict[str, float]:
    from anima.body.data.humanml3d import recover_from_ric

    joints = recover_from_ric(np.asarray(body263, dtype=np.float64))  # (T, 22, 3)
    up = np.array([0.0, 1.0, 0.0])
    across = joints[0, JOINT["left_hip"]] - joints[0, JOINT["right_hip"]]
    across[1] = 0.0
    across /= max(np.linalg.norm(across), 1e-9)  # the subject's left at the start
    forward = np.cross(across, up)
    trunk = joints[:, JOINT["neck"]] - joints[:, JOINT["pelvis"]]  # (T, 3)
    tilt = np.arctan2(trunk @ forward, trunk @ up)  # (T,) forward lean, rad
    base = max(1, int(round(BASELINE_S * BODY_FPS)))
    out = {"bow": _held(tilt - tilt[:base].mean(), int(round(BOW_HOLD_S * BODY_FPS)))}
    wave = 0.0
    for side in ("left", "right"):
        wrist, shoulder = joints[:, JOINT[f"{side}_wrist"]], joints[:, JOINT[f"{side}_shoulder"]]
        raised = (wrist[:, 1] - shoulder[:, 1] > RAISED_M).astype(np.float64)  # (T,)
        lateral = (wrist - shoulder) @ across  # (T,) m
        wave = max(wave, _max_window_rms(_oscillation(lateral, BODY_FPS), BODY_FPS, raised))
    out["wave"] = wave
    return out


def scores(face: np.ndarray, body263: np.ndarray) -> dict[str, float]:
    """One evidence score per command (see the module docstring). face (T25, 112), body263 (T20, 263)."""
    face = np.asarray(face)
    body263 = np.asarray(body263)
    if face.ndim != 2 or face.shape[1] != params.FACE_DIM or face.shape[0] < 2:
        raise ValueError(f"face: expected (T, {params.FACE_DIM}) with T >= 2, got {face.shape}")
    if body263.ndim != 2 or body263.shape[1] != 263 or body263.shape[0] < 2:
        raise ValueError(f"body263: expected (T, 263) with T >= 2, got {body263.shape}")
    if not (np.all(np.isfinite(face)) and np.all(np.isfinite(body263))):
        raise ValueError("face / body263 contain NaN or infinite values")
    return {**_face_scores(face), **_body_scores(body263)}


def detect(face: np.ndarray, body263: np.ndarray) -> str | None:
    """The command whose score passes its threshold by the largest ratio; None when none does."""
    margins = {name: value / THRESHOLDS[name] for name, value in scores(face, body263).items()}
    best = max(margins, key=margins.__getitem__)
    return best if margins[best] >= 1.0 else None
