"""The persona reward r(a) of the paper's eq. 23: how much closer a reply is to the ideal in-character
reply than to the flawed one, in meaning and in surface form.

    r(a) = w_sim * (sim(a, o_pos) - sim(a, o_neg)) + w_form * (form(a, o_pos) - form(a, o_neg))

``sim``: cosine of the project's sentence embeddings (``anima.embed``; MiniLM from its wheel).
``form``: 1 - word-level Levenshtein distance / the longer length (1 = the same words in the same
order). r lies in [-(w_sim * 2 + w_form), w_sim * 2 + w_form]; 0 means "as close to one as to the other".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from anima.talker.training.speech_metrics import edit_distance
from anima.thinker.text import words

W_SIM, W_FORM = 1.0, 0.5


def edit_similarity(a: str, b: str) -> float:
    """1 - word-level Levenshtein distance / max(len), case-insensitive; 1.0 for two empty strings."""
    x, y = [w.lower() for w in words(a)], [w.lower() for w in words(b)]
    if not x and not y:
        return 1.0
    return 1.0 - edit_distance(x, y) / max(len(x), len(y))


class PersonaReward:
    """r(a) against each sample's (positive, negative) pair, batched over the embedder."""

    def __init__(self, embedder=None, w_sim: float = W_SIM, w_form: float = W_FORM) -> None:
        if embedder is None:
            from anima.embed import get_embedder

            embedder = get_embedder("minilm")
        self.embedder, self.w_sim, self.w_form = embedder, w_sim, w_form

    def __call__(self, replies: Sequence[str], positives: Sequence[str], negatives: Sequence[str]) -> list[float]:
        if not (len(replies) == len(positives) == len(negatives)):
            raise ValueError(f"PersonaReward: {len(replies)} replies, {len(positives)} positives, {len(negatives)} negatives")
        if not replies:
            return []
        vec = self.embedder.encode([*replies, *positives, *negatives])
        n = len(replies)
        a, p, q = vec[:n], vec[n:2 * n], vec[2 * n:]
        sim = np.sum(a * p, axis=1) - np.sum(a * q, axis=1)  # the embedder returns unit vectors
        form = np.array([edit_similarity(r, pos) - edit_similarity(r, neg) for r, pos, neg in zip(replies, positives, negatives, strict=False)])
        return [float(v) for v in self.w_sim * sim + self.w_form * form]
