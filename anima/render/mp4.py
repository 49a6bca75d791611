"""MP4 output and inspection: H.264 + AAC writing, decode-based probing, frame and audio reading.

``MP4Writer`` takes one video frame per call together with whatever audio accompanies it and
muxes H.264 (libx264, yuv420p) with mono AAC. The file is written to a temporary name next to
the target and moved into place only by ``close()``, so a crash never leaves a truncated file at
``path`` and never destroys a good file that was there before::

    with MP4Writer("out.mp4", 960, 540) as writer:
        for image, audio in frames:          # (540, 960, 3) uint8, float32 mono samples
            writer.write(image, audio)

``probe``, ``read_frames`` and ``read_audio`` decode a file with PyAV; tests and previews use them
to check what was actually written rather than what the container header claims.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

logger = logging.getLogger(__name__)

AAC_FRAME_SIZE = 1024  # samples per AAC frame; the encoder takes exactly this many (the last may be short)
X264_PRESET = "veryfast"  # fast enough for real time on a laptop core, small files
X264_CRF = 23


class MediaError(ValueError):
    """A media file is missing a stream, corrupt, or not a media file at all."""


class MP4Writer:
    """Writes H.264 (libx264, yuv420p, crf 23) video with mono AAC audio to an MP4 file.

    Audio is a stream of its own: each ``write`` appends its samples (any count) to it, and the
    encoder is fed exact 1024-sample AAC frames with sample-count pts. At ``close`` audio shorter
    than the video is padded with silence so both tracks end together.

    Args:
        path: where the finished file goes (its directory must exist).
        width: frame width in pixels (even, as yuv420p requires).
        height: frame height in pixels (even).
        fps: video frame rate.
        sample_rate: audio sample rate in Hz.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: int = 25, sample_rate: int = 24000) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"MP4Writer: width and height must be positive and even, got {width}x{height}")
        if fps <= 0 or sample_rate <= 0:
            raise ValueError(f"MP4Writer: fps and sample_rate must be positive, got {fps} and {sample_rate}")
        self.path = Path(path)
        self.width, self.height, self.fps, self.sample_rate = int(width), int(height), int(fps), int(sample_rate)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"MP4Writer: directory {self.path.parent} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        os.close(fd)
        self._tmp_path = Path(tmp)
        try:
            self._container = av.open(str(self._tmp_path), mode="w", format="mp4")
            self._video = self._container.add_stream("libx264", rate=self.fps)
            self._video.width, self._video.height = self.width, self.height
            self._video.pix_fmt = "yuv420p"
            self._video.options = {"crf": str(X264_CRF), "preset": X264_PRESET}
            self._audio = self._container.add_stream("aac", rate=self.sample_rate, layout="mono")
        except Exception:
            self._tmp_path.unlink(missing_ok=True)
            raise
        self._pending = np.zeros(0, dtype=np.float32)  # audio not yet a whole AAC frame
        self.frames_written = 0
        self.samples_written = 0  # audio samples handed to the encoder (pts of the next AAC frame)
        self._closed = False

    # -- writing --------------------------------------------------------------------------------

    def write(self, image: np.ndarray, audio: np.ndarray | None = None) -> None:
        """Encode one video frame and append the audio that accompanies it.

        Args:
            image: (height, width, 3) uint8 RGB.
            audio: float32 mono samples in [-1, 1] (clipped), any length; None for no audio.

        Raises:
            ValueError: wrong image shape / dtype, or audio that is not 1-D or not finite.
            RuntimeError: the writer is already closed.
        """
        if self._closed:
            raise RuntimeError("MP4Writer.write: the writer is closed; open a new MP4Writer")
        image = np.asarray(image)
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"image: expected shape ({self.height}, {self.width}, 3) uint8, got {image.shape} {image.dtype}"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = Fraction(1, self.fps)
        self._mux(self._video.encode(frame))
        self.frames_written += 1
        if audio is not None:
            self._append_audio(audio)

    def _append_audio(self, audio: np.ndarray) -> None:
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim == 2 and 1 in samples.shape:
            samples = samples.reshape(-1)
        if samples.ndim != 1:
            raise ValueError(f"audio: expected mono samples of shape (n,), got {samples.shape}")
        if not np.all(np.isfinite(samples)):
            raise ValueError(f"audio: contains NaN or infinite values (shape {samples.shape})")
        self._pending = np.concatenate([self._pending, np.clip(samples, -1.0, 1.0)])
        whole = len(self._pending) // AAC_FRAME_SIZE * AAC_FRAME_SIZE
        for start in range(0, whole, AAC_FRAME_SIZE):
            self._encode_audio(self._pending[start : start + AAC_FRAME_SIZE])
        self._pending = self._pending[whole:]

    def _encode_audio(self, chunk: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")  # (1, n)
        frame.sample_rate = self.sample_rate
        frame.pts = self.samples_written
        frame.time_base = Fraction(1, self.sample_rate)
        self._mux(self._audio.encode(frame))
        self.samples_written += len(chunk)

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)

    # -- finishing ------------------------------------------------------------------------------

    def close(self) -> Path:
        """Pad audio to the video's length, flush both encoders, and move the file into place.

        Returns:
            The final path.
        """
        if self._closed:
            return self.path
        video_samples = round(self.frames_written * self.sample_rate / self.fps)
        missing = video_samples - self.samples_written - len(self._pending)
        if missing > 0:  # silence so the audio track does not end before the picture
            self._pending = np.concatenate([self._pending, np.zeros(missing, np.float32)])
        try:
            for start in range(0, len(self._pending), AAC_FRAME_SIZE):
                self._encode_audio(self._pending[start : start + AAC_FRAME_SIZE])  # the last may be short
            self._pending = np.zeros(0, dtype=np.float32)
            self._mux(self._video.encode(None))
            self._mux(self._audio.encode(None))
            self._container.close()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        # Only a complete file replaces what is at `path` (atomic on one filesystem).
        os.replace(self._tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file; whatever was at ``path`` before is left untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except Exception as exc:  # a half-written container may fail to finalise; it is discarded anyway
            logger.debug("MP4Writer.abort: closing the container failed: %s", exc)
        self._tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> MP4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()  # the exception propagates


# ----------------------------------------------------------------------------------------------
# Reading


@dataclass
class MediaInfo:
    """What a media file holds, counted by decoding it."""

    duration_s: float  # video frames / fps
    video_frames: int
    fps: float
    width: int
    height: int
    audio_sample_rate: int | None  # None when there is no audio stream
    audio_duration_s: float | None  # decoded samples (up to the declared length) / rate


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"media file not found: {path}")
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: not a readable media file ({exc})") from exc


