"""Speech codecs behind one interface, so a learned tokenizer and the classical baselines are measured alike.

A ``Codec`` turns 24 kHz speech into its reconstruction after a round trip through the codec,
time-aligned with the input and of the same length: the input is padded with silence at the end so
the codec outputs all of it (Codec2 drops a partial last frame, and its delay pushes the end out),
then the codec's own delay is removed. STOI and PESQ compare sample-aligned signals: 19 ms of
Codec2 delay costs 0.15 STOI, and a missing last 20 ms cost up to 0.2 PESQ-NB on a clip.

    codec = make_codec("codec2-1200")
    y = codec.reconstruct(x)  # (N,) float32 at 24 kHz in, (N,) float32 at 24 kHz out

Baselines: Codec2 (Debian ``codec2``: ``c2enc``/``c2dec``, 8 kHz) and Opus (libopus in PyAV's
wheel, 48 kHz). ``TokenizerCodec`` wraps a learned tokenizer with ``encode``/``decode``.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

SAMPLE_RATE = 24000
BASELINES = ("codec2-1200", "codec2-700C", "codec2-3200", "opus-6000")


class Codec(Protocol):
    """A speech codec round trip at 24 kHz."""

    name: str
    bitrate: float  # bit/s of the coded stream
    delay_samples: int  # the codec's own delay at 24 kHz, already removed by ``reconstruct``

    def reconstruct(self, samples: np.ndarray) -> np.ndarray:
        """(N,) float32 at 24 kHz -> (N,) float32 at 24 kHz, aligned with the input."""
        ...


def check_audio(samples: Any, what: str = "audio") -> np.ndarray:
    """The samples as a (N,) float32 array; a clear error for anything a codec or metric cannot take."""
    if not isinstance(samples, np.ndarray):
        raise TypeError(f"{what}: expected a numpy array of samples, got {type(samples).__name__}")
    if samples.ndim != 1:
        raise ValueError(f"{what}: expected mono samples of shape (N,), got shape {samples.shape}")
    if samples.size == 0:
        raise ValueError(f"{what}: empty audio (0 samples)")
    if not np.issubdtype(samples.dtype, np.floating):
        raise TypeError(f"{what}: expected float samples in [-1, 1], got dtype {samples.dtype}")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{what}: contains NaN or infinite samples")
    return samples.astype(np.float32, copy=False)


def align(samples: np.ndarray, delay: int, length: int) -> np.ndarray:
    """Drop ``delay`` leading samples and cut or zero-pad to ``length``: (M,) -> (length,) float32."""
    out = np.zeros(length, np.float32)
    seg = samples[max(delay, 0) :][:length]
    out[: seg.size] = seg
    return out


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """soxr (high quality, its own filter delay compensated) as float32."""
    if rate_in == rate_out:
        return samples.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(samples, rate_in, rate_out).astype(np.float32)


def estimate_delay(reference: np.ndarray, reconstruction: np.ndarray, rate: int, max_lag_s: float = 0.05) -> int:
    """Lag in samples (positive: the reconstruction comes late) maximising the cross-correlation of
    the two signals' amplitude envelopes (parametric codecs like Codec2 do not keep the waveform's
    phase, so the envelope is what lines up)."""
    from scipy.signal import butter, correlate, sosfiltfilt

    sos = butter(2, 30, fs=rate, output="sos")
    n = min(reference.size, reconstruction.size)
    a = sosfiltfilt(sos, np.abs(reference[:n]))
    b = sosfiltfilt(sos, np.abs(reconstruction[:n]))
    a, b = a - a.mean(), b - b.mean()
    xc = correlate(b, a, mode="full")  # index n-1 is lag 0
    max_lag = int(max_lag_s * rate)
    window = xc[n - 1 - max_lag : n + max_lag]
    return int(np.argmax(window)) - max_lag


class Identity:
    """No coding at all (16-bit PCM): the ceiling of every metric, and a check of the harness."""

    name = "identity"
    bitrate = 16.0 * SAMPLE_RATE
    delay_samples = 0

    def reconstruct(self, samples: np.ndarray) -> np.ndarray:
        return check_audio(samples).copy()


class Codec2:
    """Codec2 through the Debian command-line tools (8 kHz raw int16 in and out).

    Delays (at 8 kHz) are those that maximise STOI on espeak-ng speech with Debian's codec2 1.x;
    NOTES.md's "~140 samples" is the 1200 mode's, within one STOI-flat plateau (140-180).
    """

    RATE = 8000
    TAIL = SAMPLE_RATE // 20  # 50 ms of silence appended: more than one codec frame (20-40 ms)
    DELAYS_8K = {"1200": 150, "700C": 220, "3200": 160}

    def __init__(self, mode: str = "1200") -> None:
        if mode not in self.DELAYS_8K:
            raise ValueError(f"unknown Codec2 mode {mode!r}; choose one of {', '.join(self.DELAYS_8K)}")
        for tool in ("c2enc", "c2dec"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"Codec2 needs `{tool}`: install the Debian package `codec2` (apt-get install codec2)")
        self.mode = mode
        self.name = f"codec2-{mode}"
        self.bitrate = float(int(mode.rstrip("C")))
        self.delay_samples = self.DELAYS_8K[mode] * SAMPLE_RATE // self.RATE

    def reconstruct(self, samples: np.ndarray) -> np.ndarray:
        x = check_audio(samples)
        padded = np.concatenate([x, np.zeros(self.delay_samples + self.TAIL, np.float32)])
        x8 = resample(padded, SAMPLE_RATE, self.RATE)  # (N'/3,)
        with tempfile.TemporaryDirectory(prefix="codec2-") as tmp:
            d = Path(tmp)
            (np.clip(x8, -1.0, 1.0) * 32767).astype("<i2").tofile(d / "in.raw")
            for cmd in (["c2enc", self.mode, "in.raw", "coded.bit"], ["c2dec", self.mode, "coded.bit", "out.raw"]):
                r = subprocess.run(cmd, cwd=d, capture_output=True)
                if r.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.decode(errors='replace').strip()}")
            y8 = np.fromfile(d / "out.raw", "<i2").astype(np.float32) / 32768.0
        y = resample(y8, self.RATE, SAMPLE_RATE)
        return align(y, self.delay_samples, x.size)


class Opus:
    """Opus (libopus via PyAV) at a fixed bitrate, through an in-memory Ogg file at 48 kHz.

    The decoder honours Ogg's pre-skip, so the output needs no delay removed (measured: < 0.2 ms).
    ``bitrate`` is the encoder's target; Ogg framing adds ~1 kbit/s on top.
    """

    RATE = 48000

    def __init__(self, bitrate: int = 6000) -> None:
        import av

        if not 6000 <= bitrate <= 510000:
            raise ValueError(f"Opus bitrate {bitrate} bit/s is outside libopus's 6000-510000")
        if "libopus" not in av.codecs_available:
            raise RuntimeError("this PyAV build has no libopus encoder; install the PyPI wheel of `av`")
        self.name = f"opus-{bitrate}"
        self.bitrate = float(bitrate)
        self.delay_samples = 0

    def reconstruct(self, samples: np.ndarray) -> np.ndarray:
        import av

        x = check_audio(samples)
        x48 = resample(x, SAMPLE_RATE, self.RATE)  # (2N,)
        buf = io.BytesIO()
        with av.open(buf, "w", format="ogg") as container:
            stream = container.add_stream("libopus", rate=self.RATE)
            stream.bit_rate = int(self.bitrate)
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(x48[None], format="flt", layout="mono")
            frame.sample_rate = self.RATE
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        buf.seek(0)
        with av.open(buf, "r") as container:
            y48 = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        y = resample(y48.astype(np.float32), self.RATE, SAMPLE_RATE)
        return align(y, self.delay_samples, x.size)


class TokenizerCodec:
    """A learned tokenizer as a codec: ``model.encode(wav (B, N)) -> codes (B, K, T)``,
    ``model.decode(codes) -> wav (B, N')``, with ``model.bitrate`` and ``model.frame_rate``.

    A model that knows its own latency may say so in ``model.delay_samples`` (at 24 kHz)."""

    def __init__(self, model: Any, name: str = "tokenizer") -> None:
        for attr in ("encode", "decode", "bitrate", "frame_rate"):
            if not hasattr(model, attr):
                raise TypeError(f"{type(model).__name__} is not a tokenizer: it has no `{attr}`")
        self.model = model
        self.name = name
        self.bitrate = float(model.bitrate)
        self.frame_rate = float(model.frame_rate)
        self.delay_samples = int(getattr(model, "delay_samples", 0))

    def reconstruct(self, samples: np.ndarray) -> np.ndarray:
        import torch

        x = check_audio(samples)
        with torch.inference_mode():
            padded = np.concatenate([x, np.zeros(self.delay_samples, np.float32)])
            codes = self.model.encode(torch.from_numpy(padded)[None])  # (1, K, T)
            if codes.ndim != 3 or codes.shape[0] != 1:
                raise ValueError(f"{self.name}: encode returned codes of shape {tuple(codes.shape)}, expected (1, K, T)")
            expected = math.ceil(padded.size / SAMPLE_RATE * self.frame_rate)
            if abs(codes.shape[-1] - expected) > 2:
                raise ValueError(f"{self.name}: {codes.shape[-1]} frames for {x.size} samples, expected ~{expected} at {self.frame_rate} Hz")
            y = self.model.decode(codes)  # (1, N')
        y = y.detach().float().cpu().numpy().reshape(-1)
        return align(y, self.delay_samples, x.size)


def make_codec(spec: str) -> Codec:
    """A baseline by name: ``codec2-MODE`` (1200, 700C, 3200), ``opus-BITRATE``, or ``identity``."""
    kind, _, arg = spec.partition("-")
    match kind:
        case "codec2":
            return Codec2(arg or "1200")
        case "opus":
            if arg and not arg.isdigit():
                raise ValueError(f"{spec!r}: the Opus bitrate must be an integer in bit/s, e.g. opus-6000")
            return Opus(int(arg or 6000))
        case "identity":
            return Identity()
        case _:
            raise ValueError(f"unknown codec {spec!r}; choose codec2-1200, codec2-700C, codec2-3200, opus-BITRATE or identity")
