"""The default Face Animator: visemes + emotion + idle/listening behaviour -> 112-D face params.

``ProceduralFace`` needs no model and no GPU. Each video tick it combines

- the speaking mouth from a ``VisemeTrack`` (coarticulated visemes from the Talker's phoneme
  timings, exactly at rest when no speech is scheduled),
- the emotion of the current plan, blended over 0.5 s when it changes,
- ``IdleBehaviour``: blinks, saccades, head drift, breathing and the reactions to both parties'
  audio,

and clips the result into the valid ranges of ``anima.face.params``. The rotation-driven ARKit
slots (jawOpen, jawLeft/Right, eyeLook*) are written consistently with the angles, so
``params.from_arkit(params.to_arkit(x))`` gives ``x`` back.

Try it::

    python -c "import numpy as np; from anima.face.procedural import ProceduralFace; \
f = ProceduralFace(); print(f.step(0.0, np.zeros(960), np.zeros(960))[100:112])"
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from anima.core.frames.audio import SpeechEvent
from anima.core.plan import EMOTIONS
from anima.face import params
from anima.face.emotion_blend import EmotionBlend
from anima.face.listening import IdleBehaviour, IdleConfig, rms_level
from anima.face.viseme import CHANNELS, CoarticulationConfig, VisemeTrack


def _lr(base: str, value: float) -> dict[str, float]:
    return {f"{base}Left": value, f"{base}Right": value}


# Emotion -> (ARKit weights, head offset (pitch, yaw, roll) rad, eye pitch offset rad).
EMOTION_POSES: dict[str, tuple[dict[str, float], tuple[float, float, float], float]] = {
    "neutral": ({}, (0.0, 0.0, 0.0), 0.0),
    "happy": (
        {**_lr("mouthSmile", 0.55), **_lr("cheekSquint", 0.35), **_lr("eyeSquint", 0.2), **_lr("mouthDimple", 0.1)},
        (-0.02, 0.0, 0.0),
        0.0,
    ),
    "sad": (
        {**_lr("mouthFrown", 0.45), "browInnerUp": 0.55, "mouthShrugLower": 0.2, **_lr("eyeSquint", 0.1)},
        (0.06, 0.0, 0.0),
        0.06,
    ),
    "angry": (
        {**_lr("browDown", 0.6), **_lr("mouthPress", 0.35), **_lr("noseSneer", 0.25), **_lr("eyeSquint", 0.3),
         "jawForward": 0.05},
        (0.03, 0.0, 0.0),
        0.0,
    ),
    "surprised": (
        {"browInnerUp": 0.6, **_lr("browOuterUp", 0.65), **_lr("eyeWide", 0.55), "jawOpen": 0.15},
        (-0.03, 0.0, 0.0),
        -0.02,
    ),
    "calm": ({**_lr("mouthSmile", 0.12), **_lr("eyeBlink", 0.1)}, (0.01, 0.0, 0.0), 0.0),
    "curious": (
        {"browOuterUpLeft": 0.5, "browInnerUp": 0.2, "eyeWideLeft": 0.15, **_lr("mouthSmile", 0.05)},
        (0.0, 0.0, 0.06),
        0.0,
    ),
    "proud": (
        {**_lr("mouthSmile", 0.3), "mouthShrugLower": 0.2, **_lr("eyeSquint", 0.1)},
        (-0.06, 0.0, 0.0),
        0.03,
    ),
    "afraid": (
        {"browInnerUp": 0.6, **_lr("browOuterUp", 0.3), **_lr("eyeWide", 0.6), **_lr("mouthStretch", 0.35)},
        (0.02, 0.0, 0.0),
        0.0,
    ),
}

_I = params.ARKIT_INDEX


# An emotion's pose as one vector: the 52 ARKit weights, then head pitch, yaw, roll, then eye pitch.
_NUM_ARKIT = len(params.ARKIT_NAMES)  # 52
_EMOTION_HEAD = slice(_NUM_ARKIT, _NUM_ARKIT + 3)
_EMOTION_EYE_PITCH = _NUM_ARKIT + 3
_EMOTION_DIM = _NUM_ARKIT + 4


def _emotion_vector(name: str) -> np.ndarray:
    """(52 weights, 3 head angles, 1 eye pitch) of an emotion as one array. # (56,)"""
    weights, head, eye_pitch = EMOTION_POSES[name]
    vec = np.zeros(_EMOTION_DIM)
    for key, value in weights.items():
        vec[_I[key]] = value
    vec[_EMOTION_HEAD] = head
    vec[_EMOTION_EYE_PITCH] = eye_pitch
    return vec


