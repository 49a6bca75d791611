"""The Kodama talker backend (``--talker kodama``) over a tiny weights folder: streaming, events, errors."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from anima.checkpoint import save_checkpoint
from anima.talker.data.phonemize import phonemize
from anima.talker.kodama import KodamaTTS, load_voices
from anima.talker.model.kodama_tts import KodamaTTS as TTSModel
from anima.talker.model.kodama_tts import KodamaTTSConfig
from anima.talker.model.tokenizer import CONFIGS, SpeechTokenizer, config_to_dict

pytestmark = pytest.mark.unit

TEXT = "Hello there, captain. The sea is calm tonight."


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """tokenizer/ + tts/ + voices.json with random tiny models (a bank of two voices)."""
    root = tmp_path_factory.mktemp("talker_weights")
    torch.manual_seed(0)
    symbols = tuple(["_"] + sorted({p for p in phonemize(TEXT + " Aye, sir.") if p != "_"}))
    tok_cfg = CONFIGS["tiny"]
    tok_cfg = type(tok_cfg)(**{**config_to_dict(tok_cfg), "teacher_dim": len(symbols)})
    tokenizer = SpeechTokenizer(tok_cfg)
    save_checkpoint(root / "tokenizer", tokenizer, {"tokenizer": config_to_dict(tok_cfg)}, 0)
    model = TTSModel(KodamaTTSConfig.preset("tiny", symbols=symbols, codebook_size=tok_cfg.codebook_size, max_frames=40))
    save_checkpoint(root / "tts", model, model.config_dict(), 0)
    rng = np.random.default_rng(0)
    voices = {
        name: {"speaker": rng.normal(size=128).tolist(), "prompt_phonemes": phonemize("Aye, sir."),
               "prompt_codes": rng.integers(0, tok_cfg.codebook_size, (8, 6)).tolist()}
        for name in ("piper:joe", "espeak:en-gb+m3")
    }
    (root / "voices.json").write_text(json.dumps({"default": "piper:joe", "voices": voices}))
    return root


def test_streams_80ms_chunks_with_a_final_end_event(weights) -> None:
    tts = KodamaTTS.load(weights, seed=1)
    chunks = list(tts.stream(TEXT, voice="en-gb+m3", emotion="happy"))
    assert chunks and all(c.samples.dtype == np.float32 for c in chunks)
    assert all(c.samples.size == 1920 for c in chunks)  # one token frame each
    assert [c.final for c in chunks].count(True) == 1 and chunks[-1].final
    offsets = [c.offset_s for c in chunks]
    assert offsets == sorted(offsets) and offsets[0] == 0.0
    assert chunks[-1].events[-1].kind == "end"
    words = [e for c in chunks for e in c.events if e.kind == "word"]
    assert [w.text for w in words] == TEXT.split()  # every word is announced once, in order
    assert all(np.isfinite(c.samples).all() and np.abs(c.samples).max() <= 1.0 for c in chunks)


def test_same_seed_same_audio_and_voices_differ(weights) -> None:
    a = KodamaTTS.load(weights, seed=3).synthesize("Aye, sir.", voice="piper:joe")
    b = KodamaTTS.load(weights, seed=3).synthesize("Aye, sir.", voice="piper:joe")
    np.testing.assert_array_equal(a.samples, b.samples)
    tts = KodamaTTS.load(weights)
    assert tts.resolve_voice("en-gb+m3").name == "espeak:en-gb+m3"
    assert tts.resolve_voice("no-such-voice").name == "piper:joe"  # a character's voice the bank lacks: default


def test_cancel_stops_mid_utterance(weights) -> None:
    tts = KodamaTTS.load(weights)
    cancel = threading.Event()
    got = []
    for chunk in tts.stream(TEXT, cancel=cancel):
        got.append(chunk)
        if len(got) == 2:
            cancel.set()
    assert len(got) == 2 and not any(c.final for c in got)


@pytest.mark.parametrize("text, emotion, message", [
    ("", None, "empty text"),
    ("   ", None, "empty text"),
    ("word " * 1000, None, "at most"),
    ("Hello.", "furious", "unknown emotion"),
])
def test_bad_input_is_refused_before_any_audio(weights, text, emotion, message) -> None:
    with pytest.raises(ValueError, match=message):
        KodamaTTS.load(weights).stream(text, emotion=emotion)


def test_non_ascii_text_is_spoken(weights) -> None:
    chunk = KodamaTTS.load(weights).synthesize("Café Ångström, naïve façade.")
    assert chunk.samples.size > 0 and chunk.final


def test_missing_or_broken_weights_say_what_is_wrong(tmp_path, weights) -> None:
    with pytest.raises(FileNotFoundError, match="no talker weights"):
        KodamaTTS.load(tmp_path)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tts").mkdir()
    with pytest.raises(FileNotFoundError, match="voices.json"):
        KodamaTTS.load(tmp_path)
    (tmp_path / "voices.json").write_text('{"default": "x", "voices": {}}')
    with pytest.raises(ValueError, match="default voice"):
        load_voices(tmp_path)
