"""Silent behaviour commands ("nod", "look left", ...) and their target clips, made procedurally.

The behaviour expert learns to follow spoken commands from clips where nothing is said: a calm
idle character (``ProceduralFace`` with silence in both ears, ``ProceduralBody`` with no prompt)
on which the commanded behaviour starts at a random onset with a random amplitude and speed::

    clip = command_clip("nod", seed=3)          # CommandClip: phrase, face (75, 112), body263 (60, 263)
    phrase_for("nod", seed=3, heldout=True)    # a wording never used in training

Head commands (nod, shake, blink, look_*) are written on the face parameters (25 fps, layout of
``anima.face.params``); bow and wave move the 25 fps joints, which become HumanML3D-263 at 20 fps
through ``anima.body.data.humanml3d.features_from_video_joints``, as in the dialogue corpus. Directions are the
character's own: "look left" turns to the subject's left (+yaw), "look up" is negative pitch.

The idle baseline is kept clear of what ``anima.e2e.mot.detectors`` looks for: blinks are rare
(one every ~12 s) and quick (a deliberate blink holds the lids closed 4x longer), there is no
audio, so no listening nods or glances, and the head only drifts by a few degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from anima.body.base import VideoRateBody
from anima.body.procedural import ProceduralBody
from anima.body.skeleton import JOINT, NUM_JOINTS, PARENTS
from anima.easing import smoothstep
from anima.face import params
from anima.face.listening import IdleConfig
from anima.face.procedural import ProceduralFace

FPS = 25  # face and joints
BODY_FPS = 20  # body263
MIN_DURATION_S, MAX_DURATION_S = 3.0, 60.0  # every behaviour fits in 3 s from the latest onset
ONSET_S = (0.2, 0.8)  # the behaviour starts at a uniform time in this range

COMMANDS = ("nod", "shake", "blink", "look_left", "look_right", "look_up", "look_down", "bow", "wave")

# Frozen: changing a phrase changes every clip's text and the held-out evaluation.
TRAIN_PHRASES: dict[str, tuple[str, ...]] = {
    "nod": ("nod", "nod your head", "please nod", "give me a nod", "nod yes"),
    "shake": ("shake your head", "shake your head no", "please shake your head", "give me a head shake"),
    "blink": ("blink", "blink twice", "please blink", "blink your eyes"),
    "look_left": ("look left", "look to the left", "please look left", "turn your eyes left"),
    "look_right": ("look right", "look to the right", "please look right", "turn your eyes right"),
    "look_up": ("look up", "look upward", "please look up", "raise your eyes"),
    "look_down": ("look down", "look downward", "please look down", "lower your eyes"),
    "bow": ("bow", "take a bow", "please bow", "bow to me"),
    "wave": ("wave", "wave at me", "please wave", "wave your hand"),
}
HELDOUT_PHRASES: dict[str, tuple[str, ...]] = {
    "nod": ("could you nod for me", "show me you agree with a nod", "bob your head up and down"),
    "shake": ("could you shake your head", "signal no with your head", "turn your head side to side"),
    "blink": ("could you blink a couple of times", "close your eyes twice quickly", "give me two blinks"),
    "look_left": ("glance over to your left", "could you look to your left side", "eyes to the left please"),
    "look_right": ("glance over to your right", "could you look to your right side", "eyes to the right please"),
    "look_up": ("look at the ceiling", "could you turn your gaze upward", "eyes up please"),
    "look_down": ("look at the floor", "could you turn your gaze downward", "eyes down please"),
    "bow": ("could you bow for me", "make a little bow", "bend forward politely"),
    "wave": ("say hello with your hand", "could you wave for me", "give me a wave goodbye"),
}

# The calm baseline: rare blinks, no doubles, the default head drift.
IDLE_CONFIG = IdleConfig(blink_interval_s=12.0, blink_min_gap_s=3.0, double_blink_p=0.0)
_BLINK = [params.ARKIT_INDEX["eyeBlinkLeft"], params.ARKIT_INDEX["eyeBlinkRight"]]
_WIDE_SQUINT = [params.ARKIT_INDEX[n] for n in ("eyeWideLeft", "eyeWideRight", "eyeSquintLeft", "eyeSquintRight")]
_HEAD_LIMIT = 0.9 * params.HEAD_MAX_RAD
_VOR = 0.8  # the eyes counter-rotate this share of a nod / shake, so the gaze stays on the listener


@dataclass
class CommandClip:
    """One silent command and the behaviour that answers it."""

    command: str  # one of COMMANDS, or "idle" (no command: ``idle_clip``)
    phrase: str  # the spoken wording ("" for idle)
    face: np.ndarray  # (T25, 112) float32, 25 fps
    body263: np.ndarray  # (T20, 263) float32, 20 fps, T20 = round(T25 * 0.8)
    onset_s: float  # when the behaviour starts (0 for idle)
    end_s: float  # when it is over (the clip's end if it lasts past it; 0 for idle)


def _check(command: str | None, duration_s: float) -> None:
    if command is not None and command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; expected one of {', '.join(COMMANDS)}")
    try:
        ok = math.isfinite(float(duration_s)) and MIN_DURATION_S <= float(duration_s) <= MAX_DURATION_S
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"duration_s must be in [{MIN_DURATION_S}, {MAX_DURATION_S}] s, got {duration_s!r}")


def phrase_for(command: str, seed: int, heldout: bool = False) -> str:
    """A wording of ``command`` picked by ``seed`` from TRAIN_PHRASES (or HELDOUT_PHRASES)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; expected one of {', '.join(COMMANDS)}")
    table = HELDOUT_PHRASES if heldout else TRAIN_PHRASES
    options = table[command]
    return options[int(np.random.default_rng([seed, COMMANDS.index(command), 1]).integers(len(options)))]


