"""ProceduralBody: the embedded default body animator (idle, speech beats, keyframed gestures).

No model and no data: a living idle (breathing, weight shift, arm and head sway), speech-beat
accents of the forearms around word onsets, and one keyframed gesture per motion prompt (the
``anima.core.plan.GESTURES`` vocabulary, also found in free text such as "a person waves
goodbye"). It implements ``anima.body.base.BodyAnimator`` at 20 fps::

    body = ProceduralBody(seed=0)
    body.push_prompt("a person bows", t_s=1.0)
    body.push_beats([2.0, 2.4, 2.9], [1.0, 0.6, 0.8])
    frames = [body.next_frame() for _ in range(100)]  # five seconds, each (22, 3) metres

How a frame is made. Every layer writes into one flat pose-parameter vector (``NUM_PARAMS``): a
root offset, an axis-angle per joint (local, relative to the parent; zero is the rest pose) and an
offset per ankle target. Layers add up: idle + talking posture and beat accents + the cross-faded
gestures. The legs are then solved by two-bone IK so the ankles stay planted (or step, for
"walk"), and ``forward_kinematics`` turns rotations into positions, so bone lengths never change.

Why nothing jumps. The layers are smooth functions of time given the schedule (prompts, beats).
A schedule edit that changes the present (a late prompt, dropped beats) is absorbed by
inertialisation: the difference it would cause is captured and decays over ``_INERTIA_S``. Last,
a governor scales any frame-to-frame step whose largest joint displacement exceeds
``MAX_STEP_M`` back along the parameter path, so the bound holds whatever the input.

Axis conventions (local rotations; at rest each parent frame is the world frame: Y up, +Z the
facing direction, +X the subject's left): +x tilts an upward bone forward (spine flexion, nod) and
swings a downward bone backward (so shoulder and elbow flexion are -x, knee flexion +x); +z swings
a downward bone to the subject's left (left arm abduction +z, right -z); +y turns to the left.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from anima.body.skeleton import (
    BODY_FPS,
    JOINT,
    JOINT_NAMES,
    NUM_JOINTS,
    REST_JOINTS,
    REST_OFFSETS,
    axis_angle_to_matrix,
    forward_kinematics,
)
from anima.core.plan import GESTURES
from anima.easing import smoothstep

# ---------------------------------------------------------------------------------------------
# Pose parameters: [root offset (3) | axis-angle per joint (22 * 3) | left, right ankle offset (3+3)]

ROOT = slice(0, 3)
ROTATIONS = slice(3, 3 + 3 * NUM_JOINTS)
LEFT_FOOT = slice(3 + 3 * NUM_JOINTS, 6 + 3 * NUM_JOINTS)
RIGHT_FOOT = slice(6 + 3 * NUM_JOINTS, 9 + 3 * NUM_JOINTS)
NUM_PARAMS = 9 + 3 * NUM_JOINTS

MAX_STEP_M = 0.05  # governor: largest joint displacement between consecutive 20 fps frames
_INERTIA_S = 0.5  # how long a schedule edit's discontinuity takes to decay
_PROMPT_FADE_S = 0.6  # cross-fade from the previous gesture to a newly prompted one
_INTERRUPT_FADE_S = 0.5  # cross-fade back to idle on barge-in
_GESTURE_RAMP_S = 0.4  # a gesture takes its arms over from the talking posture this fast


def _bump(x: float) -> float:
    """A C2-smooth bump on (-1, 1), peak 1 at 0: (1 - x^2)^3."""
    if x <= -1.0 or x >= 1.0:
        return 0.0
    u = 1.0 - x * x
    return u * u * u


def _pose(
    root: Sequence[float] = (0.0, 0.0, 0.0),
    left_foot: Sequence[float] = (0.0, 0.0, 0.0),
    right_foot: Sequence[float] = (0.0, 0.0, 0.0),
    **rotations: Sequence[float],
) -> np.ndarray:
    """A parameter vector from named joint axis-angles (radians). # (NUM_PARAMS,)

    ``left_foot`` / ``right_foot`` here are the ankle-target offsets (metres) for the leg IK, not
    the toe joints' rotations: those joints are leaves, so their rotation would move nothing.
    """
    params = np.zeros(NUM_PARAMS)
    params[ROOT] = root
    params[LEFT_FOOT] = left_foot
    params[RIGHT_FOOT] = right_foot
    for name, axis_angle in rotations.items():
        j = JOINT[name]
        params[3 + 3 * j : 6 + 3 * j] = axis_angle
    return params


def _mirror_tables() -> tuple[np.ndarray, np.ndarray]:
    """Index and sign arrays that reflect a parameter vector through the sagittal (x = 0) plane.

    Reflection M = diag(-1, 1, 1) maps a translation t to M t and a rotation's axis-angle a to
    det(M) M a = (a_x, -a_y, -a_z); left and right joints trade places.
    """
    index = np.arange(NUM_PARAMS)
    sign = np.ones(NUM_PARAMS)
    sign[0] = -1.0
    for j, name in enumerate(JOINT_NAMES):
        other = name.replace("left", "#").replace("right", "left").replace("#", "right")
        index[3 + 3 * j : 6 + 3 * j] = np.arange(3) + 3 + 3 * JOINT[other]
        sign[3 + 3 * j : 6 + 3 * j] = (1.0, -1.0, -1.0)
    index[LEFT_FOOT], index[RIGHT_FOOT] = np.arange(NUM_PARAMS)[RIGHT_FOOT], np.arange(NUM_PARAMS)[LEFT_FOOT]
    sign[LEFT_FOOT] = sign[RIGHT_FOOT] = (-1.0, 1.0, 1.0)
    return index, sign


_MIRROR_INDEX, _MIRROR_SIGN = _mirror_tables()


def mirror(params: np.ndarray) -> np.ndarray:
    """The left-right mirror image of a pose-parameter vector (or a stack of them). # (..., NUM_PARAMS)"""
    return params[..., _MIRROR_INDEX] * _MIRROR_SIGN