def _declared_samples(stream: av.audio.stream.AudioStream) -> int | None:
    """The audio length the container declares, in samples (None if it declares none).

    The decoder emits the last AAC frame whole (up to 1023 samples of encoder padding); players
    stop at the declared duration, so the readers trim to it.
    """
    if stream.duration is None or stream.time_base is None:
        return None
    return int(round(stream.duration * stream.time_base * stream.codec_context.sample_rate))


def probe(path: str | Path) -> MediaInfo:
    """Decode every frame of ``path`` and report counts, rates and durations.

    Raises:
        FileNotFoundError: no such file.
        MediaError: the file is corrupt or has no video stream.
    """
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        fps = float(video.average_rate or video.base_rate or 0)
        frames, samples = 0, 0
        streams = [video] + ([audio] if audio is not None else [])
        try:
            for frame in container.decode(*streams):
                if isinstance(frame, av.VideoFrame):
                    frames += 1
                else:
                    samples += frame.samples
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: decoding failed after {frames} frames ({exc})") from exc
        if frames == 0:
            raise MediaError(f"{path}: the video stream has no decodable frames")
        rate = audio.codec_context.sample_rate if audio is not None else None
        if audio is not None and (declared := _declared_samples(audio)) is not None:
            samples = min(samples, declared)
        return MediaInfo(
            duration_s=frames / fps if fps else 0.0,
            video_frames=frames,
            fps=fps,
            width=video.codec_context.width,
            height=video.codec_context.height,
            audio_sample_rate=rate,
            audio_duration_s=samples / rate if rate else None,
        )


def read_frames(path: str | Path, times_s: Sequence[float]) -> list[np.ndarray]:
    """The decoded RGB frames nearest to each of ``times_s``, in the order asked.

    Decodes from the start (exact, no keyframe seeking); stops after the latest time asked.

    Returns:
        One (H, W, 3) uint8 array per requested time.
    """
    times = np.asarray(list(times_s), dtype=np.float64)
    if times.size == 0:
        return []
    order = np.argsort(times)
    result: list[np.ndarray | None] = [None] * len(times)
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        video = container.streams.video[0]
        previous: tuple[float, av.VideoFrame] | None = None
        k = 0  # next index into `order`
        try:
            for frame in container.decode(video):
                t = float(frame.time if frame.time is not None else frame.pts * video.time_base)
                # Every asked time before this frame is nearest to it or to the previous one.
                while k < len(order) and times[order[k]] <= t:
                    want = times[order[k]]
                    best = frame if previous is None or t - want < want - previous[0] else previous[1]
                    result[order[k]] = best.to_ndarray(format="rgb24")
                    k += 1
                if k == len(order):
                    break
                previous = (t, frame)
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: decoding failed ({exc})") from exc
        if previous is None and k == 0:
            raise MediaError(f"{path}: the video stream has no decodable frames")
        for i in order[k:]:  # asked past the end: the last frame
            result[i] = previous[1].to_ndarray(format="rgb24")  # type: ignore[index]
    return result  # type: ignore[return-value]


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream as mono float32.

    Returns:
        (samples, sample_rate): samples is (n,) float32, channels averaged.

    Raises:
        MediaError: no audio stream or undecodable audio.
    """
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        chunks = []
        try:
            for frame in container.decode(stream):
                data = frame.to_ndarray()  # planar (channels, n) or packed (1, n * channels)
                if not frame.format.is_planar:
                    data = data.reshape(-1, len(frame.layout.channels)).T
                if np.issubdtype(data.dtype, np.integer):  # s16 / s32 sources: scale to [-1, 1]
                    data = data.astype(np.float32) / np.iinfo(data.dtype).max
                chunks.append(data.astype(np.float32).mean(axis=0))
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: decoding audio failed ({exc})") from exc
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        declared = _declared_samples(stream)
        if declared is not None:
            samples = samples[:declared]
        return samples.astype(np.float32), int(stream.codec_context.sample_rate)
