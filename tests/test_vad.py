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