# ---------------------------------------------------------------------------------------------
# Prompt -> gesture


def _keyword_table() -> dict[str, str]:
    forms = {
        "walk": "walk walks walking walked step steps stepping march marches marching stroll strolls jog jogs",
        "bye": "bye goodbye byebye wave waves waving waved farewell",
        "bow": "bow bows bowing bowed curtsy curtsies",
        "call": "call calls calling beckon beckons beckoning beckoned summon summons",
        "point": "point points pointing pointed",
        "guide": "guide guides guiding gesture gestures gesturing present presents presenting usher ushers "
        "direct directs show shows showing introduce introduces welcome welcomes",
        "nod": "nod nods nodding nodded agree agrees",
        "shake": "shake shakes shaking shook disagree disagrees",
        "shrug": "shrug shrugs shrugging shrugged",
        "respond": "respond responds responding answer answers offer offers palms",
        "beat": "beat beats talk talks talking speak speaks speaking say says explain explains",
    }
    return {word: gesture for gesture, words in forms.items() for word in words.split()}


_KEYWORDS = _keyword_table()
_WORD = re.compile(r"[a-z]+")


def gesture_for_prompt(text: str) -> str:
    """Map a motion prompt to a name in ``GESTURES``: an exact name, else the first keyword found.

    "a person waves goodbye" -> "bye", "beckons" -> "call", "walks forward" -> "walk". Empty or
    unrecognised text is "none" (idle); any length of text is fine.
    """
    lowered = text.strip().lower()
    if lowered in GESTURES:
        return lowered
    for match in _WORD.finditer(lowered):
        gesture = _KEYWORDS.get(match.group())
        if gesture is not None:
            return gesture
    return "none"


def _side_for_prompt(text: str) -> str:
    """Which arm a one-armed gesture uses: the left if the prompt says "left", else the right."""
    words = set(_WORD.findall(text.lower()))
    return "left" if "left" in words and "right" not in words else "right"


# ---------------------------------------------------------------------------------------------
# Gestures: smooth curves of pose parameters, zero at both ends (one-shots) or looping (walk)


class _Gesture:
    """A gesture's parameter curve over its own time ``tau`` (seconds since it started)."""

    duration_s: float  # math.inf for looping gestures
    starts_at_rest: bool  # the curve is zero at tau = 0, so it needs no fade-in of its own
    mask: np.ndarray  # (NUM_PARAMS,) 1 where the gesture drives a parameter; the talking posture yields there

    def at(self, tau: float) -> np.ndarray:  # (NUM_PARAMS,)
        raise NotImplementedError

    def activity(self, tau: float) -> float:
        """How fully the gesture owns its joints at ``tau``: ramps in at the start, out at the end."""
        ramp_in = smoothstep(tau / _GESTURE_RAMP_S)
        if math.isinf(self.duration_s):
            return ramp_in
        return ramp_in * (1.0 - smoothstep((tau - self.duration_s + _GESTURE_RAMP_S) / _GESTURE_RAMP_S))


