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


def _espeak_corpus(root, rows):
    """A corpus of espeak-ng clips: rows of (id, espeak voice, voice label, split, text), timings from its events."""
    import soundfile as sf

    from anima.talker.data.alignment import phonemes_from_events
    from anima.talker.data.manifest import SAMPLE_RATE, Utterance, append_utterances
    from anima.talker.espeak import EspeakTTS

    (root / "wav").mkdir(parents=True)
    records = []
    for n, (uid, espeak_voice, label, split, text) in enumerate(rows):
        chunk = EspeakTTS(voice=espeak_voice).synthesize(text)
        sf.write(root / "wav" / f"{uid}.wav", chunk.samples, SAMPLE_RATE, subtype="PCM_16")
        duration = chunk.samples.size / SAMPLE_RATE
        records.append(Utterance(uid, text, label, "neutral", split, n, duration,
                                 tuple(phonemes_from_events(chunk.events, duration))))
    append_utterances(root, records)
    return root


# -- the CLI: reconstruct, say, tokenize + export -------------------------------------------------------

def _run(argv: list[str]) -> int:
    from anima.cli import main

    return main(argv)


def test_reconstruct_takes_any_sample_rate_and_keeps_the_length(weights, tmp_path) -> None:
    import soundfile as sf

    t = np.arange(int(0.7 * 44100)) / 44100
    sf.write(tmp_path / "in.wav", np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * 2, 1), 44100)  # stereo 44.1 kHz
    assert _run(["talker", "reconstruct", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav"),
                 "--tokenizer", str(weights / "tokenizer")]) == 0
    out, rate = sf.read(tmp_path / "out.wav")
    assert rate == 24000 and out.ndim == 1 and abs(out.size - 0.7 * 24000) <= 1  # mono, same duration
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    assert _run(["talker", "reconstruct", str(tmp_path / "bad.wav"), "-o", str(tmp_path / "x.wav"),
                 "--tokenizer", str(weights / "tokenizer")]) == 2


def test_say_writes_speech_and_refuses_unknown_voice_or_emotion(weights, tmp_path, capsys) -> None:
    import soundfile as sf

    out = tmp_path / "say.wav"
    assert _run(["talker", "say", "Aye, sir.", "-o", str(out), "--weights", str(weights), "--emotion", "sad"]) == 0
    samples, rate = sf.read(out)
    assert rate == 24000 and samples.size > 0
    assert _run(["talker", "say", "Aye.", "-o", str(out), "--weights", str(weights), "--voice", "nobody"]) == 2
    assert "unknown voice 'nobody'" in capsys.readouterr().err
    assert _run(["talker", "say", "Aye.", "-o", str(out), "--weights", str(weights), "--emotion", "furious"]) == 2
    # Cloning from a recording: the transcript is given (the tiny weights have no phoneme judge).
    sf.write(tmp_path / "prompt.wav", samples[: 24000], 24000)
    assert _run(["talker", "say", "Aye, sir.", "-o", str(out), "--weights", str(weights),
                 "--prompt", str(tmp_path / "prompt.wav"), "--prompt-text", "Aye, sir."]) == 0
    assert _run(["talker", "say", "Aye, sir.", "-o", str(out), "--weights", str(weights),
                 "--prompt", str(tmp_path / "prompt.wav")]) == 2
    assert "transcript" in capsys.readouterr().err


def test_tokenize_then_export_builds_a_weights_folder_the_talker_loads(weights, tmp_path) -> None:

    corpus = _espeak_corpus(tmp_path / "corpus", [
        ("00000-en-us", "en-us", "espeak:en-us", "train", "Aye, sir."),
        ("00001-en-us", "en-us", "espeak:en-us", "train", "The sea is calm."),
        ("00002-en-gb", "en-gb", "espeak:en-gb", "train", "Hello there.")])
    assert _run(["talker", "tokenize", "--tokenizer", str(weights / "tokenizer"), "--corpus", str(corpus), "--quiet"]) == 0
    codes = np.load(corpus / "tokens" / "00000-en-us.npy")
    assert codes.dtype == np.int16 and codes.shape[0] == 8
    out = tmp_path / "exported"
    assert _run(["talker", "export", "--tokenizer", str(weights / "tokenizer"), "--tts", str(weights / "tts"),
                 "--corpus", str(corpus), "--out", str(out)]) == 0
    voices, default = load_voices(out)
    assert set(voices) == {"espeak:en-us", "espeak:en-gb"} and default in voices
    tts = KodamaTTS.load(out)
    assert tts.synthesize("Aye, sir.", voice="en-gb").samples.size > 0
    # Tokens of another tokenizer are refused rather than mixed.
    from anima.talker.model.tokenizer import load_tokenizer

    tok = load_tokenizer(weights / "tokenizer")
    with torch.no_grad():
        tok.head.weight.add_(0.1)  # the decoder only: the codes are the same, the tokens are kept
    save_checkpoint(tmp_path / "decoder_tuned", tok, {"tokenizer": config_to_dict(tok.config)}, 0)
    assert _run(["talker", "tokenize", "--tokenizer", str(tmp_path / "decoder_tuned"), "--corpus", str(corpus), "--quiet"]) == 0
    with torch.no_grad():
        tok.enc_in.weight.add_(0.1)  # the encoder: other codes
    save_checkpoint(tmp_path / "other_tok", tok, {"tokenizer": config_to_dict(tok.config)}, 0)
    assert _run(["talker", "tokenize", "--tokenizer", str(tmp_path / "other_tok"), "--corpus", str(corpus), "--quiet"]) == 2


