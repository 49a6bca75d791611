"""Encode a speech corpus once for TTS training: ``tokens/ID.npy`` codes and ``speakers/ID.npy`` vectors.

The TTS model learns on the tokenizer's codes, so every token file must come from one tokenizer:
``tokens/SOURCE.json`` records which (folder, training step, weight digest), and a corpus tokenised
by another tokenizer is refused unless ``overwrite`` (then every file is rewritten). The digest covers
only the weights that decide the codes, so a tokenizer whose decoder was trained further
(``--freeze-encoder``) still matches. Resumable:
files already written are kept. Speaker vectors come from the GE2E speaker encoder when given.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anima.talker.data.manifest import load_wav, read_manifest

TOKENS_DIR, SPEAKERS_DIR, SOURCE = "tokens", "speakers", "SOURCE.json"


def tokenize_corpus(corpus: str | Path, tokenizer_dir: str | Path, speaker_dir: str | Path | None = None,
                    overwrite: bool = False, progress: bool = True) -> dict[str, int]:
    """Write the codes (int16 (8, T)) and speaker vectors of every utterance; returns counts."""
    import torch

    from anima.talker.model.tokenizer import SpeechTokenizer

    corpus = Path(corpus)
    utterances = read_manifest(corpus)
    tokenizer = SpeechTokenizer.from_pretrained(tokenizer_dir)
    source = {"tokenizer": str(Path(tokenizer_dir).resolve()), "digest": tokenizer.code_digest()}
    out = corpus / TOKENS_DIR
    out.mkdir(exist_ok=True)
    recorded = out / SOURCE
    if recorded.is_file() and json.loads(recorded.read_text())["digest"] != source["digest"]:
        if not overwrite:
            raise ValueError(f"{out} holds codes of another tokenizer ({json.loads(recorded.read_text())['tokenizer']}); "
                             "pass --overwrite to re-encode every utterance with this one")
        for f in out.glob("*.npy"):
            f.unlink()
    recorded.write_text(json.dumps(source, indent=1))
    encoder = None
    if speaker_dir is not None:
        from anima.talker.model.speaker_encoder import SpeakerEncoder

        encoder = SpeakerEncoder.from_pretrained(speaker_dir)
        (corpus / SPEAKERS_DIR).mkdir(exist_ok=True)
    counts = {"tokens": 0, "speakers": 0, "kept": 0}
    for u in tqdm(utterances, desc="tokenize", unit="utt", disable=not progress, mininterval=1.0):
        path = out / f"{u.id}.npy"
        spk_path = corpus / SPEAKERS_DIR / f"{u.id}.npy"
        need_tokens = overwrite or not path.is_file()
        need_speaker = encoder is not None and (overwrite or not spk_path.is_file())
        if not (need_tokens or need_speaker):
            counts["kept"] += 1
            continue
        samples = load_wav(corpus, u)
        if need_tokens:
            codes = tokenizer.encode(torch.from_numpy(samples)[None])[0].numpy().astype(np.int16)  # (8, T)
            _save(path, codes)
            counts["tokens"] += 1
        if need_speaker:
            _save(spk_path, encoder.embed(samples).astype(np.float32))  # (128,)
            counts["speakers"] += 1
    return counts


def _save(path: Path, array: np.ndarray) -> None:
    """Write atomically: an interrupted run never leaves a truncated file that a resume would keep."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        np.save(f, array)
    tmp.replace(path)
