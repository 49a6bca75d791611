"""The speech corpus format every talker tool reads: ``manifest.jsonl`` + 24 kHz mono WAV files.

A corpus folder holds

    manifest.jsonl   one JSON object per utterance (``Utterance``), appended as they are made
    phonemes.json    the phoneme inventory (espeak-ng mnemonics) in a fixed order
    wav/ID.wav       16-bit PCM, 24 kHz, mono

Splits are by sentence, so no test sentence is ever heard in training, by any voice:
``train`` / ``val`` / ``test`` for the training voices, ``heldout`` for voices never trained on
(spoken only on test sentences). Phoneme timings are in seconds from the start of the WAV.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SAMPLE_RATE = 24000
MANIFEST = "manifest.jsonl"
PHONEMES = "phonemes.json"
SPLITS = ("train", "val", "test", "heldout")
SILENCE = "_"  # the phoneme id 0 of every inventory: pauses and the time outside any phoneme


@dataclass(frozen=True)
class Utterance:
    """One recorded sentence."""

    id: str  # unique, also the WAV's stem
    text: str
    voice: str  # e.g. "espeak:en-gb-scotland+f2" or "piper:joe"
    emotion: str  # one of anima.core.plan.EMOTIONS
    split: str  # one of SPLITS
    sentence_id: int
    duration_s: float
    phonemes: tuple[tuple[str, float, float], ...] = ()  # (symbol, start_s, end_s), in order
    timing: str = ""  # how the phoneme times were obtained, e.g. "espeak-events", "dtw-from-espeak"
    prosody: dict[str, float] = field(default_factory=dict)  # e.g. {"pitch": 55, "range": 60, "rate": 170}

    @property
    def wav(self) -> str:
        return f"wav/{self.id}.wav"

    def to_json(self) -> str:
        d = asdict(self)
        d["phonemes"] = [list(p) for p in self.phonemes]
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Utterance:
        d = json.loads(line)
        d["phonemes"] = tuple((str(s), float(a), float(b)) for s, a, b in d.get("phonemes", ()))
        return cls(**d)


def read_manifest(corpus: str | Path, split: str | None = None) -> list[Utterance]:
    """All utterances of a corpus (or of one split); a clear error if it is not a corpus."""
    path = Path(corpus) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{corpus}: not a speech corpus (no {MANIFEST}); build one with `anima talker build-corpus`")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            u = Utterance.from_json(line)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path}:{n}: not an utterance record ({e})") from e
        if split is None or u.split == split:
            out.append(u)
    return out


def append_utterances(corpus: str | Path, utterances: Iterable[Utterance]) -> None:
    """Append records (after their WAVs are written: a record never points at a missing file)."""
    with (Path(corpus) / MANIFEST).open("a", encoding="utf-8") as f:
        for u in utterances:
            f.write(u.to_json() + "\n")


def read_phonemes(corpus: str | Path) -> list[str]:
    """The inventory; index 0 is ``SILENCE``."""
    inventory = json.loads((Path(corpus) / PHONEMES).read_text(encoding="utf-8"))
    if not inventory or inventory[0] != SILENCE:
        raise ValueError(f"{corpus}/{PHONEMES}: the inventory must start with the silence symbol {SILENCE!r}")
    return inventory


def frame_labels(utt: Utterance, inventory: list[str], frame_rate: float, num_frames: int) -> np.ndarray:
    """Phoneme id per frame (frame i covers [i/rate, (i+1)/rate)), by the phoneme at the frame's centre.

    Unknown symbols map to silence. Returns (num_frames,) int64.
    """
    index = {s: i for i, s in enumerate(inventory)}
    labels = np.zeros(num_frames, dtype=np.int64)
    centres = (np.arange(num_frames) + 0.5) / frame_rate
    for symbol, start, end in utt.phonemes:
        labels[(centres >= start) & (centres < end)] = index.get(symbol, 0)
    return labels


def load_wav(corpus: str | Path, utt: Utterance) -> np.ndarray:
    """The utterance's samples as (N,) float32 in [-1, 1] at 24 kHz."""
    import soundfile as sf

    samples, rate = sf.read(Path(corpus) / utt.wav, dtype="float32", always_2d=False)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{utt.wav}: {rate} Hz, the corpus format is {SAMPLE_RATE} Hz")
    return samples


def iter_split(corpus: str | Path, split: str) -> Iterator[tuple[Utterance, np.ndarray]]:
    """(utterance, samples) for every utterance of one split."""
    for u in read_manifest(corpus, split):
        yield u, load_wav(corpus, u)
