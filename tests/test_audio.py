"""Tests for anima.core.audio: streaming resampler, WAV loading, loudness helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from anima.core.audio import AudioFileError, StreamingResampler, load_wav, resample, rms, rms_db

pytestmark = pytest.mark.unit

RATE_PAIRS = [(22050, 24000), (16000, 24000), (48000, 24000), (44100, 24000), (24000, 16000), (8000, 24000)]


def _stream(rs: StreamingResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Feed ``x`` cut at the given chunk sizes (cycled), then flush."""
    out, i, j = [], 0, 0
    while i < x.size:
        n = sizes[j % len(sizes)]
        out.append(rs.process(x[i : i + n]))
        i, j = i + n, j + 1
    out.append(rs.flush())
    return np.concatenate(out)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / rate)[np.argmax(spec)])


# ---- StreamingResampler -------------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS)
def test_chunked_equals_whole_random_chunks(src: int, dst: int) -> None:
    rng = np.random.default_rng(src + dst)
    x = (0.3 * rng.standard_normal(7919)).astype(np.float32)
    whole = resample(x, src, dst)
    sizes = [int(s) for s in rng.integers(0, 700, size=40)]  # includes empty chunks
    chunked = _stream(StreamingResampler(src, dst), x, sizes)
    assert chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole, atol=1e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=3000),
    sizes=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=20),
    pair=st.sampled_from(RATE_PAIRS),
)
def test_chunked_equals_whole_property(n: int, sizes: list[int], pair: tuple[int, int]) -> None:
    src, dst = pair
    x = np.sin(np.arange(n) * 0.37).astype(np.float32)
    rs = StreamingResampler(src, dst)
    whole = np.concatenate([rs.process(x), rs.flush()])
    chunked = _stream(StreamingResampler(src, dst), x, sizes)
    np.testing.assert_allclose(chunked, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("src", "dst"), [*RATE_PAIRS, (24000, 24000), (44101, 24000)])
@pytest.mark.parametrize("n", [0, 1, 5, 999, 22050])
def test_output_length(src: int, dst: int, n: int) -> None:
    y = resample(np.zeros(n, dtype=np.float32), src, dst)
    assert y.dtype == np.float32
    assert y.size == math.ceil(n * dst / src)
    assert abs(y.size - round(n * dst / src)) <= 1


def test_sine_keeps_frequency_and_phase_22050_to_24000() -> None:
    src, dst = 22050, 24000
    t = np.arange(src) / src  # 1 s
    y = resample(np.sin(2 * np.pi * 1000.0 * t).astype(np.float32), src, dst)
    assert _peak_hz(y, dst) == pytest.approx(1000.0, abs=1.0)
    # Zero-phase: output sample k is the input signal at time k / dst (no delay), away from the edges.
    ref = np.sin(2 * np.pi * 1000.0 * np.arange(y.size) / dst)
    assert np.abs(y - ref)[200:-200].max() < 1e-3


def test_anti_aliasing_rejects_above_nyquist() -> None:
    src, dst = 44100, 24000
    t = np.arange(src) / src
    y = resample(np.sin(2 * np.pi * 15000.0 * t), src, dst)  # 15 kHz > 12 kHz output Nyquist
    assert rms_db(y[500:-500]) < -60.0


def test_matches_scipy_resample_poly_in_band() -> None:
    from scipy.signal import resample_poly

    rng = np.random.default_rng(0)
    x = rng.standard_normal(22050)
    x = np.convolve(x, np.ones(8) / 8, mode="same")  # mostly below the cutoff
    ours = resample(x, 22050, 24000)
    ref = resample_poly(x, 160, 147)
    assert ours.shape == ref.shape
    assert np.corrcoef(ours[100:-100], ref[100:-100])[0, 1] > 0.999


def test_flush_resets_for_reuse_and_identity_rate() -> None:
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    rs = StreamingResampler(16000, 24000)
    first = np.concatenate([rs.process(x), rs.flush()])
    second = np.concatenate([rs.process(x), rs.flush()])
    np.testing.assert_array_equal(first, second)
    same = StreamingResampler(24000, 24000)
    np.testing.assert_array_equal(np.concatenate([same.process(x), same.flush()]), x)


def test_resampler_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        StreamingResampler(16000, 24000).process(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="positive"):
        StreamingResampler(0, 24000)


# ---- load_wav -----------------------------------------------------------------------------------


def test_load_wav_resamples_16k(tmp_path) -> None:
    path = tmp_path / "tone16k.wav"
    t = np.arange(16000) / 16000
    sf.write(path, 0.5 * np.sin(2 * np.pi * 440.0 * t), 16000, subtype="PCM_16")
    y = load_wav(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.size == 24000
    assert _peak_hz(y, 24000) == pytest.approx(440.0, abs=1.0)
    assert np.abs(y).max() <= 1.0
    assert rms(y[100:-100]) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_load_wav_downmixes_stereo(tmp_path) -> None:
    path = tmp_path / "stereo.wav"
    t = np.arange(24000) / 24000
    left = 0.8 * np.sin(2 * np.pi * 300.0 * t)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)  # (N, 2)
    sf.write(path, stereo, 24000, subtype="FLOAT")
    y = load_wav(path)
    assert y.shape == (24000,)
    np.testing.assert_allclose(y, 0.5 * left, atol=1e-6)


def test_load_wav_target_rate(tmp_path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(24000), 24000)
    assert load_wav(path, target_rate=16000).size == 16000


def test_load_wav_missing_file(tmp_path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioFileError, match="does not exist") as info:
        load_wav(path)
    assert str(path) in str(info.value)
    with pytest.raises(AudioFileError, match="directory"):
        load_wav(tmp_path)


def test_load_wav_not_audio(tmp_path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not a wav file")
    with pytest.raises(AudioFileError, match="cannot read") as info:
        load_wav(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_load_wav_empty(tmp_path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0), 16000)
    with pytest.raises(AudioFileError, match="empty") as info:
        load_wav(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_load_wav_non_finite(tmp_path, bad: float) -> None:
    path = tmp_path / "bad.wav"
    x = np.zeros(100)
    x[50] = bad
    sf.write(path, x, 24000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="NaN or infinite") as info:
        load_wav(path)
    assert str(path) in str(info.value)


# ---- levels -------------------------------------------------------------------------------------


def test_rms_and_db() -> None:
    assert rms(np.zeros(100)) == 0.0
    assert rms(np.zeros(0)) == 0.0
    assert rms_db(np.zeros(100)) == -100.0
    assert rms_db(np.zeros(0)) == -100.0
    assert rms(np.ones(10)) == pytest.approx(1.0)
    assert rms_db(np.ones(10)) == pytest.approx(0.0)
    sine = np.sin(2 * np.pi * np.arange(24000) / 24)
    assert rms_db(sine) == pytest.approx(-3.0103, abs=0.01)
    assert rms_db(np.full(10, 1e-9)) == -100.0  # below the floor
