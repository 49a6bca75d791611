"""The energy/spectrum voice activity detector on real espeak-ng speech."""

import numpy as np
import pytest

from anima.core.frames import NS_PER_S
from anima.core.vad import EnergyVAD
from anima.talker.espeak import EspeakTTS

pytestmark = pytest.mark.unit


def feed(vad, signal, chunk=960):
    events = []
    for start in range(0, signal.size, chunk):
        events += vad.process(signal[start : start + chunk], start * NS_PER_S // 24000)
    return events


def test_onset_and_end_of_real_speech():
    speech = EspeakTTS().synthesize("Wait, what was that noise?", voice="en-us+f3").samples
    rng = np.random.default_rng(0)
    lead, tail = 24000, 24000  # 1 s of room noise either side
    signal = (rng.standard_normal(lead + speech.size + tail) * 7e-4).astype(np.float32)
    signal[lead : lead + speech.size] += speech
    voiced = np.flatnonzero(np.abs(speech) > 0.01)
    true_on = (lead + voiced[0]) / 24000
    true_off = (lead + voiced[-1]) / 24000
    events = feed(EnergyVAD(), signal)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert abs(events[0].pts_ns / NS_PER_S - true_on) < 0.04
    assert abs(events[-1].pts_ns / NS_PER_S - true_off) < 0.06
    # The comma pause must not split the utterance into turns at this hangover.
    assert kinds.count("start") <= 2


def test_noise_and_silence_are_not_speech():
    rng = np.random.default_rng(1)
    assert feed(EnergyVAD(), np.zeros(48000, np.float32)) == []
    assert feed(EnergyVAD(), (rng.standard_normal(48000) * 1e-3).astype(np.float32)) == []
    # Loud hiss above 4 kHz (fan noise) is outside the speech band.
    from scipy.signal import butter, sosfilt

    hiss = sosfilt(butter(8, 6000, "highpass", fs=24000, output="sos"), rng.standard_normal(48000) * 0.1).astype(np.float32)
    assert feed(EnergyVAD(), hiss) == []


def test_nan_audio_is_treated_as_silence():
    x = np.full(9600, np.nan, np.float32)
    assert feed(EnergyVAD(), x) == []


# ---- SileroVAD and make_vad ----------------------------------------------------------------------

from anima.core.vad import make_vad  # noqa: E402


def _speech_in_noise(text: str, voice: str, noise_rms: float, seed: int) -> tuple[np.ndarray, float, float]:
    speech = EspeakTTS().synthesize(text, voice=voice).samples
    rng = np.random.default_rng(seed)
    lead, tail = 24000, 24000
    signal = (rng.standard_normal(lead + speech.size + tail) * noise_rms).astype(np.float32)
    signal[lead : lead + speech.size] += speech
    voiced = np.flatnonzero(np.abs(speech) > 0.01)
    return signal, (lead + voiced[0]) / 24000, (lead + voiced[-1]) / 24000


def test_silero_onset_and_end_of_real_speech_in_noise():
    signal, true_on, true_off = _speech_in_noise("Where are we going, Captain?", "en-gb+m3", 3e-3, 2)
    vad = make_vad("silero")
    events = feed(vad, signal)
    kinds = [e.kind for e in events]
    assert kinds and kinds[0] == "start" and kinds[-1] == "end", kinds
    assert abs(events[0].pts_ns / NS_PER_S - true_on) < 0.08
    assert abs(events[-1].pts_ns / NS_PER_S - true_off) < 0.15
    assert kinds.count("start") <= 2
    assert not vad.speaking


def test_silero_silence_and_noise_are_not_speech():
    rng = np.random.default_rng(3)
    assert feed(make_vad("silero"), np.zeros(48000, np.float32)) == []
    assert feed(make_vad("silero"), (rng.standard_normal(48000) * 1e-2).astype(np.float32)) == []


def test_silero_interleaved_streams_are_independent():
    a, _, _ = _speech_in_noise("Stop. Tell me about the library please.", "en-us+f3", 1e-3, 4)
    b = np.random.default_rng(5).standard_normal(a.size).astype(np.float32) * 1e-3  # silence-ish
    b[30000:60000] += a[24000:54000]  # speech at another time
    alone_a, alone_b = feed(make_vad("silero"), a), feed(make_vad("silero"), b)
    va, vb, both_a, both_b = make_vad("silero"), make_vad("silero"), [], []
    for i in range(0, a.size, 960):
        both_a += va.process(a[i : i + 960], i * NS_PER_S // 24000)
        both_b += vb.process(b[i : i + 960], i * NS_PER_S // 24000)
    assert alone_a and alone_b and alone_a != alone_b
    assert both_a == alone_a and both_b == alone_b


def test_silero_chunking_does_not_change_events():
    signal, _, _ = _speech_in_noise("Can we go up to the surface now?", "en-us", 2e-3, 6)
    assert feed(make_vad("silero"), signal, chunk=960) == feed(make_vad("silero"), signal, chunk=317)


def test_silero_rejects_bad_input():
    vad = make_vad("silero")
    with pytest.raises(ValueError, match="1-D"):
        vad.process(np.zeros((960, 2), np.float32), 0)
    with pytest.raises(ValueError, match="dtype"):
        vad.process(np.zeros(960, np.int16), 0)
    with pytest.raises(ValueError, match="NaN"):
        vad.process(np.full(960, np.nan, np.float32), 0)
    with pytest.raises(ValueError, match="unknown VAD kind"):
        make_vad("webrtc")


def test_make_vad_default_and_energy_kind():
    from anima.core.vad import DEFAULT_VAD, VAD_KINDS, EnergyVAD

    assert DEFAULT_VAD in VAD_KINDS
    assert isinstance(make_vad("energy"), EnergyVAD)
    assert hasattr(make_vad(), "speaking") and not make_vad().speaking


def test_silero_floor_ignores_far_off_speech():
    from anima.core.vad import SileroVAD

    speech = EspeakTTS().synthesize("Tell me about the library please.", voice="en-us").samples
    far = np.concatenate([np.zeros(24000, np.float32), speech * (10 ** (-62 / 20) / np.sqrt(np.mean(speech**2))), np.zeros(24000, np.float32)])
    assert feed(make_vad("silero"), far) == []  # below the -50 dBFS floor
    assert [e.kind for e in feed(SileroVAD(floor_db=None, gate_db=None), far)][:1] == ["start"]  # the model alone hears it


def test_silero_follows_a_gap_in_media_time():
    signal, true_on, _ = _speech_in_noise("Where are we going, Captain?", "en-us", 1e-3, 7)
    vad, gap_ns, events = make_vad("silero"), 5 * NS_PER_S, []
    silence = np.zeros(24000, np.float32)
    for start in range(0, silence.size, 960):  # 1 s of silence, then a 5 s hole in media time
        events += vad.process(silence[start : start + 960], start * NS_PER_S // 24000)
    events += feed_at(vad, signal, NS_PER_S + gap_ns)
    assert events and events[0].kind == "start"
    assert abs((events[0].pts_ns - NS_PER_S - gap_ns) / NS_PER_S - true_on) < 0.08


def feed_at(vad, signal, pts0_ns, chunk=960):
    events = []
    for start in range(0, signal.size, chunk):
        events += vad.process(signal[start : start + chunk], pts0_ns + start * NS_PER_S // 24000)
    return events