class _Keyframed(_Gesture):
    """Keyframes (time, pose) eased with a smoothstep between each pair; starts and ends at zero."""

    def __init__(self, keys: Sequence[tuple[float, np.ndarray]]) -> None:
        self.times = [0.0] + [t for t, _ in keys]
        self.poses = np.stack([np.zeros(NUM_PARAMS)] + [pose for _, pose in keys])  # (K, NUM_PARAMS)
        if np.any(np.diff(self.times) <= 0.0) or np.any(self.poses[-1] != 0.0):
            raise ValueError("gesture keyframes must have increasing times and end at the rest offset")
        self.duration_s = self.times[-1]
        self.starts_at_rest = True
        self.mask = (np.abs(self.poses).max(axis=0) > 0.0).astype(np.float64)

    def at(self, tau: float) -> np.ndarray:
        if tau <= 0.0 or tau >= self.duration_s:
            return self.poses[0]  # zeros
        k = bisect.bisect_right(self.times, tau) - 1
        a = smoothstep((tau - self.times[k]) / (self.times[k + 1] - self.times[k]))
        return self.poses[k] + a * (self.poses[k + 1] - self.poses[k])

    def mirrored(self) -> _Keyframed:
        return _Keyframed([(t, mirror(p)) for t, p in zip(self.times[1:], self.poses[1:], strict=True)])


class _Stepping(_Gesture):
    """Walking in place: alternate foot lifts with a pelvis bob and sway, arms swinging opposite."""

    period_s = 1.1

    def __init__(self) -> None:
        self.duration_s = math.inf
        self.starts_at_rest = False
        self._base = _pose(root=(0.0, -0.02, 0.0), left_elbow=(-0.35, 0, 0), right_elbow=(-0.35, 0, 0))
        # Components multiplied by sin(phase) (left foot up for sin > 0) and by cos(2 * phase).
        self._sin = _pose(
            root=(-0.025, 0.0, 0.0), pelvis=(0.0, 0.05, -0.04), spine1=(0.0, -0.03, 0.04), neck=(0.0, -0.02, 0.0),
            left_shoulder=(0.25, 0.0, 0.0), right_shoulder=(-0.25, 0.0, 0.0),
            left_elbow=(0.1, 0.0, 0.0), right_elbow=(0.1, 0.0, 0.0),
        )
        self._cos2 = _pose(root=(0.0, -0.008, 0.0))
        self._lift = np.array([0.0, 0.09, 0.02])  # ankle lift at the top of a step, metres # (3,)
        self.mask = (np.abs(self._base) + np.abs(self._sin) > 0.0).astype(np.float64)

    def at(self, tau: float) -> np.ndarray:
        phase = 2.0 * math.pi * max(tau, 0.0) / self.period_s
        s = math.sin(phase)
        # max(0, s)^2 is C1 at touch-down, so the foot lands without a velocity jump.
        lift_left, lift_right = max(s, 0.0) ** 2, max(-s, 0.0) ** 2
        params = self._base + s * self._sin + math.cos(2.0 * phase) * self._cos2
        params[LEFT_FOOT] += lift_left * self._lift
        params[RIGHT_FOOT] += lift_right * self._lift
        return params


