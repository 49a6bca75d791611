"""Audio utilities shared by every stage: streaming resampling, WAV loading, loudness.

Everything inside anima is 24 kHz mono float32 (``anima.core.frames.SAMPLE_RATE``); these helpers
bring outside audio (an espeak stream at 22050 Hz, a 16 kHz prompt WAV) to that format.

    from anima.core.audio import StreamingResampler, load_wav
    rs = StreamingResampler(22_050, 24_000)
    out = [rs.process(chunk) for chunk in chunks] + [rs.flush()]   # same as one call on the whole signal
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from anima.core.frames import SAMPLE_RATE

logger = logging.getLogger(__name__)

__all__ = ["AudioFileError", "StreamingResampler", "load_wav", "resample", "rms", "rms_db"]

_SILENCE_DB = -100.0  # rms_db floor: what digital silence reports instead of -inf
_MAX_TABLE_PHASES = 4096  # above this many polyphase branches, compute the kernel per output instead
_BLOCK = 4096  # outputs per vectorised block: bounds the (block, taps) gather; 4096 keeps it in cache (5-7x faster than 32768 on long chunks, same samples)


class AudioFileError(ValueError):
    """An audio file is missing, unreadable, empty or holds non-finite samples. The message names the path."""


def _kaiser_sinc(d: np.ndarray, cutoff: float, half_width: float, beta: float) -> np.ndarray:
    """Kaiser-windowed sinc low-pass evaluated at offsets ``d`` (in input samples).

    ``cutoff`` is the pass-band edge as a fraction of the input Nyquist frequency; ``half_width``
    is where the window reaches zero (input samples).
    """
    u = np.clip(d / half_width, -1.0, 1.0)
    window = np.i0(beta * np.sqrt(1.0 - u * u)) / np.i0(beta)
    window = np.where(np.abs(d) <= half_width, window, 0.0)
    return cutoff * np.sinc(cutoff * d) * window


class StreamingResampler:
    """Stateful windowed-sinc (Kaiser) resampler between two integer sample rates.

    Output sample ``k`` sits at time ``k / dst_rate``, exactly where the input puts it: the filter is
    centred (zero phase), so resampling adds no delay and event times stay valid across rates. To do
    that in a stream it waits for ``taps/2`` input samples of lookahead, and ``flush`` pads the end
    with zeros. Feeding a signal in any chunking and then flushing gives the same samples (to float
    rounding) as one ``process`` call on the whole signal followed by ``flush``; the total output
    length is ``ceil(len * dst / src)`` (as ``scipy.signal.resample_poly``).

    The anti-aliasing cutoff is ``rolloff`` times the lower of the two Nyquist frequencies. Each
    polyphase branch is normalised to unit DC gain. ``flush`` resets the state, so one instance can
    resample several streams one after the other (not interleaved).

    Args:
        src_rate: Input sample rate in Hz.
        dst_rate: Output sample rate in Hz.
        zeros: Zero crossings of the sinc kept on each side (filter length vs. transition width).
        rolloff: Cutoff as a fraction of the lower Nyquist frequency, below 1 to leave a transition band.
        beta: Kaiser window shape (about 8.6 gives ~80 dB stop-band rejection).
    """

    def __init__(
        self, src_rate: int, dst_rate: int, *, zeros: int = 16, rolloff: float = 0.94, beta: float = 8.6
    ) -> None:
        if int(src_rate) != src_rate or int(dst_rate) != dst_rate or src_rate <= 0 or dst_rate <= 0:
            raise ValueError(f"sample rates must be positive integers, got src={src_rate}, dst={dst_rate}")
        if not 0.0 < rolloff < 1.0:
            raise ValueError(f"rolloff must be in (0, 1), got {rolloff}")
        self.src_rate, self.dst_rate = int(src_rate), int(dst_rate)
        g = math.gcd(self.src_rate, self.dst_rate)
        self._up, self._down = self.dst_rate // g, self.src_rate // g  # output k sits at input k*down/up
        self._cutoff = rolloff * min(1.0, self._up / self._down)  # fraction of the input Nyquist
        self._half_width = zeros / self._cutoff  # input samples on each side of the output time
        self._h = math.ceil(self._half_width)  # taps before/after: inputs n0-h+1 .. n0+h are used
        self._beta = beta
        self._table: np.ndarray | None = None  # (up, 2h) weights per polyphase branch
        if self._up <= _MAX_TABLE_PHASES:
            self._table = self._weights(np.arange(self._up))
        self._reset()

    def _reset(self) -> None:
        # The buffer covers absolute input indices [_buf_start, _buf_start + len); it starts with h
        # zeros standing for the (silent) signal before index 0, so the first outputs see a full window.
        self._buf = np.zeros(self._h, dtype=np.float64)
        self._buf_start = -self._h
        self._n_in = 0  # input samples received so far
        self._k = 0  # next output index

    def _weights(self, phase: np.ndarray) -> np.ndarray:
        """Filter weights for outputs at fractional input position ``phase / up``. # (len(phase), 2h)"""
        frac = phase.astype(np.float64) / self._up
        j = np.arange(2 * self._h)
        d = frac[:, None] + (self._h - 1 - j)[None, :]  # (P, 2h) distance from output time to input n0-h+1+j
        w = _kaiser_sinc(d, self._cutoff, self._half_width, self._beta)
        return w / w.sum(axis=1, keepdims=True)  # unit DC gain on every branch

    def _compute(self, k_end: int) -> np.ndarray:
        """Outputs ``self._k .. k_end - 1``; the buffer must hold their whole windows."""
        out = np.empty(max(k_end - self._k, 0), dtype=np.float64)
        taps = np.arange(2 * self._h)
        for b in range(0, out.size, _BLOCK):
            k = np.arange(self._k + b, min(self._k + b + _BLOCK, k_end), dtype=np.int64)
            t = k * self._down  # output time in units of 1/up input samples
            n0, phase = t // self._up, t % self._up
            idx = (n0 - self._h + 1 - self._buf_start)[:, None] + taps[None, :]  # (B, 2h) buffer indices
            w = self._table[phase] if self._table is not None else self._weights(phase)  # (B, 2h)
            out[b : b + k.size] = np.einsum("ij,ij->i", self._buf[idx], w)
        self._k = max(self._k, k_end)
        # Drop input no later output can reach: output k_end starts its window at n0(k_end) - h + 1.
        keep_from = (self._k * self._down) // self._up - self._h + 1
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :]
            self._buf_start = keep_from
        return out.astype(np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed the next input chunk and return every output sample that is now complete.

        Args:
            x: Next input samples. # (N,) any real dtype; float in [-1, 1] by convention

        Returns:
            The newly completed output samples (may be empty while the lookahead fills). # (M,) float32
        """
        x = np.asarray(x)
        if x.ndim != 1:
            raise ValueError(f"StreamingResampler.process expects a 1-D mono array, got shape {x.shape}")
        if self._up == self._down:
            return x.astype(np.float32)
        self._buf = np.concatenate([self._buf, x.astype(np.float64)])
        self._n_in += x.size
        # Output k is complete once its last input n0(k) + h has arrived: n0(k) <= n_in - 1 - h,
        # i.e. k * down < (n_in - h) * up.
        ready = self._n_in - self._h
        k_end = -(-ready * self._up // self._down) if ready > 0 else 0
        return self._compute(k_end)

    def flush(self) -> np.ndarray:
        """End the stream: return the remaining outputs (the end is padded with silence) and reset.

        Returns:
            The last output samples, so that the stream's total is ``ceil(n_in * dst / src)``. # (M,) float32
        """
        if self._up == self._down:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._n_in * self._up // self._down)
        self._buf = np.concatenate([self._buf, np.zeros(self._h + 1, dtype=np.float64)])
        out = self._compute(total)
        self._reset()
        return out


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample a whole signal (one shot) with the same filter as ``StreamingResampler``.

    Using the streaming filter here keeps offline and streamed audio sample-identical.

    Args:
        x: The signal. # (N,)
        src_rate: Its sample rate in Hz.
        dst_rate: The wanted sample rate in Hz.

    Returns:
        The resampled signal, ``ceil(N * dst / src)`` samples. # (M,) float32
    """
    rs = StreamingResampler(src_rate, dst_rate)
    return np.concatenate([rs.process(x), rs.flush()])


def load_wav(path: str | os.PathLike[str], target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as mono float32 in [-1, 1] at ``target_rate``.

    Stereo and multichannel files are down-mixed by averaging; other rates are resampled.
    Any format libsndfile reads (WAV, FLAC, OGG, ...) is accepted.

    Args:
        path: The audio file.
        target_rate: Sample rate of the returned samples in Hz.

    Returns:
        The samples. # (N,) float32

    Raises:
        AudioFileError: the file is missing, is not audio, holds zero samples, or holds NaN/inf.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not an audio file" if p.is_dir() else "does not exist"
        raise AudioFileError(f"audio file {str(p)!r} {what}")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)  # (N, C)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise AudioFileError(f"cannot read {str(p)!r} as audio: {e}") from e
    if data.shape[0] == 0:
        raise AudioFileError(f"audio file {str(p)!r} is empty (0 samples)")
    if not np.isfinite(data).all():
        raise AudioFileError(f"audio file {str(p)!r} contains NaN or infinite samples")
    mono = data.mean(axis=1)  # (N,)
    if rate != target_rate:
        logger.debug("resampling %s from %d Hz to %d Hz", p, rate, target_rate)
        mono = resample(mono, rate, target_rate)
    # Float files may exceed full scale and sinc resampling can overshoot slightly.
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


def rms(x: np.ndarray) -> float:
    """Root-mean-square level of a signal (0.0 for an empty one). x: # (N,)"""
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def rms_db(x: np.ndarray) -> float:
    """RMS level in dB relative to full scale (1.0), floored at -100 dB so silence stays finite. x: # (N,)"""
    level = rms(x)
    return max(_SILENCE_DB, 20.0 * math.log10(level)) if level > 0 else _SILENCE_DB
