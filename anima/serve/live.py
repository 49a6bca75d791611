"""Adapters between a WebSocket client and the runtime: input source, output sink, speech recognition.

``LiveInput`` collects what the browser sends (microphone audio, typed text) and hands it to the
session driver tick by tick, stamping audio with a continuous media time. ``ClientSink`` is the
last stage: it turns frames into protocol messages on an outgoing queue. ``TranscriptionStage``
recognises the user's speech: with a local streaming recogniser (``anima.asr``, PocketSphinx by
default) it sends partial transcripts while the user speaks and a final one at the end of the
stretch of speech; with an OpenAI-compatible transcription server (Whisper-class) it uploads each
finished stretch and feeds the returned text back in as the user's final transcript.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import numpy as np
import soundfile as sf

from anima.asr.base import Recognizer
from anima.core.clock import MediaClock
from anima.core.frames import (
    NS_PER_S,
    SAMPLE_RATE,
    AgentStartedSpeakingFrame,
    AgentStateFrame,
    AgentStoppedSpeakingFrame,
    BodyPoseFrame,
    ErrorFrame,
    FaceParamsFrame,
    Frame,
    InterruptionFrame,
    PlayedAudioFrame,
    SystemFrame,
    TickFrame,
    UserAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTextFrame,
    UserTranscriptFrame,
)
from anima.core.stage import DOWN, UP, Direction, Stage
from anima.core.vad import EnergyVAD
from anima.serve.protocol import BinaryKind, ProtocolError, encode_audio, encode_motion

log = logging.getLogger(__name__)
Outgoing = str | bytes | dict
RESYNC_GAP_NS = 200_000_000  # a microphone gap longer than this restarts the stream's timeline


class LiveInput:
    """What the client sent since the last tick, as frames with media times."""

    def __init__(self, clock: MediaClock, max_lead_s: float = 1.0) -> None:
        self.clock = clock
        self.max_lead_ns = int(max_lead_s * NS_PER_S)
        self._frames: list[Frame] = []
        self._audio_end_ns: int | None = None
        self._audio_received_ns = 0  # media length of all microphone audio so far
        self._audio_first_ns: int | None = None  # clock time of the first audio message
        self.closed = False

    def add_audio(self, samples: np.ndarray) -> None:
        """Queue microphone samples; refuse audio that arrives faster than real time (plus a lead)."""
        now = self.clock.now_ns()
        if self._audio_first_ns is None:
            self._audio_first_ns = now
        received = self._audio_received_ns + int(samples.size * NS_PER_S / SAMPLE_RATE)
        if received > now - self._audio_first_ns + self.max_lead_ns:
            raise ProtocolError(f"microphone audio arrives faster than real time ({received / NS_PER_S:.1f} s of audio "
                                f"in {(now - self._audio_first_ns) / NS_PER_S:.1f} s); this message was dropped")
        self._audio_received_ns = received
        duration = int(samples.size * NS_PER_S / SAMPLE_RATE)
        start = now - duration
        if self._audio_end_ns is not None and abs(start - self._audio_end_ns) < RESYNC_GAP_NS:
            start = self._audio_end_ns  # contiguous stream: keep sample-accurate times
        self._audio_end_ns = start + duration
        self._frames.append(UserAudioFrame(samples, pts_ns=start))

    def add_text(self, text: str) -> None:
        self._frames.append(UserTextFrame(text, pts_ns=self.clock.now_ns()))

    def frames_for_tick(self, pts_ns: int, tick_ns: int) -> list[Frame]:
        frames, self._frames = self._frames, []
        return frames

    def observe(self, frame: Frame) -> None:
        pass

    def finished(self, now_ns: int) -> bool:
        return self.closed


class ClientSink(Stage):
    """Turns the session's output into protocol messages for one client."""

    def __init__(self, send: Callable[[Outgoing], None]) -> None:
        super().__init__(name="client")
        self.send = send
        self._face: np.ndarray | None = None
        self._joints: np.ndarray | None = None

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is DOWN:
            match frame:
                case PlayedAudioFrame():
                    if frame.turn_id is not None or np.any(frame.samples):
                        self.send(encode_audio(BinaryKind.AGENT_AUDIO, frame.turn_id or 0, frame.pts_s, frame.samples))
                    words = [[round(t, 3), ev.text] for t, ev in frame.scheduled_events if ev.kind == "word"]
                    if words:
                        self.send({"type": "words", "turn": frame.turn_id, "words": words})
                case FaceParamsFrame():
                    self._face = frame.params
                case BodyPoseFrame():
                    self._joints = frame.joints
                case TickFrame():
                    if self._face is not None and self._joints is not None:
                        self.send(encode_motion(frame.index, frame.pts_s, self._face, self._joints))
                case UserTranscriptFrame():
                    self.send({"type": "transcript", "text": frame.text, "final": frame.final})
        await self.push_frame(frame, direction)

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        if direction is DOWN:
            match frame:
                case AgentStateFrame():
                    self.send({"type": "state", "state": frame.state.value, "pts": frame.pts_s})
                case InterruptionFrame():
                    self.send({"type": "interrupt", "onset_pts": frame.onset_pts_ns / NS_PER_S, "pts": frame.pts_s})
                case AgentStartedSpeakingFrame():
                    self.send({"type": "agent_started", "turn": frame.turn_id, "text": frame.text, "pts": frame.pts_s})
                case AgentStoppedSpeakingFrame():
                    self.send({"type": "agent_stopped", "turn": frame.turn_id, "interrupted": frame.interrupted,
                               "heard": frame.heard_text, "pts": frame.pts_s})
                case UserStartedSpeakingFrame():
                    self.send({"type": "user_speaking", "value": True, "pts": frame.onset_pts_ns / NS_PER_S})
                case UserStoppedSpeakingFrame():
                    self.send({"type": "user_speaking", "value": False, "pts": frame.end_pts_ns / NS_PER_S})
        elif isinstance(frame, ErrorFrame):
            self.send({"type": "error", "message": f"{frame.stage}: {frame.message}"})
        await self.push_frame(frame, direction)


