"""Training data of the mixture of transformers: the agent's sentences in the dialogue corpus, and silent commands.

``build`` turns every agent sentence of the dialogue corpus (docs/dialogues.md) into one item::

    phonemes  espeak-ng phonemes of the sentence (the speech expert's text tokens)
    codes     (8, T) speech-tokenizer codes of the sentence's audio as the agent played it
    speaker   (128,) our speaker encoder's vector of that audio; emotion: the plan's
    behaviour (history + T, 750) tokens: the agent's face and body from ``history`` tokens before
              the sentence starts to its end (anima.e2e.mot.behaviour), at 12.5 Hz like the codes

Sentences come from the agent's word timings (a sentence runs from its first word to the next
sentence's first word, or the end of the turn); interrupted turns are left out (their text is not
what was played). One ``.npz`` per conversation under ``OUT/conv/`` written atomically, so a stopped
build resumes where it was. Silent-command items are made on the fly from
``anima.e2e.mot.commands`` (procedural targets, no audio).

    python -m anima.e2e.mot.training.data --dialogues out/dialogues --out out/mot/data \\
        --tokenizer out/talker/runs/tokenizer_enc2500 --speaker out/talker/runs/speaker
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anima.core.plan import EMOTIONS
from anima.e2e.mot.behaviour import TOKEN_DIM, pack_frames, resample

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
TOKEN_SAMPLES = 1920  # 80 ms at 24 kHz: one speech frame, one behaviour token
HISTORY_TOKENS = 10
MIN_S, MAX_S = 0.6, 12.0  # sentences outside this span are skipped
COMMANDS_FILE = "commands.npz"
COMMAND_SEEDS = range(512)  # training clips; the detectors were tuned on seeds 0..199 and tested on 1000..1199
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[\w']+")


@dataclass
class Item:
    """One training sequence: a spoken sentence, or a silent command (no codes)."""

    conv: str
    text: str
    phonemes: list[str]
    codes: np.ndarray  # (8, T) int16; (8, 0) for a silent command
    speaker: np.ndarray  # (128,) float32 (zeros = unknown voice)
    emotion: str
    behaviour: np.ndarray  # (history + T_b, 750) float32, raw (not normalised)
    silent: bool = False


def sentences_of(turn: dict) -> list[tuple[str, float, float]]:
    """(text, start_s, end_s) per sentence of an agent transcript entry, from its word timings."""
    words = turn.get("words") or []
    parts = [p for p in _SENTENCE.split(turn["text"].strip()) if _WORD.search(p)]
    counts = [len(_WORD.findall(p)) for p in parts]
    if sum(counts) != len(words) or not parts:
        return [(turn["text"], float(turn["start"]), float(turn["end"]))] if parts else []
    out, i = [], 0
    for part, n in zip(parts, counts, strict=True):
        start = float(words[i][0])
        i += n
        end = float(words[i][0]) if i < len(words) else float(turn["end"])
        out.append((part, start, end))
    return out


def conversation_items(conv_dir: Path, tokenizer, encoder, history: int = HISTORY_TOKENS) -> list[Item]:
    """Every usable agent sentence of one conversation."""
    import soundfile as sf
    import torch

    from anima.talker.data.phonemize import phonemize
    from anima.talker.model.kodama_tts import normalize_phonemes

    meta = json.loads((conv_dir / "meta.json").read_text())
    audio, sr = sf.read(str(conv_dir / "agent.flac"), dtype="float32")
    if sr != SAMPLE_RATE:
        raise ValueError(f"{conv_dir}: agent audio at {sr} Hz, expected {SAMPLE_RATE}")
    motion = np.load(conv_dir / "motion.npz")
    face = motion["face"].astype(np.float32)  # (T25, 112)
    body = resample(motion["body263"], 20, 25, frames=face.shape[0])  # (T25, 263)
    emotions = {e["agent_turn"]: e.get("emotion", "neutral") for e in meta["events"] if e["type"] == "agent_plan"}
    items = []
    for turn in meta["transcript"]:
        if turn["speaker"] != "agent" or turn.get("interrupted"):
            continue
        for text, start, end in sentences_of(turn):
            if not MIN_S <= end - start <= MAX_S:
                continue
            a, b = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
            n_tok = (b - a) // TOKEN_SAMPLES
            f0 = round(start * 25)
            if n_tok < 4 or f0 + 2 * n_tok > face.shape[0]:
                continue
            samples = audio[a:a + n_tok * TOKEN_SAMPLES]
            codes = tokenizer.encode(torch.from_numpy(samples)[None])[0].numpy().astype(np.int16)  # (8, T)
            n_tok = min(n_tok, codes.shape[1])
            idx = np.clip(np.arange(f0 - 2 * history, f0 + 2 * n_tok), 0, face.shape[0] - 1)  # held first pose before 0
            tokens = pack_frames(face[idx], body[idx])  # (history + n_tok, 750)
            emotion = emotions.get(turn["turn"], "neutral")
            items.append(Item(conv=meta["conv_id"], text=text, phonemes=normalize_phonemes(phonemize(text)),
                              codes=codes[:, :n_tok], speaker=encoder.embed(samples).astype(np.float32),
                              emotion=emotion if emotion in EMOTIONS else "neutral", behaviour=tokens))
    return items


def save_items(path: Path, items: list[Item]) -> None:
    """One conversation's items in one .npz, written to a temporary name and renamed."""
    rows = [{"conv": it.conv, "text": it.text, "phonemes": " ".join(it.phonemes), "emotion": it.emotion,
             "frames": int(it.codes.shape[1]), "tokens": int(it.behaviour.shape[0]), "silent": it.silent} for it in items]
    arrays = {
        "rows": np.array(json.dumps(rows)),
        "codes": np.concatenate([it.codes for it in items], axis=1) if items else np.zeros((8, 0), np.int16),
        "speakers": np.stack([it.speaker for it in items]) if items else np.zeros((0, 128), np.float32),
        "behaviour": (np.concatenate([it.behaviour for it in items]) if items else np.zeros((0, TOKEN_DIM))).astype(np.float16),
    }
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_items(path: Path) -> list[Item]:
    data = np.load(path)
    rows = json.loads(str(data["rows"]))
    items, c, t = [], 0, 0
    for r in rows:
        items.append(Item(conv=r["conv"], text=r["text"], phonemes=r["phonemes"].split(), emotion=r["emotion"],
                          codes=data["codes"][:, c:c + r["frames"]], speaker=data["speakers"][len(items)],
                          behaviour=data["behaviour"][t:t + r["tokens"]].astype(np.float32), silent=r.get("silent", False)))
        c, t = c + r["frames"], t + r["tokens"]
    return items


