"""UniLS as the runtime's Face Animator (``anima render --face unils``).

``UniLSFace`` implements the ``FaceAnimator`` protocol with the shipped UniLS weights
(``anima/assets/weights/face/unils``). Each tick it turns the agent's played audio and the user's
audio into one log-mel row each (streaming, causal), advances the model by one frame and returns
a 112-D face that passes ``params.check_ranges``. The model is audio-driven, so phoneme events
are not needed (``schedule_speech`` only records that speech is coming) and ``cut_speech`` needs
nothing: the interrupted audio stops and the mouth follows. The plan's emotion and gaze are laid
over the generated face (blended over 0.5 s / 0.35 s) as the procedural face does.

The runtime policy holds: ``step`` never raises on bad audio. Empty ticks are silence, non-finite
samples count as silence, clipped audio is clipped to [-1, 1], and a tick of another length is
taken to span 40 ms and resampled (a 16 kHz microphone gives 640 samples).

    from anima.face.unils import UniLSFace
    face = UniLSFace.load(seed=0)   # the weights are loaded once per process (UniLS.from_pretrained)
    params_112 = face.step(0.0, own_tick_960, other_tick_960)

Each ``UniLSFace`` is one session: it owns its streaming state (``UniLS.new_state``), feature
streams and overlays, and shares the read-only model with every other session. The torch thread
count is the caller's (the CLI and server set one thread at start-up: this small model runs
fastest on one).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from anima.checkpoint import read_config
from anima.core.frames.audio import SpeechEvent
from anima.core.plan import EMOTIONS, GAZE_TARGETS
from anima.face import motion as motion_space
from anima.face import params
from anima.face.audio_features import AudioFeatureConfig, LogMelStream, fit_tick
from anima.face.emotion_blend import EmotionBlend
from anima.face.listening import GAZE_DIRECTIONS
from anima.face.model.unils import SamplingConfig, UniLS
from anima.face.procedural import EMOTION_POSES

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "weights" / "face" / "unils"
GAZE_TIME_CONSTANT_S = 0.35


def _emotion_offset(name: str) -> np.ndarray:
    """The emotion's pose as an offset in motion space (free ARKit weights and head angles). # (50,)"""
    weights, head, eye_pitch = EMOTION_POSES[name]
    face = params.neutral()
    for key, value in weights.items():
        if key not in params.ROTATION_DRIVEN:
            face[params.ARKIT_INDEX[key]] = value
    face[params.HEAD] = head
    face[params.EYE_PITCH] = eye_pitch  # both eyes
    return motion_space.to_motion(face)


_EMOTIONS = {name: _emotion_offset(name) for name in EMOTIONS}