Transcribe = Callable[[bytes], Awaitable[str]]


class TranscriptionStage(Stage):
    """Speech recognition: a local streaming ``recognizer`` (partials + final) or a ``transcribe`` server (final)."""

    def __init__(self, transcribe: Transcribe | None = None, vad: EnergyVAD | None = None, max_s: float = 30.0,
                 recognizer: Recognizer | None = None, preroll_s: float = 0.3) -> None:
        super().__init__(name="asr")
        if (transcribe is None) == (recognizer is None):
            raise ValueError("TranscriptionStage needs exactly one of transcribe (a server) or recognizer (local)")
        self.transcribe = transcribe
        self.vad = vad or EnergyVAD()
        self.max_samples = int(max_s * SAMPLE_RATE)
        self._buffer: list[np.ndarray] = []
        # Local recogniser: one stream per session (this stage), fed from just before the speech onset.
        self._stream = recognizer.new_stream() if recognizer is not None else None
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, int(preroll_s / 0.04)))
        self._in_utterance = False
        self._utterance_samples = 0

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is DOWN and isinstance(frame, UserAudioFrame):
            events = self.vad.process(frame.samples, frame.pts_ns)
            if self._stream is not None:
                await self.push_frame(frame, direction)  # the audio flows on first; recognition follows
                await self._stream_audio(frame, events)
                return
            if self.vad.speaking or events:
                self._buffer.append(frame.samples)
            if any(e.kind == "end" for e in events) and self._buffer:
                audio = np.concatenate(self._buffer)[-self.max_samples :]
                self._buffer = []
                self.start_job(self._recognise(audio, frame.pts_ns))
        await self.push_frame(frame, direction)

    async def _stream_audio(self, frame: UserAudioFrame, events: list) -> None:
        if not (self._in_utterance or self.vad.speaking or events):
            self._preroll.append(frame.samples)
            return
        chunks = [frame.samples]
        if not self._in_utterance:
            chunks = [*self._preroll, frame.samples]
            self._preroll.clear()
            self._in_utterance, self._utterance_samples = True, 0
        self._utterance_samples += sum(c.size for c in chunks)
        audio = np.concatenate(chunks)
        with self.timed():  # the decoder runs off the event loop; this stage's frames wait in order
            partial = await asyncio.to_thread(self._stream.accept, audio)
        if partial:
            await self.push_frame(UserTranscriptFrame(partial, final=False, pts_ns=frame.pts_ns))
        if any(e.kind == "end" for e in events) or self._utterance_samples >= self.max_samples:
            with self.timed():
                text = await asyncio.to_thread(self._stream.finish)
            self._in_utterance = False
            if text:
                await self.push_frame(UserTranscriptFrame(text, final=True, pts_ns=frame.pts_ns))

    async def _recognise(self, audio: np.ndarray, pts_ns: int) -> None:
        wav = io.BytesIO()
        sf.write(wav, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
        try:
            with self.timed():
                text = await self.transcribe(wav.getvalue())
        except Exception as exc:  # a failing backend must not end the session
            log.warning("transcription failed: %s", exc)
            await self.push_frame(ErrorFrame(message=f"speech recognition failed: {exc}", stage=self.name), UP)
            return
        if text.strip():
            await self.push_frame(UserTranscriptFrame(text.strip(), final=True, pts_ns=pts_ns))


def openai_transcriber(base_url: str, model: str = "whisper-1", api_key: str | None = None, timeout_s: float = 20.0) -> Transcribe:
    """An OpenAI-compatible ``/audio/transcriptions`` client (e.g. a faster-whisper server)."""
    import httpx

    url = base_url.rstrip("/") + "/audio/transcriptions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def transcribe(wav: bytes) -> str:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            resp = await client.post(url, headers=headers, data={"model": model}, files={"file": ("speech.wav", wav, "audio/wav")})
            resp.raise_for_status()
            body = resp.json()
            if not isinstance(body, dict) or not isinstance(body.get("text"), str):
                raise ValueError(f"transcription server returned no 'text' field: {str(body)[:200]}")
            return body["text"]

    return transcribe