_EMOTION_VECTORS = {name: _emotion_vector(name) for name in EMOTIONS}
# Emotion mouth shapes that fight articulation are damped while speaking (a press or a dropped
# jaw would hide m/b/p closures and vowels); smiles and frowns stay.
_ARTICULATION_DAMPED = np.zeros(_NUM_ARKIT)
for _name in ("jawOpen", "mouthPressLeft", "mouthPressRight", "mouthStretchLeft", "mouthStretchRight",
              "mouthShrugLower", "mouthShrugUpper", "mouthClose", "mouthFunnel", "mouthPucker",
              "mouthRollLower", "mouthRollUpper"):
    _ARTICULATION_DAMPED[_I[_name]] = 0.7
_MOUTH_INDEX = np.array([_I[name] for name in CHANNELS])  # viseme channel -> expression slot
_BLINK = [_I["eyeBlinkLeft"], _I["eyeBlinkRight"]]
_WIDE_SQUINT = [_I["eyeWideLeft"], _I["eyeWideRight"], _I["eyeSquintLeft"], _I["eyeSquintRight"]]
_BROW_DOWN = [_I["browDownLeft"], _I["browDownRight"]]
_BROW_OUTER = [_I["browOuterUpLeft"], _I["browOuterUpRight"]]
_JAW_OPEN, _JAW_LEFT, _JAW_RIGHT = _I["jawOpen"], _I["jawLeft"], _I["jawRight"]
_EYE_LOOK = {name: _I[name] for name in params.ROTATION_DRIVEN if name.startswith("eyeLook")}
for _n in EMOTIONS:
    if not set(EMOTION_POSES[_n][0]) <= set(params.ARKIT_INDEX):
        raise RuntimeError(f"emotion {_n}: unknown ARKit names")  # pragma: no cover - table typo guard