class UniLSFace:
    """The learned face animator (see the module docstring).

    Args:
        model: a trained audio-conditioned ``UniLS`` in eval mode (shared: never changed here).
        style_ref: (T_ref, 50) reference motion of the identity to play, natural units.
        seed: sampling seed (the same seed and audio give the same frames).
        sampling: temperature / top-k of the code sampling.
        head_smoothing: weight of the previous frame in a one-pole causal filter on the head
            angles (0 = off). Sampled codes leave a little frame-to-frame jitter on the head
            (second differences ~6x the training data's); 0.5 halves it for about one frame of lag,
            as ARTalk smooths its output. The experiment's metrics are computed without it.
    """

    def __init__(self, model: UniLS, style_ref: np.ndarray, seed: int = 0, sampling: SamplingConfig | None = None,
                 head_smoothing: float = 0.5) -> None:
        if not 0.0 <= head_smoothing < 1.0:
            raise ValueError(f"UniLSFace: head_smoothing must be in [0, 1), got {head_smoothing}")
        self.head_smoothing = float(head_smoothing)
        if not model.config.audio:
            raise ValueError("UniLSFace: needs an audio-conditioned model (stage 2 or one-stage), got an audio-free one")
        ref = np.asarray(style_ref, dtype=np.float32)
        if ref.ndim != 2 or ref.shape[1] != motion_space.MOTION_DIM or not np.isfinite(ref).all():
            raise ValueError(f"UniLSFace: style_ref must be finite (T, {motion_space.MOTION_DIM}), got {ref.shape}")
        if model.training:
            raise ValueError("UniLSFace: the model is in training mode; pass model.eval() (or UniLS.from_pretrained)")
        self.model = model
        self.seed = int(seed)
        self.sampling = sampling or SamplingConfig()
        self.features = AudioFeatureConfig()
        if self.features.dim != model.config.audio_dim:
            raise ValueError(f"UniLSFace: model expects {model.config.audio_dim}-D audio rows, features give {self.features.dim}")
        self.emotion = EmotionBlend(_EMOTIONS)
        self._ref = model.quantizer.normalize(torch.from_numpy(ref))[None]  # (1, T_ref, 50)
        self._streams = (LogMelStream(self.features), LogMelStream(self.features))
        self.state = model.new_state(self._ref, self.sampling, self.seed)
        self.step_times_s: list[float] = []  # wall time of each step, for latency reports
        self.reset()

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, weights: str | Path | None = None, seed: int = 0, style: str | None = None,
             sampling: SamplingConfig | None = None, head_smoothing: float = 0.5) -> UniLSFace:
        """A new session over the shipped weights (or a checkpoint directory) with one of its style clips.

        The model is loaded once per process and shared (``UniLS.from_pretrained``); each call
        returns a new session with its own state.

        Args:
            weights: checkpoint directory; default ``anima/assets/weights/face/unils``.
            seed: sampling seed.
            style: name of a style clip in ``styles.safetensors`` (default: the first).
            sampling: sampling settings; default: the ones the card recommends (config.json).
            head_smoothing: see the class docstring.
        """
        directory = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"UniLSFace: no weights at {directory} (train them: see docs/unils.md)")
        model = UniLS.from_pretrained(directory)
        meta = read_config(directory)
        styles_path = directory / "styles.safetensors"
        if not styles_path.is_file():
            raise FileNotFoundError(f"UniLSFace: {styles_path} is missing (style clips of the shipped identities)")
        styles = load_file(str(styles_path))
        if not styles:
            raise ValueError(f"UniLSFace: {styles_path} holds no style clip")
        name = style or sorted(styles)[0]
        if name not in styles:
            raise KeyError(f"unknown style {name!r}; available: {', '.join(sorted(styles))}")
        if sampling is None:
            s = meta.get("extra", {}).get("sampling") or {}
            sampling = SamplingConfig(float(s.get("temperature", 1.0)), int(s.get("top_k", 0)))
        return cls(model, styles[name], seed=seed, sampling=sampling, head_smoothing=head_smoothing)

    @staticmethod
    def available_styles(weights: str | Path | None = None) -> list[str]:
        directory = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        return sorted(load_file(str(directory / "styles.safetensors")))

    @staticmethod
    def card(weights: str | Path | None = None) -> dict:
        directory = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        return json.loads((directory / "config.json").read_text())

    # -- FaceAnimator -----------------------------------------------------------------------------

    def reset(self) -> None:
        """A new session: fresh model state (RNG re-seeded), feature streams, emotion and gaze."""
        self.state.reset()
        for s in self._streams:
            s.reset()
        self.emotion.reset()
        self._gaze_target = np.zeros(2)
        self._gaze = np.zeros(2)
        self._speech_until_s = -math.inf
        self._last_t: float | None = None
        self._head: np.ndarray | None = None
        self.step_times_s.clear()

    def schedule_speech(self, events: list[tuple[float, SpeechEvent]]) -> None:
        """Audio-driven: the events only tell when speech is expected (to damp the emotion's mouth)."""
        for t, e in events:
            if e.kind in ("end", "phoneme") and math.isfinite(t):
                self._speech_until_s = max(self._speech_until_s, float(t))

    def cut_speech(self, t_s: float) -> None:
        """Interruption: the audio stops, and the model's mouth with it; the speech horizon ends now."""
        if math.isfinite(t_s):
            self._speech_until_s = min(self._speech_until_s, float(t_s))

    def set_emotion(self, emotion: str, t_s: float) -> None:
        """Blend the plan's emotion over the generated face from ``t_s`` on (0.5 s)."""
        self.emotion.set(emotion, t_s)

    def set_gaze(self, target: str, t_s: float) -> None:
        """Shift the gaze toward a ``plan.GAZE_TARGETS`` target (eyes, and the head by 35 %)."""
        if target not in GAZE_TARGETS:
            raise ValueError(f"unknown gaze target {target!r}; expected one of {', '.join(GAZE_TARGETS)}")
        self._gaze_target = np.array(GAZE_DIRECTIONS[target], dtype=np.float64)

    def step(self, t_s: float, own_audio: np.ndarray, other_audio: np.ndarray) -> np.ndarray:
        """One 25 fps tick: this tick's audio of the agent and of the other party -> (112,) float32."""
        start = time.perf_counter()
        t_s = float(t_s) if math.isfinite(t_s) else (self._last_t or 0.0) + 0.04
        dt = 0.04 if self._last_t is None else min(max(t_s - self._last_t, 0.0), 0.25)
        self._last_t = t_s
        tick = self.features.tick
        rows = [s.process(fit_tick(a, tick)) for s, a in zip(self._streams, (own_audio, other_audio), strict=True)]
        own = torch.from_numpy(rows[0][-1:])  # (1, 80): exactly one row per tick
        other = torch.from_numpy(rows[1][-1:])
        with torch.inference_mode():
            x = self.model.step(own, other, self.state)  # (1, 50) normalised
            m = self.model.quantizer.denormalize(x)[0].numpy().astype(np.float64)
        head = m[motion_space.HEAD]
        if self._head is not None and self.head_smoothing > 0:
            head = self.head_smoothing * self._head + (1.0 - self.head_smoothing) * head
        self._head = head.copy() if np.isfinite(head).all() else None
        m[motion_space.HEAD] = head
        # Plan overlays: emotion (its mouth shapes damped while speaking) and gaze.
        emotion = self.emotion.at(t_s)
        if t_s <= self._speech_until_s + 0.2:
            emotion = emotion.copy()
            emotion[motion_space.LIPS] *= 0.3
        m[motion_space.EXPRESSION] += emotion[motion_space.EXPRESSION]
        m[motion_space.HEAD] += emotion[motion_space.HEAD]
        follow = 1.0 - math.exp(-dt / GAZE_TIME_CONSTANT_S) if dt > 0 else 0.0
        self._gaze += (self._gaze_target - self._gaze) * follow
        m[motion_space.EYE_PITCH] += self._gaze[0] * 0.65 + emotion[motion_space.EYE_PITCH[0]]
        m[motion_space.EYE_YAW] += self._gaze[1] * 0.65
        m[motion_space.HEAD_PITCH] += 0.35 * self._gaze[0]
        m[motion_space.HEAD_YAW] += 0.35 * self._gaze[1]
        out = motion_space.from_motion(m)
        self.step_times_s.append(time.perf_counter() - start)
        if len(self.step_times_s) > 10_000:
            del self.step_times_s[:5_000]
        return out
