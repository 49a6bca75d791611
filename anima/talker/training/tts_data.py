"""Training batches for the Kodama TTS: phonemes + speech-tokenizer codes of the corpus utterances.

Reads a speech corpus (``anima.talker.data.manifest``) plus, per utterance,

    tokens/ID.npy     int16 (8, T): the tokenizer's codes at 12.5 Hz (the tokenize step writes them)
    speakers/ID.npy   float32 (128,): the speaker encoder's vector (optional: zeros = unknown voice)

An utterance without a token file is skipped. For voice cloning, each target is paired with
probability ``prompt_p`` with another utterance of the same voice, whose phonemes and codes go in
front as the in-context prompt (``make_sequence``); the speaker vector is zeroed with probability
``speaker_drop_p`` so the model also learns the unknown-voice case.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anima.core.plan import EMOTIONS
from anima.talker.data.manifest import read_manifest
from anima.talker.model.kodama_tts import IGNORE, KodamaTTSConfig, make_sequence, normalize_phonemes

logger = logging.getLogger(__name__)

TOKENS_DIR = "tokens"
SPEAKERS_DIR = "speakers"


@dataclass
class TTSItem:
    """One utterance ready for the model."""

    id: str
    voice: str
    text: np.ndarray  # (N,) int64 phoneme ids
    codes: np.ndarray  # (K, T) int16 codes
    speaker: np.ndarray  # (D_spk,) float32, zeros if the corpus has none
    emotion: np.ndarray  # (len(EMOTIONS),) float32 one-hot
    align: np.ndarray  # (T,) int64: index into ``text`` of the phoneme spoken in each frame


def frame_alignment(phonemes: tuple[tuple[str, float, float], ...], n_frames: int, frame_s: float = 0.08) -> np.ndarray:
    """(n_frames,) index of the phoneme spoken at each frame's centre, in ``normalize_phonemes`` order.

    A frame between two phonemes takes the earlier one, before the first the first; a repeated pause
    collapsed by ``normalize_phonemes`` shares its kept symbol's index.
    """
    kept: list[int] = []  # raw phoneme -> normalized index
    last: str | None = None
    for sym, _, _ in phonemes:
        if not (sym.startswith("_") and last == sym):
            kept.append(len(kept) and kept[-1] + 1)
        else:
            kept.append(kept[-1])
        last = sym
    starts = np.array([p[1] for p in phonemes])
    centres = (np.arange(n_frames) + 0.5) * frame_s
    raw = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(phonemes) - 1)
    return np.asarray(kept, dtype=np.int64)[raw]


def load_items(corpus: str | Path, split: str, config: KodamaTTSConfig, limit: int | None = None) -> list[TTSItem]:
    """The utterances of one split that have token files and fit the model's limits."""
    corpus = Path(corpus)
    index = {s: i for i, s in enumerate(config.symbols)}
    items, missing, too_long, foreign = [], 0, 0, 0
    for u in read_manifest(corpus, split):
        path = corpus / TOKENS_DIR / f"{u.id}.npy"
        if not path.is_file():
            missing += 1
            continue
        codes = np.load(path)
        if codes.ndim != 2 or codes.shape[0] != config.n_codebooks:
            raise ValueError(f"{path}: expected ({config.n_codebooks}, frames) codes, got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= config.codebook_size):
            raise ValueError(f"{path}: codes outside [0, {config.codebook_size})")
        symbols = normalize_phonemes([p[0] for p in u.phonemes])
        unknown = sorted({s for s in symbols if s not in index})
        if unknown:  # a corpus grown after the model was made (its inventory is fixed): the model cannot read it
            foreign += 1
            logger.warning("%s: skipped, phonemes %s are not in the model's inventory", u.id, unknown)
            continue
        if not symbols or codes.shape[1] == 0:
            continue
        if len(symbols) > config.max_phonemes or codes.shape[1] + 1 > config.max_frames:
            too_long += 1
            continue
        spk_path = corpus / SPEAKERS_DIR / f"{u.id}.npy"
        speaker = np.load(spk_path).astype(np.float32) if spk_path.is_file() else np.zeros(config.d_speaker, np.float32)
        if speaker.shape != (config.d_speaker,):
            raise ValueError(f"{spk_path}: expected a ({config.d_speaker},) speaker vector, got {speaker.shape}")
        emotion = np.zeros(config.d_emotion, np.float32)
        if u.emotion in EMOTIONS and config.d_emotion == len(EMOTIONS):
            emotion[EMOTIONS.index(u.emotion)] = 1.0
        align = frame_alignment(u.phonemes, codes.shape[1])
        items.append(TTSItem(u.id, u.voice, np.array([index[s] for s in symbols], np.int64), codes, speaker, emotion, align))
        if limit is not None and len(items) >= limit:
            break
    if missing or too_long or foreign:
        logger.info("%s/%s: %d utterances, %d without tokens/, %d over the model's limits, %d with unknown phonemes",
                    corpus, split, len(items), missing, too_long, foreign)
    if not items:
        raise ValueError(f"{corpus}: no {split} utterance has codes in {TOKENS_DIR}/ "
                         f"({missing} missing): run the tokenize step first")
    return items


def collate(seqs: list[dict[str, torch.Tensor]], speakers: torch.Tensor, emotions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Right-pad ``make_sequence`` outputs into a batch (causal attention: padding after a sequence is unseen)."""
    B, K = len(seqs), seqs[0]["audio"].shape[1]
    L = max(s["text"].shape[0] for s in seqs)
    pad = int(seqs[0]["audio"][0, 0])  # text positions hold PAD codes
    batch = {
        "text": torch.zeros(B, L, dtype=torch.long),
        "audio": torch.full((B, L, K), pad, dtype=torch.long),
        "is_audio": torch.zeros(B, L, dtype=torch.bool),
        "target": torch.full((B, L + 2, K), IGNORE, dtype=torch.long),
        "speaker": speakers, "emotion": emotions,
    }
    if all("align" in s for s in seqs):
        batch["align"] = torch.full((B, L + 2), -1, dtype=torch.long)
    for b, s in enumerate(seqs):
        n = s["text"].shape[0]
        batch["text"][b, :n], batch["audio"][b, :n], batch["is_audio"][b, :n] = s["text"], s["audio"], s["is_audio"]
        batch["target"][b, :n + 2] = s["target"]
        if "align" in batch:
            batch["align"][b, :n + 2] = s["align"]
    return batch


class TTSBatcher:
    """Random batches of training sequences, with voice prompts of the same voice now and then."""

    def __init__(self, items: list[TTSItem], config: KodamaTTSConfig, prompt_p: float = 0.5,
                 speaker_drop_p: float = 0.1, seed: int = 0) -> None:
        if not items:
            raise ValueError("TTSBatcher: no utterances")
        self.items, self.config = items, config
        self.prompt_p, self.speaker_drop_p = prompt_p, speaker_drop_p
        by_voice: dict[str, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            by_voice[item.voice].append(i)
        self.by_voice = dict(by_voice)
        self.rng = np.random.default_rng(seed)

    def _prompt(self, i: int) -> TTSItem | None:
        item, c = self.items[i], self.config
        others = self.by_voice[item.voice]
        if len(others) < 2 or self.rng.random() >= self.prompt_p:
            return None
        j = others[int(self.rng.integers(len(others) - 1))]
        j = others[-1] if j == i else j  # any other utterance of the voice
        p = self.items[j]
        fits = (len(p.text) + len(item.text) <= c.max_phonemes
                and p.codes.shape[1] + item.codes.shape[1] + 1 <= c.max_frames)
        return p if fits else None

    def example(self, i: int) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        item = self.items[i]
        prompt = self._prompt(i)
        seq = make_sequence(self.config, item.text.tolist(), torch.from_numpy(item.codes.astype(np.int64)),
                            prompt.text.tolist() if prompt else (),
                            torch.from_numpy(prompt.codes.astype(np.int64)) if prompt else None,
                            item.align.tolist(), prompt.align.tolist() if prompt else None)
        drop = self.rng.random() < self.speaker_drop_p
        return seq, np.zeros_like(item.speaker) if drop else item.speaker

    def sample(self, batch: int) -> dict[str, torch.Tensor]:
        picks = self.rng.integers(len(self.items), size=batch)
        seqs, speakers = zip(*(self.example(int(i)) for i in picks), strict=True)
        emotions = np.stack([self.items[int(i)].emotion for i in picks])
        return collate(list(seqs), torch.from_numpy(np.stack(speakers)), torch.from_numpy(emotions))
