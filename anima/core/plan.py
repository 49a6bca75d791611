"""The action plan: what the Thinker decides for one agent turn.

Every thinker backend returns one; the Talker speaks ``speech``, the face uses ``emotion`` and
``gaze``, the body uses ``gesture`` as its motion prompt. The gesture vocabulary matches the body
animator's prompts (the Bandai Namco motion contents plus idle).
"""

from __future__ import annotations

from dataclasses import dataclass

EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "calm", "curious", "proud", "afraid")
GESTURES = (
    "none", "beat", "bow", "bye", "respond", "call", "guide", "nod", "shake", "point", "shrug", "walk",
)
GAZE_TARGETS = ("user", "away", "down", "up", "left", "right")


@dataclass(frozen=True)
class ActionPlan:
    """One turn's plan. Validated on construction: a bad field is a ValueError naming it."""

    speech: str
    emotion: str = "neutral"
    gesture: str = "beat"
    gaze: str = "user"

    def __post_init__(self) -> None:
        if not isinstance(self.speech, str):
            raise ValueError(f"action plan: speech must be text, got {type(self.speech).__name__}")
        for name, value, allowed in (
            ("emotion", self.emotion, EMOTIONS),
            ("gesture", self.gesture, GESTURES),
            ("gaze", self.gaze, GAZE_TARGETS),
        ):
            if value not in allowed:
                raise ValueError(f"action plan: unknown {name} {value!r}; expected one of {', '.join(allowed)}")