def _gesture_library() -> dict[tuple[str, str], _Gesture]:
    """Every gesture for the right arm (the mirror gives the left). Times in seconds, radians."""
    zero = np.zeros(NUM_PARAMS)

    def bye_pose(wave: float) -> np.ndarray:
        # Upper arm out and twisted so that elbow flexion lifts the hand up in front, not out sideways.
        return _pose(right_collar=(0, 0, -0.06), right_shoulder=(-0.51, -0.81, -1.13), right_elbow=(-1.8 + wave, 0, 0),
                     neck=(0.02, -0.05, 0.0))

    def call_pose(curl: float) -> np.ndarray:
        return _pose(right_shoulder=(-0.55, 0.0, -0.15), right_elbow=(-1.3 - curl, -0.2, 0.0), spine3=(0.03, 0, 0))

    guide_front = _pose(right_shoulder=(-0.9, 0.0, -0.2), right_elbow=(-0.45, 0.0, 0.0), spine3=(0.0, -0.05, 0.0))
    guide_side = _pose(right_shoulder=(-0.45, 0.0, -0.95), right_elbow=(-0.25, 0.0, 0.0), spine3=(0.0, -0.12, 0.0),
                       neck=(0.0, -0.25, 0.0))
    point = _pose(right_shoulder=(-1.3, 0.0, -0.3), right_elbow=(-0.1, 0.0, 0.0), neck=(0.0, -0.2, 0.0),
                  spine3=(0.0, -0.06, 0.0))
    respond = _pose(
        spine3=(0.05, 0, 0), neck=(0.06, 0, 0),
        left_shoulder=(-0.3, 0.0, 0.22), right_shoulder=(-0.3, 0.0, -0.22),
        left_elbow=(-1.25, 0.35, 0.0), right_elbow=(-1.25, -0.35, 0.0),
    )
    shrug = _pose(
        left_collar=(0, 0, 0.22), right_collar=(0, 0, -0.22), neck=(-0.06, 0.0, 0.08),
        left_shoulder=(-0.1, 0.0, 0.12), right_shoulder=(-0.1, 0.0, -0.12),
        left_elbow=(-1.15, 0.55, 0.0), right_elbow=(-1.15, -0.55, 0.0),
    )
    bow = _pose(
        root=(0.0, -0.02, -0.04), pelvis=(0.36, 0, 0), spine1=(0.12, 0, 0), spine2=(0.1, 0, 0), spine3=(0.08, 0, 0),
        neck=(0.15, 0, 0), head=(0.12, 0, 0), left_shoulder=(-0.35, 0, 0), right_shoulder=(-0.35, 0, 0),
    )

    def nod(depth: float) -> np.ndarray:
        return _pose(neck=(0.18 * depth, 0, 0), head=(0.12 * depth, 0, 0))

    def shake(turn: float) -> np.ndarray:
        return _pose(neck=(0.02, 0.3 * turn, 0), head=(0, 0.12 * turn, 0))

    keyed: dict[str, list[tuple[float, np.ndarray]]] = {
        "bow": [(1.0, bow), (1.6, bow), (2.7, zero)],
        "bye": [(1.5, bye_pose(0.0)), (1.75, bye_pose(0.3)), (2.1, bye_pose(-0.3)), (2.45, bye_pose(0.3)),
                (2.8, bye_pose(-0.3)), (3.05, bye_pose(0.0)), (4.5, zero)],
        "call": [(1.0, call_pose(0.0)), (1.3, call_pose(0.55)), (1.6, call_pose(0.0)), (1.9, call_pose(0.55)),
                 (2.2, call_pose(0.0)), (3.2, zero)],
        "guide": [(1.0, guide_front), (1.8, guide_side), (2.4, guide_side), (3.5, zero)],
        "point": [(1.2, point), (2.2, point), (3.4, zero)],
        "respond": [(0.9, respond), (1.8, respond), (2.7, zero)],
        "shrug": [(0.7, shrug), (1.3, shrug), (2.1, zero)],
        "nod": [(0.35, nod(1.0)), (0.65, nod(0.1)), (0.95, nod(0.8)), (1.4, zero)],
        "shake": [(0.35, shake(1.0)), (0.75, shake(-1.0)), (1.15, shake(0.8)), (1.5, shake(-0.5)), (1.9, zero)],
    }
    library: dict[tuple[str, str], _Gesture] = {}
    for name, keys in keyed.items():
        right = _Keyframed(keys)
        library[name, "right"], library[name, "left"] = right, right.mirrored()
    library["walk", "right"] = library["walk", "left"] = _Stepping()
    return library  # "none" and "beat" have no curve: idle, or idle plus beats


_LIBRARY = _gesture_library()


# ---------------------------------------------------------------------------------------------
# Idle and speech beats