# -- the idle baseline ----------------------------------------------------------------------------

def _idle(seed: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A calm silent face and body. -> face (T, 112) float64, joints (T, 22, 3) float64, both 25 fps."""
    face_animator = ProceduralFace(fps=FPS, seed=seed, idle=IDLE_CONFIG)
    body = VideoRateBody(ProceduralBody(seed=seed))
    silence = np.zeros(0, dtype=np.float32)
    face = np.stack([face_animator.step(k / FPS, silence, silence) for k in range(frames)]).astype(np.float64)
    joints = np.stack([body.frame_at(k / FPS) for k in range(frames)])
    return face, joints


def _finish(command: str, phrase: str, face: np.ndarray, joints: np.ndarray, onset_s: float, end_s: float) -> CommandClip:
    """Clip the face into range, re-derive its rotation-driven slots, and make body263."""
    from anima.body.data.humanml3d import features_from_video_joints

    face[:, params.HEAD] = np.clip(face[:, params.HEAD], -_HEAD_LIMIT, _HEAD_LIMIT)
    face[:, params.EYE_PITCH] = np.clip(face[:, params.EYE_PITCH], -params.EYE_PITCH_MAX_RAD, params.EYE_PITCH_MAX_RAD)
    face[:, params.EYE_YAW] = np.clip(face[:, params.EYE_YAW], -params.EYE_YAW_MAX_RAD, params.EYE_YAW_MAX_RAD)
    face[:, :52] = np.clip(face[:, :52], 0.0, 1.0)
    face = np.stack([params.from_arkit(params.to_arkit(f)) for f in face])  # eyeLook* follow the new angles
    return CommandClip(command, phrase, face.astype(np.float32), features_from_video_joints(joints), float(onset_s), float(end_s))


def idle_clip(seed: int, duration_s: float = 3.0) -> CommandClip:
    """The calm baseline alone (no command): what a detector should call nothing."""
    _check(None, duration_s)
    frames = int(round(duration_s * FPS))
    face, joints = _idle(seed, frames)
    return _finish("idle", "", face, joints, 0.0, 0.0)


# -- the behaviours -------------------------------------------------------------------------------

def _window(t: np.ndarray, start: float, length: float, ramp: float) -> np.ndarray:
    """1 inside [start, start + length], smoothstep ramps of ``ramp`` s inside both ends. # (T,)"""
    return smoothstep((t - start) / ramp) * smoothstep((start + length - t) / ramp)


def _nod_or_shake(face: np.ndarray, t: np.ndarray, onset: float, rng: np.random.Generator, axis: int) -> float:
    """Head pitch (nod: down-up cycles) or yaw (shake: side to side) oscillation; returns the end time."""
    freq = rng.uniform(1.5, 2.6)  # Hz
    cycles = int(rng.integers(2, 4))  # 2 or 3
    length = cycles / freq
    tau = t - onset
    inside = (tau >= 0) & (tau <= length)
    if axis == params.HEAD_PITCH:  # down and back up each cycle, a little shallower each time
        amplitude = rng.uniform(0.14, 0.26)  # peak-to-peak, rad
        decay = 0.85 ** np.floor(np.clip(tau, 0, None) * freq)
        offset = amplitude * decay * 0.5 * (1.0 - np.cos(2.0 * math.pi * freq * tau))
    else:
        amplitude = rng.uniform(0.12, 0.24)  # each side, rad
        offset = amplitude * np.sin(2.0 * math.pi * freq * tau) * _window(t, onset, length, 0.12)
    offset = np.where(inside, offset, 0.0)
    face[:, axis] += offset
    eyes = params.EYE_PITCH if axis == params.HEAD_PITCH else params.EYE_YAW
    face[:, eyes] -= _VOR * offset[:, None]
    return onset + length


def _blink(face: np.ndarray, t: np.ndarray, onset: float, rng: np.random.Generator) -> float:
    """Two deliberate blinks: lids fully closed and held ~0.2-0.35 s each."""
    start = onset
    lids = np.zeros_like(t)
    for _ in range(2):
        close, hold, opening = rng.uniform(0.07, 0.12), rng.uniform(0.2, 0.35), rng.uniform(0.12, 0.2)
        tau = t - start
        shape = np.where(tau < close, smoothstep(tau / close),
                         np.where(tau < close + hold, 1.0, 1.0 - smoothstep((tau - close - hold) / opening)))
        lids = np.maximum(lids, np.where(tau >= 0, shape, 0.0))
        start += close + hold + opening + rng.uniform(0.25, 0.5)
    face[:, _BLINK] = np.maximum(face[:, _BLINK], lids[:, None])
    face[:, _WIDE_SQUINT] *= 1.0 - lids[:, None]
    return start


_LOOK = {  # command -> (pitch sign, yaw sign) of the gaze shift
    "look_left": (0.0, 1.0), "look_right": (0.0, -1.0), "look_up": (-1.0, 0.0), "look_down": (1.0, 0.0),
}


def _look(face: np.ndarray, t: np.ndarray, onset: float, rng: np.random.Generator, command: str) -> float:
    """Head and eyes turn together toward one side, hold 1.5-2.5 s, and come back."""
    pitch_sign, yaw_sign = _LOOK[command]
    gaze = rng.uniform(0.5, 0.75) if yaw_sign else rng.uniform(0.4, 0.6)  # total turn, rad
    head_share = rng.uniform(0.4, 0.6)
    turn, hold, back = rng.uniform(0.25, 0.45), rng.uniform(1.5, 2.5), rng.uniform(0.35, 0.5)
    env = smoothstep((t - onset) / turn) * (1.0 - smoothstep((t - onset - turn - hold) / back))  # (T,)
    for sign, head, eyes in ((pitch_sign, params.HEAD_PITCH, params.EYE_PITCH), (yaw_sign, params.HEAD_YAW, params.EYE_YAW)):
        if sign:
            face[:, head] += sign * gaze * head_share * env
            face[:, eyes] += (sign * gaze * (1.0 - head_share) * env)[:, None]
    return onset + turn + hold + back


def _descendants(joint: int) -> list[int]:
    """``joint`` and every joint below it in the skeleton."""
    out = [joint]
    for j in range(joint + 1, NUM_JOINTS):  # PARENTS lists every parent before its children
        if PARENTS[j] in out:
            out.append(j)
    return out


def _rotate(joints: np.ndarray, subtree: list[int], pivot: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> None:
    """Rotate ``subtree`` of each frame about ``pivot`` (T, 3) by ``angle`` (T,) around unit ``axis`` (T, 3), in place."""
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    v = joints[:, subtree] - pivot[:, None]  # (T, J, 3)
    k = axis[:, None]  # Rodrigues
    joints[:, subtree] = pivot[:, None] + v * c + np.cross(k, v) * s + k * (k * v).sum(-1, keepdims=True) * (1 - c)


def _across(joints: np.ndarray) -> np.ndarray:
    """Each frame's horizontal unit vector toward the subject's left (from the hips). # (T, 3)"""
    across = joints[:, JOINT["left_hip"]] - joints[:, JOINT["right_hip"]]
    across[:, 1] = 0.0
    return across / np.linalg.norm(across, axis=-1, keepdims=True)


_TORSO, _CHEST, _NECK = _descendants(JOINT["spine1"]), _descendants(JOINT["spine3"]), _descendants(JOINT["neck"])


def _bow(joints: np.ndarray, t: np.ndarray, onset: float, rng: np.random.Generator) -> float:
    """Bend forward from the hips (most), chest and neck, hold, straighten up."""
    depth = rng.uniform(0.45, 0.8)  # total flexion, rad
    down, hold, up = rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.7), rng.uniform(0.6, 0.9)
    angle = depth * smoothstep((t - onset) / down) * (1.0 - smoothstep((t - onset - down - hold) / up))  # (T,)
    axis = _across(joints)  # rotating about the subject's left tips the top forward (+Z)
    for subtree, pivot, share in ((_TORSO, "pelvis", 0.6), (_CHEST, "spine3", 0.25), (_NECK, "neck", 0.15)):
        _rotate(joints, subtree, joints[:, JOINT[pivot]].copy(), axis, share * angle)
    return onset + down + hold + up


def _slerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Unit directions from ``a`` to ``b`` (T, 3) at a constant angular speed in ``w`` (T,) in [0, 1]. # (T, 3)

    A hanging forearm turns nearly 180 degrees to point up: the great circle goes through the
    direction both share (forward), where a linear blend would pass close to zero length.
    """
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    omega = np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0))[:, None]  # (T, 1)
    sin = np.maximum(np.sin(omega), 1e-6)
    w = w[:, None]
    return np.where(omega > 1e-4, (np.sin((1.0 - w) * omega) * a + np.sin(w * omega) * b) / sin, a)


def _wave(joints: np.ndarray, t: np.ndarray, onset: float, rng: np.random.Generator) -> float:
    """Raise one hand (upper arm out, forearm up) and swing the forearm side to side 2-4 times."""
    side = "left" if rng.random() < 0.5 else "right"
    out = 1.0 if side == "left" else -1.0  # +X is the subject's left
    shoulder, elbow, wrist = (JOINT[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist"))
    raise_s, lower_s = rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.9)  # about 1.5 m/s at the wrist, at most
    freq, cycles, swing = rng.uniform(1.5, 2.2), int(rng.integers(2, 5)), rng.uniform(0.3, 0.5)
    abduction = rng.uniform(1.1, 1.4)  # upper arm from hanging, rad
    hold = cycles / freq
    w = smoothstep((t - onset) / raise_s) * (1.0 - smoothstep((t - onset - raise_s - hold) / lower_s))  # (T,)
    tau = t - onset - raise_s
    phi = 0.15 + swing * np.sin(2.0 * math.pi * freq * tau) * _window(t, onset + raise_s, hold, 0.15)  # (T,)
    across = _across(joints)  # (T, 3)
    up = np.array([0.0, 1.0, 0.0])
    forward = np.cross(across, up)
    upper = joints[:, elbow] - joints[:, shoulder]
    fore = joints[:, wrist] - joints[:, elbow]
    l_upper, l_fore = np.linalg.norm(upper, axis=-1, keepdims=True), np.linalg.norm(fore, axis=-1, keepdims=True)
    upper_to = out * math.sin(abduction) * across - math.cos(abduction) * up + 0.25 * forward
    fore_to = out * np.sin(phi)[:, None] * across + np.cos(phi)[:, None] * up + 0.2 * forward
    new_elbow = joints[:, shoulder] + l_upper * _slerp(upper, upper_to, w)
    joints[:, wrist] = new_elbow + l_fore * _slerp(fore, fore_to, w)
    joints[:, elbow] = new_elbow
    return onset + raise_s + hold + lower_s


def command_clip(command: str, seed: int, duration_s: float = 3.0) -> CommandClip:
    """The clip answering ``command``: idle, then the behaviour from a random onset. Deterministic in ``seed``."""
    _check(command, duration_s)
    frames = int(round(duration_s * FPS))
    rng = np.random.default_rng([seed, COMMANDS.index(command)])
    onset = float(rng.uniform(*ONSET_S))
    face, joints = _idle(seed, frames)
    t = np.arange(frames) / FPS
    if command == "nod":
        end = _nod_or_shake(face, t, onset, rng, params.HEAD_PITCH)
    elif command == "shake":
        end = _nod_or_shake(face, t, onset, rng, params.HEAD_YAW)
    elif command == "blink":
        end = _blink(face, t, onset, rng)
    elif command in _LOOK:
        end = _look(face, t, onset, rng, command)
    elif command == "bow":
        end = _bow(joints, t, onset, rng)
    else:
        end = _wave(joints, t, onset, rng)
    return _finish(command, phrase_for(command, seed), face, joints, onset, min(end, duration_s))
