"""Assemble the shipped talker weights folder from training runs: what ``--talker kodama`` loads.

    OUT/tokenizer/   the speech tokenizer (bare weights: no discriminators, no optimizer)
    OUT/tts/         the Kodama TTS language model
    OUT/speaker/     the GE2E speaker encoder (voice cloning from a WAV: its speaker vector)
    OUT/judge/       the CTC phoneme judge (transcribes a cloning prompt given without its text)
    OUT/voices.json  the voice bank: per training voice, its mean speaker vector and a prompt utterance

Held-out voices never enter the bank: they are what cloning is evaluated on.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from anima.checkpoint import save_checkpoint
from anima.talker.data.manifest import read_manifest
from anima.talker.training.tokenize_corpus import SPEAKERS_DIR, TOKENS_DIR

PROMPT_SECONDS = 3.0  # the prompt utterance chosen per voice is the neutral one closest to this length
DEFAULT_VOICE = "piper:joe"


def _half(model):
    """A copy of the model in float16 (half the file; loading casts back to float32)."""
    import copy

    return copy.deepcopy(model).half()


def voice_bank(corpus: str | Path, symbols: tuple[str, ...], max_prompt_frames: int = 48) -> dict:
    """voices.json content from a tokenised corpus (train split of the training voices)."""
    from anima.talker.model.kodama_tts import normalize_phonemes

    corpus = Path(corpus)
    by_voice = defaultdict(list)
    for u in read_manifest(corpus, "train"):
        if (corpus / TOKENS_DIR / f"{u.id}.npy").is_file():
            by_voice[u.voice].append(u)
    if not by_voice:
        raise ValueError(f"{corpus}: no tokenised training utterances (run `anima talker tokenize` first)")
    known = set(symbols)
    voices = {}
    for voice, utts in sorted(by_voice.items()):
        vectors = [np.load(p) for u in utts if (p := corpus / SPEAKERS_DIR / f"{u.id}.npy").is_file()]
        speaker = np.mean(vectors, 0) if vectors else np.zeros(128, np.float32)
        if vectors:
            speaker = speaker / max(float(np.linalg.norm(speaker)), 1e-8)
        candidates = [u for u in utts if u.emotion == "neutral"] or utts
        prompt = min(candidates, key=lambda u: abs(u.duration_s - PROMPT_SECONDS))
        codes = np.load(corpus / TOKENS_DIR / f"{prompt.id}.npy")[:, :max_prompt_frames]
        phonemes = [p for p in normalize_phonemes([p[0] for p in prompt.phonemes]) if p in known]
        voices[voice] = {"speaker": [round(float(x), 6) for x in speaker], "prompt_text": prompt.text,
                         "prompt_id": prompt.id, "prompt_phonemes": phonemes, "prompt_codes": codes.astype(int).tolist()}
    default = DEFAULT_VOICE if DEFAULT_VOICE in voices else next(iter(voices))
    return {"default": default, "voices": voices}


def export_talker(out: str | Path, tokenizer_run: str | Path, tts_run: str | Path, corpus: str | Path,
                  speaker_run: str | Path | None = None, judge_run: str | Path | None = None, half: bool = True) -> dict:
    """Write the weights folder; returns {part: size in bytes}. Checks the parts fit together."""
    from anima.talker.model.kodama_tts import load_kodama_tts
    from anima.talker.model.tokenizer import config_to_dict, load_tokenizer

    out = Path(out)
    tokenizer = load_tokenizer(tokenizer_run)
    tts, meta = load_kodama_tts(tts_run)
    c, tc = tts.config, tokenizer.config
    if (c.n_codebooks, c.codebook_size) != (tc.num_codebooks, tc.codebook_size):
        raise ValueError(f"the TTS writes {c.n_codebooks} x {c.codebook_size} codes, the tokenizer reads "
                         f"{tc.num_codebooks} x {tc.codebook_size}")
    if tc.semantic and tc.teacher_dim and tc.teacher_dim != len(c.symbols):
        raise ValueError(f"the tokenizer's phoneme head has {tc.teacher_dim} classes, the TTS inventory "
                         f"{len(c.symbols)}: were they trained on the same corpus?")
    parts = {"tokenizer": (tokenizer, {"tokenizer": config_to_dict(tc)}), "tts": (tts, tts.config_dict())}
    if speaker_run is not None:
        from anima.talker.model.speaker_encoder import SpeakerEncoder

        enc = SpeakerEncoder.from_pretrained(speaker_run)
        parts["speaker"] = (enc, enc.checkpoint_config())
    if judge_run is not None:
        from anima.talker.model.phoneme_judge import PhonemeJudge

        judge = PhonemeJudge.from_pretrained(judge_run)
        parts["judge"] = (judge, judge.checkpoint_config())
    sizes = {}
    for name, (model, config) in parts.items():
        save_checkpoint(out / name, _half(model) if half else model, config, 0)
        sizes[name] = (out / name / "model.safetensors").stat().st_size
    (out / "voices.json").write_text(json.dumps(voice_bank(corpus, c.symbols), separators=(",", ":")))
    sizes["voices.json"] = (out / "voices.json").stat().st_size
    return sizes
