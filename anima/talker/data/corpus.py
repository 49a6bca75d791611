"""``anima talker build-corpus``: speak the novel's sentences in every corpus voice, with timings.

Three streams of utterances fill their share of the requested hours: the twelve espeak training
voices (80 %), Piper (20 %) and the held-out voices (4.5 %, test sentences only; on top of the
rest, so 5 h asks for about 5.2 h). Each stream is a fixed, seeded sequence of (sentence, voice)
pairs; the next utterance always comes from the stream furthest behind its share, so a corpus cut
short is still balanced. An utterance's emotion, prosody and id (``SENTENCE-VOICE-EMOTION``) follow
from the seed, the sentence and the voice, so a re-run skips what the manifest already holds and
continues the same sequence. A WAV is written (atomically) before its manifest line.

    anima talker build-corpus --hours 5 --out out/talker/corpus
"""

from __future__ import annotations

import json
import logging
import math
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anima.talker.data.manifest import (
    MANIFEST,
    PHONEMES,
    SAMPLE_RATE,
    SILENCE,
    Utterance,
    append_utterances,
    read_manifest,
    read_phonemes,
)
from anima.talker.data.prosody import choose_emotion, prosody_for
from anima.talker.data.sentences import DEFAULT_NOVEL, Sentence, load_corpus_sentences
from anima.talker.data.voices import HELDOUT_VOICES, PIPER_VOICE, TRAIN_ESPEAK, Voice, render, voice_by_name

logger = logging.getLogger(__name__)

__all__ = ["SHARES", "Item", "build_corpus", "write_inventory"]

SHARES = {"espeak": 0.8, "piper": 0.2, "heldout": 0.045}  # fraction of --hours per stream
MAX_HOURS = 1000.0


@dataclass(frozen=True)
class Item:
    """One utterance to make."""

    id: str
    sentence: Sentence
    voice: Voice
    emotion: str
    split: str
    seed: int  # for the prosody jitter


def _stream_of(voice: Voice) -> str:
    return "heldout" if voice.heldout else voice.engine


def _item(seed: int, sentence: Sentence, voice: Voice) -> Item:
    key = [seed, sentence.id, zlib.crc32(voice.name.encode())]
    emotion = choose_emotion(np.random.default_rng(key))
    split = "heldout" if voice.heldout else sentence.split
    return Item(f"{sentence.id:05d}-{voice.slug}-{emotion}", sentence, voice, emotion, split,
                int(np.random.default_rng(key + [1]).integers(2**31)))