def command_items(seeds: range, history: int = HISTORY_TOKENS, heldout: bool = False) -> list[Item]:
    """Silent-command items: procedural clips (anima.e2e.mot.commands), neutral emotion, no voice, no audio.

    The clip's first pose is held for the ``history`` tokens before it. ``heldout`` uses the phrasings
    kept out of training.
    """
    from anima.e2e.mot.behaviour import pack
    from anima.e2e.mot.commands import COMMANDS, command_clip, phrase_for
    from anima.talker.data.phonemize import phonemize
    from anima.talker.model.kodama_tts import normalize_phonemes

    items = []
    for seed in seeds:
        command = COMMANDS[seed % len(COMMANDS)]
        clip = command_clip(command, seed)
        phrase = phrase_for(command, seed, heldout=True) if heldout else clip.phrase
        tokens = pack(clip.face, clip.body263)
        tokens = np.concatenate([np.repeat(tokens[:1], history, axis=0), tokens])
        items.append(Item(conv=f"{command}:{seed}", text=phrase, phonemes=normalize_phonemes(phonemize(phrase)),
                          codes=np.zeros((8, 0), np.int16), speaker=np.zeros(128, np.float32), emotion="neutral",
                          behaviour=tokens, silent=True))
    return items


def load_commands(out: str | Path) -> list[Item]:
    path = Path(out) / COMMANDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no command clips; run python -m anima.e2e.mot.training.data (it builds them)")
    return load_items(path)


def build(dialogues: str | Path, out: str | Path, tokenizer_dir: str | Path, speaker_dir: str | Path,
          limit: int | None = None, progress: bool = True) -> dict[str, int]:
    """Write ``OUT/conv/<conv>.npz`` for every finished conversation not done yet; returns counts."""
    import torch

    from anima.e2e.data.format import open_corpus
    from anima.talker.model.speaker_encoder import SpeakerEncoder
    from anima.talker.model.tokenizer import SpeechTokenizer

    out = Path(out)
    (out / "conv").mkdir(parents=True, exist_ok=True)
    tokenizer = SpeechTokenizer.from_pretrained(tokenizer_dir)
    encoder = SpeakerEncoder.from_pretrained(speaker_dir)
    source = {"tokenizer": str(Path(tokenizer_dir).resolve()), "digest": tokenizer.code_digest(),
              "speaker": str(Path(speaker_dir).resolve()), "history": HISTORY_TOKENS}
    recorded = out / "SOURCE.json"
    if recorded.is_file() and json.loads(recorded.read_text())["digest"] != source["digest"]:
        raise ValueError(f"{out} holds codes of another tokenizer; use a new --out")
    recorded.write_text(json.dumps(source, indent=1))
    corpus = open_corpus(dialogues)
    convs = corpus.conversations[:limit] if limit else corpus.conversations
    counts = {"conversations": 0, "sentences": 0, "kept": 0}
    (out / "splits.json").write_text(json.dumps({m["conv_id"]: m["split"] for m in convs}, indent=0))
    with torch.no_grad():
        for meta in tqdm(convs, desc="mot data", unit="conv", disable=not progress, mininterval=1.0):
            path = out / "conv" / f"{meta['conv_id']}.npz"
            if path.is_file():
                counts["kept"] += 1
                continue
            items = conversation_items(Path(meta["dir"]), tokenizer, encoder)
            save_items(path, items)
            counts["conversations"] += 1
            counts["sentences"] += len(items)
    if not (out / COMMANDS_FILE).is_file():
        items = command_items(COMMAND_SEEDS)
        save_items(out / COMMANDS_FILE, items)
        counts["commands"] = len(items)
    return counts


def load_split(out: str | Path, split: str) -> list[Item]:
    """Every item of one split (train / val / test: the dialogue corpus's split by conversation)."""
    out = Path(out)
    splits = json.loads((out / "splits.json").read_text())
    items: list[Item] = []
    for conv, s in sorted(splits.items()):
        path = out / "conv" / f"{conv}.npz"
        if s == split and path.is_file():
            items.extend(load_items(path))
    return items


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialogues", type=Path, default=Path("out/dialogues"))
    parser.add_argument("--out", type=Path, default=Path("out/mot/data"))
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--speaker", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="at most this many conversations")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(build(args.dialogues, args.out, args.tokenizer, args.speaker, args.limit))


if __name__ == "__main__":
    main()
