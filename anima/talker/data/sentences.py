"""The corpus sentences: the novel's sentences, normalised to plain ASCII, with a fixed split.

Sentences come from ``anima.face.data.corpus.load_sentences`` (the same chapters and sentence
splitter the face corpus uses), are normalised (accents, typographic quotes, ellipses), kept at
3-30 words and de-duplicated. The split is a hash of the normalised text, not of the seed or the
sentence's position, so a sentence lands in the same split in every build and no test sentence
can leak into training by changing ``--seed``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from anima.face.data.corpus import DEFAULT_NOVEL, load_sentences

__all__ = ["DEFAULT_NOVEL", "Sentence", "normalize", "split_of", "load_corpus_sentences"]

MIN_WORDS, MAX_WORDS = 3, 30
VAL_FRACTION, TEST_FRACTION = 0.05, 0.05

_TRANSLATE = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201c": "", "\u201d": "", '"': "", "\u2014": ", ", "\u2013": ", ",
    "\u2026": " ", "_": " ", "(": ", ", ")": ", ", "[": "", "]": "", "*": "",
})  # fmt: skip
_KEEP = re.compile(r"[^A-Za-z0-9 .,;:!?'\-]")


@dataclass(frozen=True)
class Sentence:
    id: int  # position in the de-duplicated, filtered list (reading order)
    text: str  # normalised
    split: str  # "train", "val" or "test"


def normalize(text: str) -> str:
    """Plain-ASCII text espeak and Piper read alike: no accents, quotes, ellipses or stray symbols."""
    text = unicodedata.normalize("NFKD", text.translate(_TRANSLATE))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _KEEP.sub(" ", text)
    text = re.sub(r"\.{2,}", " ", text)  # an ellipsis makes espeak speak an empty clause
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)  # "glorious ?" -> "glorious?"
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)  # ", ," from dashes next to commas
    text = re.sub(r"[,;:]\s*([.!?])", r"\1", text)
    return text.lstrip(",;:.!? -").strip()


def split_of(text: str) -> str:
    """``train`` / ``val`` / ``test`` (about 90 / 5 / 5 %) from a hash of the normalised text."""
    h = int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big") / 2**64
    if h < TEST_FRACTION:
        return "test"
    if h < TEST_FRACTION + VAL_FRACTION:
        return "val"
    return "train"


def load_corpus_sentences(novel_dir: str | Path = DEFAULT_NOVEL) -> list[Sentence]:
    """The novel's normalised, de-duplicated sentences of 3-30 words with their split.

    Raises:
        FileNotFoundError: the folder does not exist or holds no chapter files.
    """
    novel_dir = Path(novel_dir)
    if not novel_dir.is_dir():
        raise FileNotFoundError(f"novel folder {novel_dir} not found (expected chapter .txt files, "
                                f"e.g. {DEFAULT_NOVEL}); pass --novel DIR")
    seen: set[str] = set()
    out: list[Sentence] = []
    for raw in load_sentences(novel_dir, MIN_WORDS, MAX_WORDS + 5):
        text = normalize(raw)
        words = text.split()
        if not MIN_WORDS <= len(words) <= MAX_WORDS or not re.search(r"[A-Za-z]", text) or text in seen:
            continue
        seen.add(text)
        out.append(Sentence(len(out), text, split_of(text)))
    if not out:
        raise FileNotFoundError(f"{novel_dir}: no sentences of {MIN_WORDS}-{MAX_WORDS} words in its chapter files")
    return out