def _stream(seed: int, sentences: list[Sentence], voices: tuple[Voice, ...], salt: int) -> Iterator[Item]:
    """Every sentence once per voice: sentences in a seeded order, voices rotating over them."""
    order = np.random.default_rng([seed, salt]).permutation(len(sentences))
    for k in range(len(order) * len(voices)):
        yield _item(seed, sentences[order[k % len(order)]], voices[(k + k // len(order)) % len(voices)])


def _render_item(item: Item, wav_dir: str) -> Utterance:
    """Synthesise one item, write its WAV, return its record (runs in the worker processes too)."""
    import soundfile as sf

    prosody = prosody_for(item.emotion, item.voice.name, np.random.default_rng(item.seed))
    r = render(item.voice, item.sentence.text, prosody)
    path = Path(wav_dir) / f"{item.id}.wav"
    tmp = path.with_suffix(".tmp.wav")
    sf.write(tmp, np.clip(r.samples, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, path)
    return Utterance(id=item.id, text=item.sentence.text, voice=item.voice.name, emotion=item.emotion,
                     split=item.split, sentence_id=item.sentence.id, duration_s=round(len(r.samples) / SAMPLE_RATE, 4),
                     phonemes=tuple(r.phonemes), timing=r.timing, prosody=r.prosody)


def write_inventory(out: str | Path) -> list[str]:
    """Write ``phonemes.json``: the silence symbol, then every symbol in the manifest, sorted."""
    symbols = {p[0] for u in read_manifest(out) for p in u.phonemes} - {SILENCE}
    inventory = [SILENCE, *sorted(symbols)]
    (Path(out) / PHONEMES).write_text(json.dumps(inventory) + "\n", encoding="utf-8")
    return inventory


def _check_espeak() -> None:
    from anima.talker.espeak import EspeakTTS

    if not EspeakTTS.is_available():
        raise RuntimeError("espeak-ng is not available (libespeak-ng could not be loaded); install it with "
                           "`apt-get install espeak-ng` (Debian/Ubuntu) or your system's package manager")


def build_corpus(out: str | Path = "out/talker/corpus", hours: float = 5.0, novel: str | Path = DEFAULT_NOVEL,
                 seed: int = 0, jobs: int = 1, quiet: bool = False) -> dict:
    """Build (or continue) the corpus in ``out`` until each stream holds its share of ``hours``.

    Returns a summary: hours per split and per voice, utterance count, inventory size.

    Raises:
        ValueError: ``hours`` not a positive number (at most 1000) or ``jobs`` < 1.
        FileNotFoundError: the novel folder is missing or holds no chapters.
        RuntimeError: espeak-ng is missing.
    """
    if not isinstance(hours, (int, float)) or not math.isfinite(hours) or not 0 < hours <= MAX_HOURS:
        raise ValueError(f"--hours must be a number in (0, {MAX_HOURS:g}], got {hours!r}")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    sentences = load_corpus_sentences(novel)
    _check_espeak()
    out = Path(out)
    (out / "wav").mkdir(parents=True, exist_ok=True)

    existing = read_manifest(out) if (out / MANIFEST).is_file() else []
    done_ids = {u.id for u in existing}
    done_s = dict.fromkeys(SHARES, 0.0)
    for u in existing:
        done_s[_stream_of(voice_by_name(u.voice))] += u.duration_s
    target_s = {k: share * hours * 3600 for k, share in SHARES.items()}
    test = [s for s in sentences if s.split == "test"]
    streams = {
        "espeak": _stream(seed, sentences, TRAIN_ESPEAK, 1),
        "piper": _stream(seed, sentences, (PIPER_VOICE,), 2),
        "heldout": _stream(seed, test, HELDOUT_VOICES, 3),
    }
    pending_s = dict.fromkeys(SHARES, 0.0)  # estimated seconds in flight per stream
    est_s = {k: 5.0 for k in SHARES}  # running mean utterance length, for the in-flight estimate

    def next_item() -> Item | None:
        while True:
            open_ = [k for k in streams if done_s[k] + pending_s[k] < target_s[k]]
            if not open_:
                return None
            k = min(open_, key=lambda k: (done_s[k] + pending_s[k]) / target_s[k])
            item = next(streams[k], None)
            if item is None:
                logger.warning("stream %s ran out of (sentence, voice) pairs at %.0f s", k, done_s[k])
                del streams[k]
                continue
            if item.id not in done_ids:
                return item

    from tqdm import tqdm

    total = sum(target_s.values())
    bar = tqdm(total=round(total), initial=round(min(sum(done_s.values()), total)), unit="s audio",
               disable=quiet, dynamic_ncols=True)

    def finish(item: Item, utt: Utterance) -> None:
        append_utterances(out, [utt])
        k = _stream_of(item.voice)
        pending_s[k] -= est_s[k]
        done_s[k] += utt.duration_s
        est_s[k] = 0.9 * est_s[k] + 0.1 * utt.duration_s
        bar.update(round(utt.duration_s))

    wav_dir = str(out / "wav")
    try:
        if jobs == 1:
            while (item := next_item()) is not None:
                pending_s[_stream_of(item.voice)] += est_s[_stream_of(item.voice)]
                finish(item, _render_item(item, wav_dir))
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")  # espeak runs a thread: never fork it
            with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
                running: dict[Future, Item] = {}
                while True:
                    while len(running) < 2 * jobs and (item := next_item()) is not None:
                        pending_s[_stream_of(item.voice)] += est_s[_stream_of(item.voice)]
                        running[pool.submit(_render_item, item, wav_dir)] = item
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        finish(running.pop(fut), fut.result())
    finally:
        bar.close()
    inventory = write_inventory(out)
    return summarize(out, inventory)


def summarize(out: str | Path, inventory: list[str] | None = None) -> dict:
    """Hours per split and per voice of a corpus."""
    utts = read_manifest(out)
    by_split: dict[str, float] = {}
    by_voice: dict[str, float] = {}
    for u in utts:
        by_split[u.split] = by_split.get(u.split, 0.0) + u.duration_s / 3600
        by_voice[u.voice] = by_voice.get(u.voice, 0.0) + u.duration_s / 3600
    return {
        "out": str(out),
        "utterances": len(utts),
        "hours": round(sum(by_split.values()), 3),
        "hours_by_split": {k: round(v, 3) for k, v in sorted(by_split.items())},
        "hours_by_voice": {k: round(v, 3) for k, v in sorted(by_voice.items())},
        "phonemes": len(inventory if inventory is not None else read_phonemes(out)),
    }