def _idle_components(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A static base pose plus sinusoids (frequency, phase, amplitude vector) of the living idle.

    Frequencies are incommensurate and jittered by the seed, so the idle never visibly repeats;
    every term is a bounded sinusoid, so nothing drifts. Returns base (P,), freqs (M,), phases
    (M,), amplitudes (P, M).
    """
    base = _pose(
        root=(0.0, -0.012, 0.0),  # soft knees: leaves the leg IK room to keep the feet planted
        left_shoulder=(0.0, 0.0, 0.06), right_shoulder=(0.0, 0.0, -0.06),
        left_elbow=(-0.15, 0.0, 0.0), right_elbow=(-0.15, 0.0, 0.0),
    )
    # A weight shift onto one leg: the pelvis slides over it, the free hip drops (roll), and the
    # spine counter-rotates so the head stays above the feet.
    shift = _pose(root=(0.02, 0.0, 0.0), pelvis=(0, 0, 0.012), spine1=(0, 0, -0.016), neck=(0, 0, 0.005))
    terms: list[tuple[float, np.ndarray]] = [
        (0.25, _pose(spine1=(-0.008, 0, 0), spine2=(-0.01, 0, 0), spine3=(-0.012, 0, 0), neck=(0.012, 0, 0),
                     left_collar=(0, 0, 0.012), right_collar=(0, 0, -0.012))),  # breathing
        (0.5, _pose(spine3=(-0.003, 0, 0))),  # breathing harmonic
        (0.1, shift),
        (0.037, 0.45 * shift + _pose(root=(0.0, 0.0, 0.005))),
        (0.06, _pose(pelvis=(0, 0.02, 0), spine2=(0, -0.012, 0), neck=(0, -0.008, 0))),  # torso yaw
        (0.045, _pose(neck=(0, 0.035, 0), head=(0, 0.02, 0))),  # looking around
        (0.11, _pose(neck=(0, 0.015, 0))),
        (0.07, _pose(neck=(0.015, 0, 0), head=(0.01, 0, 0))),
        (0.053, _pose(head=(0, 0, 0.012))),
        (0.13, _pose(left_shoulder=(0.025, 0, 0), left_elbow=(-0.02, 0, 0))),  # arm sway
        (0.15, _pose(right_shoulder=(0.025, 0, 0), right_elbow=(-0.02, 0, 0))),
        (0.09, _pose(left_shoulder=(0, 0, 0.012), right_shoulder=(0, 0, -0.012))),
    ]
    freqs = np.array([f for f, _ in terms]) * rng.uniform(0.9, 1.1, len(terms))
    phases = rng.uniform(0.0, 2.0 * math.pi, len(terms))
    amplitudes = np.stack([v for _, v in terms], axis=1) * rng.uniform(0.85, 1.15, len(terms))  # (P, M)
    return base, freqs, phases, amplitudes


# While beats are near, the forearms come up in front of the body (the talking posture), and each
# beat is an up-then-down accent of one or both forearms with a small nod on the stroke.
_TALK_POSE = _pose(
    spine3=(0.02, 0, 0), left_shoulder=(-0.2, 0.0, 0.1), right_shoulder=(-0.2, 0.0, -0.1),
    left_elbow=(-0.8, 0.15, 0.0), right_elbow=(-0.8, -0.15, 0.0),
)
_ACCENT_RIGHT = _pose(right_shoulder=(-0.08, 0.0, -0.03), right_elbow=(-0.3, 0.0, 0.0))
_ACCENT_LEFT = mirror(_ACCENT_RIGHT)
_EMPHASIS = _pose(spine3=(0.025, 0, 0), neck=(0.05, 0, 0))
_TALK_BEFORE_S, _TALK_AFTER_S, _TALK_RAMP_S = 0.4, 1.0, 0.7  # posture held from 0.4 s before a beat to 1 s after
_BEAT_REACH_S = max(_TALK_BEFORE_S, _TALK_AFTER_S) + _TALK_RAMP_S  # beats farther away have no effect


def _talk_window(tau: float) -> float:
    """Talking-posture weight of one beat at ``tau`` seconds from it (1 near it, 0 far away)."""
    if tau < -_TALK_BEFORE_S:
        return smoothstep((tau + _TALK_BEFORE_S + _TALK_RAMP_S) / _TALK_RAMP_S)
    if tau > _TALK_AFTER_S:
        return 1.0 - smoothstep((tau - _TALK_AFTER_S) / _TALK_RAMP_S)
    return 1.0


def _beat_hands(seed: int, time_s: float) -> tuple[float, float]:
    """(left, right) accent weights of a beat: one hand, the other, or both.

    Hashed from the seed and the beat time, so the choice does not depend on how the beats were
    batched into ``push_beats`` calls.
    """
    h = (int(round(time_s * 1000.0)) * 2654435761 + seed * 40503 + 12345) & 0xFFFFFFFF
    h = ((h ^ (h >> 15)) * 2246822519) & 0xFFFFFFFF
    u = (h ^ (h >> 13)) / 2.0**32
    if u < 0.3:
        return 0.8, 0.8
    return (0.15, 1.0) if u < 0.65 else (1.0, 0.15)


# ---------------------------------------------------------------------------------------------
# Legs: analytic two-bone IK that keeps each ankle on its target and each foot flat


class _Leg:
    """Solves one leg's hip, knee and ankle rotations for a pelvis pose and an ankle target."""

    def __init__(self, side: str) -> None:
        self.hip, self.knee, self.ankle = JOINT[f"{side}_hip"], JOINT[f"{side}_knee"], JOINT[f"{side}_ankle"]
        self.foot = LEFT_FOOT if side == "left" else RIGHT_FOOT
        self.hip_offset = REST_OFFSETS[self.hip]
        self.knee_offset = REST_OFFSETS[self.knee]  # hip -> knee
        self.ankle_offset = REST_OFFSETS[self.ankle]  # knee -> ankle
        self.rest_ankle = REST_JOINTS[self.ankle]
        k, a = self.knee_offset, self.ankle_offset
        self.lengths_sq = float(k @ k + a @ a)
        # |k + Rx(b) a|^2 = |k|^2 + |a|^2 + 2 (kx ax + A cos b + B sin b): solve for the knee angle b.
        self.kx_ax = float(k[0] * a[0])
        big_a, big_b = float(k[1] * a[1] + k[2] * a[2]), float(k[2] * a[1] - k[1] * a[2])
        self.radius = math.hypot(big_a, big_b)
        self.phase = math.atan2(big_b, big_a)  # b = phase + acos(...) is 0 at rest and grows with flexion

    def solve(self, root: np.ndarray, pelvis: np.ndarray, params: np.ndarray, rotations: np.ndarray) -> None:
        """Write the leg's local rotations into ``rotations`` (22, 3, 3) in place."""
        hip = root + pelvis @ self.hip_offset
        target = self.rest_ankle + params[self.foot]
        reach = pelvis.T @ (target - hip)  # hip -> ankle in the pelvis (hip parent) frame # (3,)
        cos_term = ((reach @ reach - self.lengths_sq) / 2.0 - self.kx_ax) / self.radius
        bend = self.phase + math.acos(min(1.0, max(-1.0, cos_term)))  # clamped: out-of-reach targets straighten
        c, s = math.cos(bend), math.sin(bend)
        knee = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
        leg = self.knee_offset + knee @ self.ankle_offset  # hip -> ankle with the hip at rest # (3,)
        hip_rot = _align(leg, reach)
        rotations[self.hip] = hip_rot
        rotations[self.knee] = knee
        rotations[self.ankle] = (pelvis @ hip_rot @ knee).T  # undo the chain: the foot stays level


def _align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction ``source`` to direction ``target``. # (3, 3)"""
    u = source / np.linalg.norm(source)
    v = target / np.linalg.norm(target)
    axis = np.cross(u, v)
    sin_sq = float(axis @ axis)
    cos = float(u @ v)
    if sin_sq < 1e-18:  # parallel (a leg never points opposite to its rest direction)
        return np.eye(3)
    skew = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + skew + skew @ skew * ((1.0 - cos) / sin_sq)


# ---------------------------------------------------------------------------------------------
# The animator


@dataclass
class _Instance:
    """One prompted gesture on the timeline (``gesture`` None: idle / beats only)."""

    gesture: _Gesture | None
    start_s: float
    fade_s: float  # cross-fade from whatever played before

    def fade_in(self, t_s: float) -> float:
        return smoothstep((t_s - self.start_s) / self.fade_s)


class ProceduralBody:
    """The default ``BodyAnimator``: procedural idle, beat accents and keyframed gestures at 20 fps.

    Deterministic for a seed and a sequence of calls. ``next_frame`` costs a few hundred
    microseconds (one forward-kinematics pass; two or more in the rare frames the governor acts).
    """

    fps: int = BODY_FPS

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._idle_base, self._idle_freqs, self._idle_phases, self._idle_amplitudes = _idle_components(
            np.random.default_rng(seed)
        )
        self._legs = (_Leg("left"), _Leg("right"))
        self.reset()

    def reset(self) -> None:
        """Clear prompts and beats and restart at frame 0 (same motion as a fresh instance)."""
        self._frame = 0  # index of the next frame; frame k is media time k / fps
        self._instances: list[_Instance] = []  # by start time
        self._beats: list[tuple[float, float, float, float]] = []  # sorted (time, strength, left, right)
        self._dirty = False  # the schedule changed since the last frame
        self._beats_cut_s = -math.inf  # last interruption: beats up to it fade out from there
        self._offset: np.ndarray | None = None  # inertialisation offset # (NUM_PARAMS,)
        self._offset_start_s = 0.0
        self._last_params: np.ndarray | None = None  # what the last frame showed # (NUM_PARAMS,)
        self._last_target: np.ndarray | None = None  # the schedule's target at the last frame # (NUM_PARAMS,)
        self._last_joints: np.ndarray | None = None  # (22, 3)

    # -- schedule ------------------------------------------------------------------------------

    @property
    def _now_s(self) -> float:
        """Media time of the last frame handed out: edits cannot take effect before it."""
        return max(self._frame - 1, 0) / self.fps

    def _schedule(self, gesture: _Gesture | None, t_s: float, fade_s: float) -> None:
        start = max(float(t_s), self._now_s)
        # A new prompt replaces everything scheduled from its start on.
        self._instances = [inst for inst in self._instances if inst.start_s < start]
        self._instances.append(_Instance(gesture, start, fade_s))
        self._dirty = True

    def push_prompt(self, text: str, t_s: float) -> None:
        """Play the gesture named or described by ``text`` from media time ``t_s`` ("" = idle).

        The new gesture cross-fades in over whatever was playing and replaces any prompt
        scheduled at or after ``t_s``. One-shot gestures play once (1-4.5 s) and return to idle;
        "walk" steps in place until the next prompt. A prompt that arrives late starts at the
        current frame, from its beginning.
        """
        name = gesture_for_prompt(text)
        self._schedule(_LIBRARY.get((name, _side_for_prompt(text))), t_s, _PROMPT_FADE_S)

    def push_beats(self, times_s: Sequence[float], strengths: Sequence[float]) -> None:
        """Schedule speech beats at media times ``times_s`` with ``strengths`` (clipped to 0..1.5)."""
        if len(times_s) != len(strengths):
            raise ValueError(f"push_beats: {len(times_s)} times but {len(strengths)} strengths")
        for time_s, strength in zip(times_s, strengths, strict=True):
            time_s, strength = float(time_s), float(strength)
            if math.isfinite(time_s) and math.isfinite(strength):
                left, right = _beat_hands(self.seed, time_s)
                bisect.insort(self._beats, (time_s, min(max(strength, 0.0), 1.5), left, right))
        self._dirty = True

    def interrupt(self, t_s: float) -> None:
        """Barge-in at media time ``t_s``: drop later beats and prompts, fade back to idle.

        The gesture and the talking posture fade out over ``_INTERRUPT_FADE_S``, longer only
        where the step governor has to slow a big arm movement (a raised waving arm: ~1 s).
        """
        cut = max(float(t_s), self._now_s)
        self._beats = [beat for beat in self._beats if beat[0] <= cut]
        self._beats_cut_s = cut
        self._schedule(None, cut, _INTERRUPT_FADE_S)

    # -- evaluation ----------------------------------------------------------------------------

    def _target(self, t_s: float) -> np.ndarray:
        """Idle + talking posture and beats + gestures at media time ``t_s``. # (NUM_PARAMS,)"""
        params = self._idle_base + self._idle_amplitudes @ np.sin(
            2.0 * math.pi * self._idle_freqs * t_s + self._idle_phases
        )
        # Gestures, newest first: each covers what came before it as it fades in.
        gestures = np.zeros(NUM_PARAMS)
        ownership = np.zeros(NUM_PARAMS)  # (NUM_PARAMS,) how much gestures own each parameter
        cover = 1.0
        for i in range(len(self._instances) - 1, -1, -1):
            instance = self._instances[i]
            fade = instance.fade_in(t_s)
            gesture = instance.gesture
            if gesture is not None and t_s > instance.start_s and cover > 0.0:
                # A curve that eases in from rest is not faded in again: that would double the
                # ease and make the rise steeper. It still fades out what it covers.
                weight = cover if gesture.starts_at_rest else cover * fade
                tau = t_s - instance.start_s
                gestures += weight * gesture.at(tau)
                ownership += (weight * gesture.activity(tau)) * gesture.mask
            cover *= 1.0 - fade
            if cover <= 0.0:
                del self._instances[:i]  # fully covered for good: time only moves forward
                break
        # Speech beats near t: talking posture (max of windows) and accents (sum, soft-limited).
        while self._beats and self._beats[0][0] < t_s - _BEAT_REACH_S:
            self._beats.pop(0)
        talk = left = right = emphasis = 0.0
        # Beats kept by an interruption (those before it) fade out with the gesture.
        cut_fade = 1.0 - smoothstep((t_s - self._beats_cut_s) / _INTERRUPT_FADE_S)
        for time_s, strength, left_weight, right_weight in self._beats:
            tau = t_s - time_s
            if tau < -_BEAT_REACH_S:
                break
            gain = cut_fade if time_s <= self._beats_cut_s else 1.0
            talk = max(talk, gain * _talk_window(tau))
            accent = gain * strength * (_bump((tau + 0.1) / 0.22) - 0.45 * _bump((tau - 0.1) / 0.16))
            left += left_weight * accent
            right += right_weight * accent
            emphasis += gain * strength * _bump((tau - 0.1) / 0.16)
        arms = talk * _TALK_POSE + math.tanh(left) * _ACCENT_LEFT + math.tanh(right) * _ACCENT_RIGHT
        params += (1.0 - np.minimum(ownership, 1.0)) * arms + math.tanh(emphasis) * _EMPHASIS
        return params + gestures

    def _joints(self, params: np.ndarray) -> np.ndarray:
        """Pose parameters to joint positions via leg IK and forward kinematics. # (22, 3)"""
        rotations = axis_angle_to_matrix(params[ROTATIONS].reshape(NUM_JOINTS, 3))  # (22, 3, 3)
        root = REST_JOINTS[0] + params[ROOT]
        for leg in self._legs:
            leg.solve(root, rotations[0], params, rotations)
        return forward_kinematics(rotations, root)

    def next_frame(self) -> np.ndarray:
        """The pose at media time ``k / fps`` for the k-th call since reset. # (22, 3) metres"""
        t_s = self._frame / self.fps
        if self._dirty and self._last_params is not None:
            # Inertialisation: evaluate the edited schedule at the previous frame first (this order
            # also keeps pruning safe). Only an edit that changes the present restarts the offset
            # (future beats do not), and then it carries the difference from what was shown.
            previous_s = (self._frame - 1) / self.fps
            edited = self._target(previous_s)
            if not np.array_equal(edited, self._last_target):
                self._offset = self._last_params - edited
                self._offset_start_s = previous_s
        self._dirty = False
        params = self._last_target = self._target(t_s)
        if self._offset is not None:
            decay = 1.0 - smoothstep((t_s - self._offset_start_s) / _INERTIA_S)
            if decay > 0.0:
                params = params + decay * self._offset
            else:
                self._offset = None
        joints = self._joints(params)
        if self._last_joints is not None:
            params, joints = self._govern(params, joints)
        self._frame += 1
        self._last_params, self._last_joints = params, joints
        return joints.copy()

    def _govern(self, params: np.ndarray, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pull a too-fast step back along the parameter path until no joint moves > MAX_STEP_M."""
        step = float(np.max(np.linalg.norm(joints - self._last_joints, axis=-1)))
        candidate, fraction = params, 1.0
        for _ in range(8):
            if step <= MAX_STEP_M:
                return candidate, joints
            # Displacement is close to linear in a small parameter step, so one rescale nearly fits.
            fraction *= 0.95 * MAX_STEP_M / step
            candidate = self._last_params + fraction * (params - self._last_params)
            joints = self._joints(candidate)
            step = float(np.max(np.linalg.norm(joints - self._last_joints, axis=-1)))
        if step <= MAX_STEP_M:
            return candidate, joints
        return self._last_params, self._last_joints.copy()  # unreachable in practice: hold still
