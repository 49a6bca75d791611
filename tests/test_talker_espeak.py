"""Tests for the espeak-ng Talker (real libespeak-ng through ctypes)."""

from __future__ import annotations

import ctypes
import itertools
import re
import threading

import numpy as np
import pytest

from anima.core.audio import rms_db
from anima.core.frames import SpeechEvent
from anima.talker import espeak
from anima.talker.base import CHUNK_SAMPLES, TTS, SpeechChunk
from anima.talker.espeak import EspeakTTS

pytestmark = pytest.mark.integration
needs_espeak = pytest.mark.skipif(not EspeakTTS.is_available(), reason="libespeak-ng not installed")

SR = 24000
TEXT = "The quick brown fox jumps over the lazy dog. Then it sleeps."


@pytest.fixture(scope="module")
def tts() -> EspeakTTS:
    return EspeakTTS()


@pytest.fixture(scope="module")
def chunks(tts: EspeakTTS) -> list[SpeechChunk]:
    return list(tts.stream(TEXT))


def _events(chunks: list[SpeechChunk]) -> list[SpeechEvent]:
    return [e for c in chunks for e in c.events]


def _audio(chunks: list[SpeechChunk]) -> np.ndarray:
    return np.concatenate([c.samples for c in chunks])


def _centroid_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float((spec * np.fft.rfftfreq(x.size, 1.0 / SR)).sum() / spec.sum())


@needs_espeak
def test_protocol_rate_and_audio(tts: EspeakTTS, chunks: list[SpeechChunk]) -> None:
    protocol: TTS = tts  # structural: EspeakTTS satisfies the Talker protocol
    assert callable(protocol.stream)
    assert tts.sample_rate == SR
    audio = _audio(chunks)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 1.5 < audio.size / SR < 10.0
    assert rms_db(audio) > -40.0
    assert np.abs(audio).max() <= 1.0


@needs_espeak
def test_chunks_contiguous_and_sized(chunks: list[SpeechChunk]) -> None:
    offset = 0
    for i, c in enumerate(chunks):
        assert c.offset_s == pytest.approx(offset / SR, abs=1e-9)
        assert c.final == (i == len(chunks) - 1)
        if c.final:
            assert 0 < c.samples.size <= CHUNK_SAMPLES
        else:
            assert c.samples.size == CHUNK_SAMPLES
        offset += c.samples.size


@needs_espeak
def test_event_times_monotonic_and_inside_their_chunk(chunks: list[SpeechChunk]) -> None:
    times = [e.time_s for e in _events(chunks)]
    assert times == sorted(times)
    for c in chunks:
        end = c.offset_s + c.samples.size / SR
        for e in c.events:
            if e.kind != "end":
                assert c.offset_s <= e.time_s < end, (e, c.offset_s, end)


@needs_espeak
def test_end_event_at_audio_end(chunks: list[SpeechChunk]) -> None:
    duration = _audio(chunks).size / SR
    events = _events(chunks)
    assert [e.kind for e in events].count("end") == 1
    assert events[-1].kind == "end"
    assert "end" in [e.kind for e in chunks[-1].events]
    assert abs(events[-1].time_s - duration) < 0.05
    assert abs(max(e.time_s for e in events if e.kind != "end") - duration) < 0.05


@needs_espeak
def test_word_events_reproduce_input_words(chunks: list[SpeechChunk]) -> None:
    words = [e for e in _events(chunks) if e.kind == "word"]
    assert [w.text for w in words] == re.findall(r"[\w']+", TEXT)
    for w in words:
        assert TEXT[w.char_start : w.char_start + w.char_len] == w.text
    assert [e.kind for e in _events(chunks)].count("sentence") == 2


@needs_espeak
def test_word_events_cover_merged_and_odd_words(tts: EspeakTTS) -> None:
    # espeak merges "of the", reports "42" twice and "don't" as "don": one event per input word anyway.
    text = "A cup of the tea, 42 cats, and don't stop."
    words = [e.text for e in tts.synthesize(text).events if e.kind == "word"]
    assert words == ["A", "cup", "of", "the", "tea", "42", "cats", "and", "don't", "stop"]


@needs_espeak
def test_phoneme_events_include_bilabials(tts: EspeakTTS) -> None:
    phonemes = [e.text for e in tts.synthesize("mama buys paper").events if e.kind == "phoneme"]
    assert phonemes
    assert all(p and len(p.encode()) <= 8 for p in phonemes)
    assert {"m", "b", "p"} <= set(phonemes)


