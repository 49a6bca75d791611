"""Log-mel features at 25 fps: streaming equals offline, causality, a slow reference, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from anima.face.audio_features import (
    AudioFeatureConfig,
    LogMelStream,
    _mel_basis,
    fit_tick,
    log_mel,
    tick_energy_db,
)

pytestmark = pytest.mark.unit

CFG = AudioFeatureConfig()
FLOOR = (CFG.floor_db + CFG.offset_db) / CFG.scale_db


def speechy(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 24000)) / 24000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    x = env * (0.3 * np.sin(2 * np.pi * 180 * t) + 0.1 * np.sin(2 * np.pi * 1200 * t)) + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def test_shape_and_rate():
    x = speechy(2.0)
    f = log_mel(x)
    assert f.shape == (50, CFG.dim) and f.dtype == np.float32
    assert log_mel(x[:961]).shape == (2, CFG.dim)  # a started tick counts
    assert log_mel(np.zeros(0)).shape == (0, CFG.dim)


def test_streaming_equals_offline():
    x = speechy(3.0, seed=1)
    stream, rows, i = LogMelStream(), [], 0
    rng = np.random.default_rng(2)
    while i < x.size:
        n = int(rng.integers(1, 2500))
        rows.append(stream.process(x[i:i + n]))
        i += n
    rows.append(stream.flush())
    np.testing.assert_allclose(np.concatenate(rows), log_mel(x), atol=1e-5)


def test_causal_row_depends_only_on_its_past():
    x = speechy(2.0)
    y = x.copy()
    y[960 * 20:] = np.random.default_rng(3).standard_normal(y.size - 960 * 20).astype(np.float32)
    a, b = log_mel(x), log_mel(y)
    np.testing.assert_array_equal(a[:20], b[:20])
    assert not np.allclose(a[20], b[20])


def test_against_slow_reference():
    """One row computed with an explicit DFT and the window placed by hand."""
    x = speechy(1.0, seed=4)
    f = 7
    row = []
    for k in range(CFG.subframes):
        end = f * CFG.tick + (k + 1) * CFG.hop
        frame = x[end - CFG.n_fft:end].astype(np.float64)
        w = np.hanning(CFG.n_fft + 1)[:-1]
        w = w / np.sqrt(np.mean(w * w))
        n = np.arange(CFG.n_fft)
        bins = np.arange(CFG.n_fft // 2 + 1)
        dft = np.exp(-2j * np.pi * np.outer(bins, n) / CFG.n_fft) @ (frame * w)
        power = np.abs(dft) ** 2 / (CFG.n_fft**2 / 2)
        mel = power @ _mel_basis(CFG).astype(np.float64)
        db = 10 * np.log10(np.maximum(mel, 10 ** (CFG.floor_db / 10)))
        row.append((db + CFG.offset_db) / CFG.scale_db)
    np.testing.assert_allclose(log_mel(x)[f], np.concatenate(row), atol=2e-3)


def test_silence_nan_and_clipping():
    assert np.all(log_mel(np.zeros(4800)) == FLOOR)
    x = speechy(1.0)
    bad = x.copy()
    bad[100:5000] = np.nan
    bad[6000] = np.inf
    f = log_mel(bad)
    assert np.isfinite(f).all()
    loud = log_mel(np.sign(x) * 10.0)  # far beyond full scale: clipped to a square wave
    assert np.isfinite(loud).all() and loud.max() < 4.0


def test_other_sample_rate_is_resampled():
    x16 = speechy(6.0)[::3][:32000]  # 2 s of 16 kHz samples
    f = log_mel(x16, sample_rate=16000)
    assert f.shape == (50, CFG.dim)
    with pytest.raises(ValueError, match="sample_rate"):
        log_mel(x16, sample_rate=0)


def test_fit_tick_handles_any_block():
    assert fit_tick(None, 960).shape == (960,)
    assert np.all(fit_tick(np.zeros(0), 960) == 0)
    assert fit_tick(np.ones(640, np.float32), 960).shape == (960,)  # a 16 kHz tick
    out = fit_tick(np.array([np.nan, 2.0, -3.0] * 320), 960)
    assert np.isfinite(out).all() and out.max() <= 1.0 and out.min() >= -1.0


def test_tick_energy():
    e = tick_energy_db(np.concatenate([np.zeros(960), 0.1 * np.ones(960)]))
    assert e[0] == pytest.approx(-100.0) and e[1] == pytest.approx(-20.0, abs=0.01)


def test_config_validation():
    with pytest.raises(ValueError):
        AudioFeatureConfig(sample_rate=24000, fps=7)