class ProceduralFace:
    """The embedded default face animator (see the module docstring).

    Owns one ``VisemeTrack`` and one ``IdleBehaviour``; ``reset`` returns both to their initial
    state, so a replay with the same seed and inputs gives the same frames.
    """

    def __init__(
        self,
        fps: int = 25,
        seed: int = 0,
        coarticulation: CoarticulationConfig | None = None,
        idle: IdleConfig | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"ProceduralFace: fps must be positive, got {fps}")
        self.fps = int(fps)
        self.seed = seed
        self.track = VisemeTrack(coarticulation)
        self.idle = IdleBehaviour(seed, idle)
        self.emotion = EmotionBlend(_EMOTION_VECTORS)
        self._out = np.zeros(params.FACE_DIM, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Forget scheduled speech, emotion and gaze; restart the idle behaviour from the seed."""
        self.track.reset()
        self.idle.reset()
        self.emotion.reset()
        self._last_prune_s = -math.inf

    # -- control ------------------------------------------------------------------------------

    def schedule_speech(self, events: Sequence[tuple[float, SpeechEvent]]) -> None:
        """Schedule the agent's speech events at absolute media times (s); repeats are ignored."""
        self.track.add(events)

    def cut_speech(self, t_s: float) -> None:
        """Interruption at media time ``t_s``: the mouth relaxes to rest within ~100 ms."""
        self.track.cut(t_s)

    def set_emotion(self, emotion: str, t_s: float) -> None:
        """Blend to ``emotion`` (one of ``plan.EMOTIONS``) over 0.5 s starting at media time ``t_s``."""
        self.emotion.set(emotion, t_s)

    def set_gaze(self, target: str, t_s: float) -> None:
        """Look at a ``plan.GAZE_TARGETS`` target from media time ``t_s`` on."""
        self.idle.set_gaze(target, t_s)

    # -- stepping -----------------------------------------------------------------------------

    def step(self, t_s: float, own_audio: np.ndarray, other_audio: np.ndarray) -> np.ndarray:
        """One video tick at media time ``t_s`` -> face params. # (112,) float32

        ``own_audio``/``other_audio`` are what the agent and the other party produced during the
        tick (24 kHz float32, may be empty; non-finite samples count as silence).
        """
        t_s = float(t_s)
        if not math.isfinite(t_s):
            raise ValueError(f"ProceduralFace.step: t_s must be finite, got {t_s}")
        if t_s - self._last_prune_s > 2.0:  # keep the timeline short in long sessions
            self.track.prune(t_s - self.track.config.history_s)
            self._last_prune_s = t_s
        mouth = self.track.values_at(t_s, 1.0 / self.fps)[0]  # (K,)
        speaking = float(self.track.gate_at(t_s)[0])
        pose = self.idle.step(t_s, rms_level(own_audio), rms_level(other_audio))
        emotion = self.emotion.at(t_s)  # (56,)

        out = self._out
        out[:] = 0.0
        expr = out[:_NUM_ARKIT]
        expr += emotion[:_NUM_ARKIT] * (1.0 - _ARTICULATION_DAMPED * speaking)
        expr[_MOUTH_INDEX] += mouth
        expr[_BLINK] += pose.blink
        expr[_WIDE_SQUINT] *= 1.0 - pose.blink  # lids closing hide widening and squint
        expr[_I["browInnerUp"]] += 0.8 * pose.brow_raise
        expr[_BROW_OUTER] += pose.brow_raise
        expr[_BROW_DOWN] *= 1.0 - pose.brow_raise
        # Upper lids follow the eyes down a little.
        eye_pitch = pose.eye_pitch + emotion[_EMOTION_EYE_PITCH]
        expr[_BLINK] += 0.25 * max(eye_pitch, 0.0) / params.EYE_PITCH_MAX_RAD
        np.clip(expr, 0.0, 1.0, out=expr)

        # Angles; rotation-driven slots derived from them as params.to_arkit does.
        jaw_open = expr[_JAW_OPEN]
        out[params.JAW_OPEN_ANGLE] = jaw_open * params.JAW_OPEN_MAX_RAD
        expr[_JAW_LEFT] = expr[_JAW_RIGHT] = 0.0
        head_limit = 0.9 * params.HEAD_MAX_RAD
        head_pitch, head_yaw, head_roll = emotion[_EMOTION_HEAD]
        out[params.HEAD_PITCH] = min(max(pose.head_pitch + head_pitch, -head_limit), head_limit)
        out[params.HEAD_YAW] = min(max(pose.head_yaw + head_yaw, -head_limit), head_limit)
        out[params.HEAD_ROLL] = min(max(pose.head_roll + head_roll, -head_limit), head_limit)
        pitch = min(max(eye_pitch, -params.EYE_PITCH_MAX_RAD), params.EYE_PITCH_MAX_RAD)
        yaw = min(max(pose.eye_yaw, -params.EYE_YAW_MAX_RAD), params.EYE_YAW_MAX_RAD)
        out[params.EYE_PITCH] = pitch
        out[params.EYE_YAW] = yaw
        down = max(pitch, 0.0) / params.EYE_PITCH_MAX_RAD
        up = max(-pitch, 0.0) / params.EYE_PITCH_MAX_RAD
        left = max(yaw, 0.0) / params.EYE_YAW_MAX_RAD  # toward the subject's left
        right = max(-yaw, 0.0) / params.EYE_YAW_MAX_RAD
        look = _EYE_LOOK
        expr[look["eyeLookDownLeft"]] = expr[look["eyeLookDownRight"]] = down
        expr[look["eyeLookUpLeft"]] = expr[look["eyeLookUpRight"]] = up
        expr[look["eyeLookOutLeft"]] = expr[look["eyeLookInRight"]] = left
        expr[look["eyeLookInLeft"]] = expr[look["eyeLookOutRight"]] = right
        return out.astype(np.float32)