@needs_espeak
def test_first_chunk_arrives_before_synthesis_finishes(tts: EspeakTTS) -> None:
    text = " ".join(["Streaming speech should start playing long before the whole paragraph is ready."] * 8)
    assert len(text) > 600
    first, still_running, n = True, False, 0
    for chunk in tts.stream(text):
        n += chunk.samples.size
        if first:
            first = False
            still_running = espeak._LOCK.locked()  # the synthesis thread holds the engine until done
    assert still_running  # how soon the first chunk comes is measured in benchmarks/stage_costs.py
    assert n / SR > 30.0  # ~40 s of speech: espeak must block on the bounded queue before finishing


@needs_espeak
def test_cancel_stops_early(tts: EspeakTTS) -> None:
    text = "This sentence goes on and on. " * 40
    cancel = threading.Event()
    got = []
    for chunk in tts.stream(text, cancel=cancel):
        got.append(chunk)
        if len(got) == 3:
            cancel.set()
    assert len(got) == 3
    assert not any(c.final for c in got)
    assert not espeak._LOCK.locked()  # the synthesis was aborted, the engine is free again
    assert tts.synthesize("Still works.").samples.size > 0


@needs_espeak
def test_close_aborts_long_text(tts: EspeakTTS) -> None:
    text = ("Long input is streamed rather than synthesised up front. " * 400)[:20000]
    stream = tts.stream(text)
    first = list(itertools.islice(stream, 5))
    stream.close()
    assert len(first) == 5 and all(c.samples.size == CHUNK_SAMPLES for c in first)
    assert not espeak._LOCK.locked()


@needs_espeak
def test_voices_differ(tts: EspeakTTS) -> None:
    text = "Hello there, my friend. How are you doing today?"
    male = tts.synthesize(text, voice="en-us").samples
    female = tts.synthesize(text, voice="en-us+f3").samples
    assert _centroid_hz(female) > 1.08 * _centroid_hz(male)
    for voice in ("en-gb", "en-gb+m3"):
        assert rms_db(tts.synthesize("Good morning.", voice=voice).samples) > -40.0


@needs_espeak
def test_rate_parameter(tts: EspeakTTS) -> None:
    slow = EspeakTTS(rate_wpm=100).synthesize(TEXT).samples.size
    fast = EspeakTTS(rate_wpm=300).synthesize(TEXT).samples.size
    assert fast < 0.6 * slow


@needs_espeak
@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00\x07"])
def test_empty_text_rejected(tts: EspeakTTS, text: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        tts.stream(text)


@needs_espeak
def test_non_ascii_text(tts: EspeakTTS) -> None:
    text = "Café — naïve 日本"
    out = tts.synthesize(text)
    assert rms_db(out.samples) > -40.0
    words = [e for e in out.events if e.kind == "word"]
    assert [w.text for w in words][:3] == ["Café", "naïve", "日本"]
    for w in words:
        assert text[w.char_start : w.char_start + w.char_len] == w.text


@needs_espeak
def test_control_characters_stripped(tts: EspeakTTS) -> None:
    text = "hello\x00 big\x07\nworld"
    words = [e for e in tts.synthesize(text).events if e.kind == "word"]
    assert [w.text for w in words] == ["hello", "big", "world"]
    assert [w.char_start for w in words] == [0, 7, 12]  # positions index the caller's text


@needs_espeak
def test_text_is_literal_not_ssml(tts: EspeakTTS) -> None:
    words = [e.text for e in tts.synthesize("<speak>one</speak> [[h@l'oU]]").events if e.kind == "word"]
    assert "one" in " ".join(words)


@needs_espeak
@pytest.mark.parametrize("voice", ["xx-nowhere", "en-us+nosuchvariant"])
def test_unknown_voice(tts: EspeakTTS, voice: str) -> None:
    with pytest.raises(ValueError, match=re.escape(voice)) as info:
        tts.stream("hello", voice=voice)
    assert "espeak-ng --voices" in str(info.value)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate_wpm"):
        EspeakTTS(rate_wpm=10)
    with pytest.raises(ValueError, match="pitch"):
        EspeakTTS(pitch=200)


def test_missing_library_tells_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lib(*args: object, **kwargs: object) -> None:
        raise OSError("libespeak-ng.so.1: cannot open shared object file")

    monkeypatch.setattr(espeak, "_ENGINE", None)
    monkeypatch.setattr(ctypes, "CDLL", no_lib)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        EspeakTTS().stream("hello")
    assert not EspeakTTS.is_available()
