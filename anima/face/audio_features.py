"""Streaming log-mel features at the video rate (25 fps) from 24 kHz audio, numpy only.

Each 40 ms video tick (960 samples) gives one feature row: ``subframes`` (2) log-mel frames of
``n_mels`` (40) bands, hop 20 ms, Hann window of 1024 samples (43 ms) that *ends* at the end of its
hop. The features are causal: row ``f`` depends only on audio up to the end of tick ``f``, so a live
face can use the tick's audio in the same tick. Offline (``log_mel``) and streaming
(``LogMelStream``) give the same numbers.

Bad input is made harmless rather than raised: non-finite samples count as silence and samples
beyond full scale are clipped to [-1, 1] (clipping a clipped signal changes nothing). Audio at
another sample rate is resampled with ``anima.core.audio.resample`` by ``log_mel(..., sample_rate=)``.

    python -c "import numpy as np; from anima.face.audio_features import log_mel; \
print(log_mel(np.random.randn(24000).astype('float32') * 0.1).shape)"   # (25, 80)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from anima.core.audio import resample


@dataclass(frozen=True)
class AudioFeatureConfig:
    """Log-mel feature layout; the defaults are what the shipped face model was trained with."""

    sample_rate: int = 24_000  # Hz
    fps: int = 25  # feature rows per second (one per video tick)
    subframes: int = 2  # mel frames per row (hop = tick / subframes)
    n_fft: int = 1024  # window length = FFT size, samples
    n_mels: int = 40
    f_min: float = 50.0  # Hz
    f_max: float = 11_000.0  # Hz (espeak's 22.05 kHz output has nothing above)
    floor_db: float = -90.0  # power floor; silence reads as this
    offset_db: float = 50.0  # feature = (dB + offset) / scale: speech lands around [-1.5, 2]
    scale_db: float = 20.0

    @property
    def tick(self) -> int:
        """Samples per feature row."""
        return self.sample_rate // self.fps

    @property
    def hop(self) -> int:
        return self.tick // self.subframes

    @property
    def dim(self) -> int:
        """Feature size per row."""
        return self.subframes * self.n_mels

    def __post_init__(self) -> None:
        if self.sample_rate % self.fps or (self.sample_rate // self.fps) % self.subframes:
            raise ValueError(f"AudioFeatureConfig: {self.sample_rate} Hz does not split into {self.fps} fps x {self.subframes} subframes")
        if self.n_fft < self.sample_rate // self.fps // self.subframes:
            raise ValueError(f"AudioFeatureConfig: n_fft {self.n_fft} is shorter than the hop")


@lru_cache(maxsize=8)
def _mel_basis(config: AudioFeatureConfig) -> np.ndarray:
    """HTK-mel triangular filters (n_fft // 2 + 1, n_mels), each normalised to unit area."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.fft.rfftfreq(config.n_fft, 1.0 / config.sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(config.f_min), hz_to_mel(config.f_max), config.n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (center - lower)
    down = (upper - freqs[None]) / (upper - center)
    basis = np.maximum(0.0, np.minimum(up, down))  # (n_mels, F)
    basis /= np.maximum(basis.sum(axis=1, keepdims=True), 1e-12)
    return basis.T.astype(np.float32)


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    w = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    return w / math.sqrt(float(np.mean(w * w)))  # unit power: a full-scale sine reads about -3 dB


def sanitize(audio: np.ndarray) -> np.ndarray:
    """1-D float32 copy with non-finite samples set to 0 and the rest clipped to [-1, 1]."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(x, -1.0, 1.0)


def _frames_to_features(frames: np.ndarray, config: AudioFeatureConfig) -> np.ndarray:
    """(N, n_fft) windows -> (N, n_mels) normalised log-mel."""
    spec = np.fft.rfft(frames * _window(config.n_fft), axis=-1)
    power = (spec.real**2 + spec.imag**2) / (config.n_fft**2 / 2.0)
    mel = power.astype(np.float32) @ _mel_basis(config)
    db = 10.0 * np.log10(np.maximum(mel, 10.0 ** (config.floor_db / 10.0)))
    return ((db + config.offset_db) / config.scale_db).astype(np.float32)


def log_mel(audio: np.ndarray, config: AudioFeatureConfig | None = None, sample_rate: int | None = None) -> np.ndarray:
    """Whole-signal features: one row per (started) tick. # (ceil(N / tick), subframes * n_mels)

    Args:
        audio: mono samples; any length (a partial last tick is padded with silence).
        config: feature layout (default ``AudioFeatureConfig()``).
        sample_rate: the audio's rate when it is not ``config.sample_rate`` (it is resampled).
    """
    config = config or AudioFeatureConfig()
    x = sanitize(audio)
    if sample_rate is not None and sample_rate != config.sample_rate:
        if sample_rate <= 0:
            raise ValueError(f"log_mel: sample_rate must be positive, got {sample_rate}")
        x = sanitize(resample(x, int(sample_rate), config.sample_rate))
    n_rows = -(-x.size // config.tick)
    if n_rows == 0:
        return np.zeros((0, config.dim), dtype=np.float32)
    hop, n_fft = config.hop, config.n_fft
    padded = np.zeros(n_fft + n_rows * config.tick, dtype=np.float32)  # n_fft of leading silence
    padded[n_fft:n_fft + x.size] = x
    ends = n_fft + hop * np.arange(1, n_rows * config.subframes + 1)  # each window ends at its hop's end
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[ends - n_fft]  # (N * S, n_fft)
    return _frames_to_features(frames, config).reshape(n_rows, config.dim)


class LogMelStream:
    """The same features as ``log_mel``, fed incrementally; keeps the last window of audio.

    ``process`` takes any number of samples and returns the rows of the ticks completed so far;
    ``flush`` pads the partial tick with silence. ``reset`` starts a new stream.
    """

    def __init__(self, config: AudioFeatureConfig | None = None) -> None:
        self.config = config or AudioFeatureConfig()
        self.reset()

    def reset(self) -> None:
        self._history = np.zeros(self.config.n_fft, dtype=np.float32)  # the last n_fft samples consumed
        self._pending = np.zeros(0, dtype=np.float32)  # samples of the current, incomplete tick

    def process(self, audio: np.ndarray) -> np.ndarray:
        """Consume samples; return the rows of every tick completed. # (n_ticks, dim)"""
        cfg = self.config
        x = np.concatenate([self._pending, sanitize(audio)])
        n_rows = x.size // cfg.tick
        self._pending = x[n_rows * cfg.tick:]
        if n_rows == 0:
            return np.zeros((0, cfg.dim), dtype=np.float32)
        buf = np.concatenate([self._history, x[:n_rows * cfg.tick]])
        ends = cfg.n_fft + cfg.hop * np.arange(1, n_rows * cfg.subframes + 1)
        frames = np.lib.stride_tricks.sliding_window_view(buf, cfg.n_fft)[ends - cfg.n_fft]
        self._history = buf[-cfg.n_fft:].copy()
        return _frames_to_features(frames, cfg).reshape(n_rows, cfg.dim)

    def flush(self) -> np.ndarray:
        """Pad the incomplete tick (if any) with silence and return its row. # (0 or 1, dim)"""
        if self._pending.size == 0:
            return np.zeros((0, self.config.dim), dtype=np.float32)
        pad = np.zeros(self.config.tick - self._pending.size, dtype=np.float32)
        return self.process(pad)


def fit_tick(audio: np.ndarray | None, tick: int) -> np.ndarray:
    """Exactly one tick of audio from whatever a runtime tick delivered. # (tick,)

    Empty or missing audio is silence; a block of another length is taken to span the same 40 ms
    (e.g. 640 samples from a 16 kHz microphone) and linearly resampled to ``tick`` samples.
    """
    x = sanitize(audio) if audio is not None else np.zeros(0, dtype=np.float32)
    if x.size == tick:
        return x
    if x.size == 0:
        return np.zeros(tick, dtype=np.float32)
    if x.size == 1:
        return np.full(tick, x[0], dtype=np.float32)
    pos = np.linspace(0.0, x.size - 1.0, tick)
    return np.interp(pos, np.arange(x.size), x).astype(np.float32)


def tick_energy_db(audio: np.ndarray, tick: int = 960) -> np.ndarray:
    """RMS level in dBFS of each tick (floor -100 dB), for metrics and masks. # (ceil(N / tick),)"""
    x = sanitize(audio)
    n = -(-x.size // tick)
    padded = np.zeros(n * tick, dtype=np.float32)
    padded[:x.size] = x
    rms = np.sqrt(np.mean(padded.reshape(n, tick).astype(np.float64) ** 2, axis=1))
    return (20.0 * np.log10(np.maximum(rms, 1e-5))).astype(np.float32)
