"""The speech-recognition slot: an OpenAI-compatible transcription server, started by the test.

The user speaks into the (simulated) microphone; the server sends the stretch of speech to the
transcription endpoint as a WAV upload, and the returned text becomes the user's turn.
"""

import asyncio
import io
import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import websockets

from anima.serve.app import ServeConfig
from anima.serve.protocol import HEADER, BinaryKind
from anima.talker.espeak import EspeakTTS
from anima.testing.server import RepeatingThinker, free_port, running_server

pytestmark = pytest.mark.integration


class Transcriber:
    """A minimal OpenAI-compatible /v1/audio/transcriptions server that checks what it receives."""

    def __init__(self):
        import uvicorn
        from fastapi import FastAPI, File, Form, UploadFile

        self.uploads = []
        app = FastAPI()

        @app.post("/v1/audio/transcriptions")
        async def transcriptions(file: UploadFile = File(...), model: str = Form(...)):  # noqa: B008
            audio, rate = sf.read(io.BytesIO(await file.read()), dtype="float32")
            self.uploads.append((model, rate, audio.size / rate))
            return {"text": "Where are we going, Captain?"}

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=5)


def test_spoken_turn_is_transcribed_and_answered():
    speech = EspeakTTS().synthesize("Where are we going, Captain?", voice="en-us+f3").samples
    chunks = [np.zeros(960, np.float32)] * 10 + [speech[i : i + 960] for i in range(0, speech.size, 960)] + [np.zeros(960, np.float32)] * 40
    with Transcriber() as asr:
        config = ServeConfig(port=0, asr_url=f"http://127.0.0.1:{asr.port}/v1", asr_model="tiny",
                             thinker_factory=lambda hello: RepeatingThinker("To the South Pole, Professor."))
        with running_server(config) as (address, app):

            async def run():
                async with websockets.connect(f"ws://{address}/ws") as ws:
                    await ws.send(json.dumps({"type": "hello", "version": 1}))
                    welcome = json.loads(await ws.recv())
                    assert welcome["speech_recognition"] is True
                    events = []

                    async def receive():
                        async for m in ws:
                            if isinstance(m, str):
                                events.append(json.loads(m))

                    task = asyncio.create_task(receive())
                    t0 = time.monotonic()
                    for i, chunk in enumerate(chunks):
                        pcm = (np.clip(chunk, -1, 1) * 32767).astype("<i2")
                        await ws.send(HEADER.pack(int(BinaryKind.USER_AUDIO), 1, 0, i, 0.0) + pcm.tobytes())
                        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.04 - time.monotonic()))
                    for _ in range(100):
                        if any(e["type"] == "agent_started" for e in events):
                            break
                        await asyncio.sleep(0.05)
                    task.cancel()
                    return events

            events = asyncio.run(run())
    transcripts = [e for e in events if e["type"] == "transcript"]
    assert transcripts and transcripts[0]["text"] == "Where are we going, Captain?" and transcripts[0]["final"]
    started = [e for e in events if e["type"] == "agent_started"]
    assert started and started[0]["text"] == "To the South Pole, Professor."
    model, rate, seconds = asr.uploads[0]
    assert model == "tiny" and rate == 24000 and 1.0 < seconds < 4.0
