"""Emotion-conditioned prosody for the corpus: pitch, pitch range and speaking rate per emotion.

Each emotion of the action plan (``anima.core.plan.EMOTIONS``) moves the voice's base prosody in the
direction listeners expect (happy: higher, wider, faster; sad: lower, narrower, slower; angry:
faster, wider; calm: slower, narrower ...). Every voice gets its own fixed small offsets (from a hash
of its name) and every utterance a small jitter, so emotions overlap a little as in real speech but
keep their direction on average. espeak takes all three (pitch and range on its 0-100 scales, rate
in words per minute); Piper only the rate (``length_scale`` = 1 / rate factor).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from anima.core.plan import EMOTIONS

__all__ = ["EmotionProsody", "EMOTION_PROSODY", "Prosody", "choose_emotion", "prosody_for"]

BASE_PITCH, BASE_RANGE, BASE_RATE_WPM = 50, 50, 165  # espeak's normal pitch and range; a calm reading rate


@dataclass(frozen=True)
class EmotionProsody:
    pitch: float  # added to espeak's 0-100 pitch (50 = the voice's normal pitch)
    range: float  # multiplies espeak's 0-100 pitch range (50 = normal)
    rate: float  # multiplies the speaking rate


EMOTION_PROSODY: dict[str, EmotionProsody] = {
    "neutral": EmotionProsody(0, 1.0, 1.0),
    "happy": EmotionProsody(10, 1.4, 1.10),
    "sad": EmotionProsody(-10, 0.55, 0.82),
    "angry": EmotionProsody(4, 1.5, 1.15),
    "surprised": EmotionProsody(16, 1.6, 1.05),
    "calm": EmotionProsody(-5, 0.7, 0.88),
    "curious": EmotionProsody(6, 1.25, 1.0),
    "proud": EmotionProsody(2, 1.2, 0.93),
    "afraid": EmotionProsody(12, 1.3, 1.18),
}
assert set(EMOTION_PROSODY) == set(EMOTIONS), "every plan emotion needs a prosody entry"

# Neutral speech is the most common at run time; the other emotions share the rest evenly.
_EMOTION_WEIGHTS = np.array([3.0 if e == "neutral" else 1.0 for e in EMOTIONS]) / (len(EMOTIONS) + 2.0)


@dataclass(frozen=True)
class Prosody:
    """What one utterance is spoken with."""

    pitch: int  # espeak pitch, 0-100
    range: int  # espeak pitch range, 0-100
    rate_factor: float  # speaking rate relative to the voice's normal

    @property
    def rate_wpm(self) -> int:
        return int(np.clip(round(BASE_RATE_WPM * self.rate_factor), 80, 450))

    @property
    def length_scale(self) -> float:
        """Piper's duration multiplier for this rate."""
        return round(1.0 / self.rate_factor, 4)

    def espeak_record(self) -> dict[str, float]:
        return {"pitch": self.pitch, "range": self.range, "rate": self.rate_wpm, "rate_factor": self.rate_factor}

    def piper_record(self) -> dict[str, float]:
        """Piper cannot change pitch: only the rate was applied."""
        return {"rate_factor": self.rate_factor, "length_scale": self.length_scale}


def choose_emotion(rng: np.random.Generator) -> str:
    """An emotion of the action plan, neutral three times as likely as each other one."""
    return str(EMOTIONS[int(rng.choice(len(EMOTIONS), p=_EMOTION_WEIGHTS))])


def _voice_offsets(voice: str) -> tuple[float, float, float]:
    """The voice's own fixed (pitch, range, rate) offsets: a speaker's habitual level and tempo."""
    rng = np.random.default_rng(zlib.crc32(voice.encode("utf-8")))
    return float(rng.uniform(-6, 6)), float(rng.uniform(-8, 8)), float(rng.uniform(-0.06, 0.06))


def prosody_for(emotion: str, voice: str, rng: np.random.Generator) -> Prosody:
    """The prosody of one utterance: the emotion's shift, the voice's offsets and a small jitter.

    Raises:
        ValueError: unknown emotion.
    """
    if emotion not in EMOTION_PROSODY:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}")
    e = EMOTION_PROSODY[emotion]
    dp, dr, drate = _voice_offsets(voice)
    pitch = BASE_PITCH + e.pitch + dp + rng.normal(0, 2.5)
    pitch_range = BASE_RANGE * e.range + dr + rng.normal(0, 3.0)
    rate = e.rate * (1.0 + drate) * (1.0 + rng.normal(0, 0.03))
    return Prosody(int(np.clip(round(pitch), 0, 100)), int(np.clip(round(pitch_range), 0, 100)),
                   round(float(np.clip(rate, 0.6, 1.6)), 4))