def test_train_and_eval_pass_their_options_through(capsys) -> None:
    for argv, expected in ((["talker", "eval", "--help"], "--max-clips"),
                           (["talker", "train", "tts", "--help"], "--prompt-p")):
        with pytest.raises(SystemExit) as done:
            _run(argv)
        assert done.value.code == 0 and expected in capsys.readouterr().out
    assert _run(["talker", "eval", "--corpus", "/nonexistent", "--codecs", "identity"]) == 2
    assert "not a speech corpus" in capsys.readouterr().err


def test_spectrogram_png_has_one_row_per_file(tmp_path) -> None:
    import soundfile as sf
    from PIL import Image

    from anima.talker.spectrogram import N_MELS, log_mel

    t = np.arange(24000) / 24000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    spec = log_mel(tone)
    assert spec.shape == (N_MELS, 101) and spec.max() == 0.0
    assert spec[:, 50].argmax() == np.argmax(spec.mean(1))  # one band holds the 1 kHz tone throughout
    sf.write(tmp_path / "a.wav", tone, 24000)
    sf.write(tmp_path / "b.wav", tone[:12000], 16000)  # another rate and length: resampled on the way in
    assert _run(["talker", "spectrogram", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "-o", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").height == 2 * 2 * N_MELS
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros(0))


def test_eval_tts_scores_intelligibility_cloning_and_emotion(weights, tmp_path) -> None:
    """The TTS scorer end to end on tiny random models (the numbers are meaningless; the plumbing is not)."""

    from anima.talker.model.phoneme_judge import PhonemeJudge, PhonemeJudgeConfig
    from anima.talker.model.speaker_encoder import SpeakerEncoder, SpeakerEncoderConfig
    from anima.talker.training.evaluate_tts import evaluate_tts

    corpus = _espeak_corpus(tmp_path / "corpus", [
        ("00000", "en-us", "piper:joe", "test", "Aye, sir."), ("00001", "en-us", "piper:joe", "test", "The sea is calm."),
        ("00002", "en-us", "espeak:en-us-nyc", "heldout", "Hello there."),
        ("00003", "en-us", "espeak:en-us-nyc", "heldout", "Aye, sir.")])
    tts = KodamaTTS.load(weights, seed=0)
    judge = PhonemeJudge(PhonemeJudgeConfig(inventory=tts.model.config.symbols, d_model=32, n_layers=1, n_heads=2,
                                            conv_kernel=5, ff_mult=2)).eval()
    speaker = SpeakerEncoder(SpeakerEncoderConfig(channels=32, n_blocks=2, dim=128)).eval()
    result = evaluate_tts(tts, corpus, judge, speaker, voices=("piper:joe",), sentences=2, emotion_voice="piper:joe",
                          emotions=("sad",), progress=False)
    intel = result["intelligibility"]["piper:joe"]
    assert intel["sentences"] == 2 and intel["per_generated"] >= 0 and intel["per_recordings"] >= 0
    assert intel["per_recordings_through_codec"] >= 0
    clone = result["cloning"]["espeak:en-us-nyc"]
    assert clone["sentences"] == 1 and -1 <= clone["similarity_to_voice"] <= 1
    assert not any(name.startswith("clone:") for name in tts.voices)  # the clone leaves the bank afterwards
    emotions = result["emotion"]["per_emotion"]
    assert set(emotions) == {"neutral", "sad"} and emotions["neutral"]["rate_change"] == 0.0
    assert emotions["sad"]["intended_pitch"] == -1 and emotions["sad"]["intended_rate"] == -1  # the corpus table
