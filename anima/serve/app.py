"""``anima serve``: the live duplex server. One process, many sessions, one WebSocket each.

Each connection gets its own runtime session (turn-taking, Thinker, Talker, playout, face, body)
paced by the wall clock, and a ``ClientSink`` that streams agent audio, motion and events back.
The web client in ``anima/render/web`` is served from ``/``. Security: loopback by default; any
other bind address needs a token, checked on every HTTP request and WebSocket connection; message
size and rate limits; every client message validated, with the error sent back; a misbehaving
session is closed without touching the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import itertools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse

from anima.core.clock import MediaClock
from anima.core.frames import NS_PER_S
from anima.core.history import ConversationHistory
from anima.core.metrics import Lateness
from anima.core.session import Session
from anima.registry import BODIES, ENGINES, FACES, TALKERS, THINKERS, AgentChoice, ThinkerSpec
from anima.serve.access import TOKEN_COOKIE, check_token, normalise_origin, origin_allowed
from anima.serve.limits import log_limited
from anima.serve.live import ClientSink, LiveInput, TranscriptionStage, openai_transcriber
from anima.serve.protocol import (
    HEADER,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    BinaryKind,
    Hello,
    ProtocolError,
    new_visitor_id,
    parse_forget,
    parse_hello,
    parse_json,
    parse_ping,
    parse_rate,
    parse_text,
    parse_user_audio,
)
from anima.serve.reactions import ReactionTap, rate_live
from anima.thinker.base import Thinker

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parents[1] / "render" / "web"
WEB_FILES = {"index.html": "text/html", "app.js": "text/javascript", "avatar.js": "text/javascript", "mic-worklet.js": "text/javascript", "style.css": "text/css"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# espeak-ng voices per character (any other character speaks with the default).
CHARACTER_VOICES = {"nemo": "en-gb+m3", "aronnax": "en-gb-x-rp+m1", "conseil": "en-gb+m5", "ned": "en-us+m7"}
DEFAULT_VOICE = "en-gb+m3"
LIVE_SESSION_MAX_S = 24 * 3600.0


@dataclass
class ServeConfig:
    """How the server runs; every field has a safe default."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # required when host is not loopback
    thinker: str = "story"  # a live registry.THINKERS name, or a custom factory below
    world: Path | None = None  # story thinker's world database (default: the shipped one)
    engine: str = "cascade"  # registry.ENGINES
    talker: str = "espeak"  # registry.TALKERS
    face: str = "procedural"  # registry.FACES
    body: str = "procedural"  # registry.BODIES (one body per session: the procedural one costs no weights)
    asr: str = "pocketsphinx"  # local speech recognition: "pocketsphinx" (offline, adapted to the world) or "none"
    agent_interrupts: bool = True  # the character cuts a visitor off past its patience or on its urgent words
    asr_url: str | None = None  # OpenAI-compatible transcription server, e.g. http://127.0.0.1:9000/v1 (replaces asr)
    asr_model: str = "whisper-1"
    max_sessions: int = 16  # counted from the WebSocket handshake on, so a burst of connections cannot pass it
    allow_origins: tuple[str, ...] = ()  # page origins besides this server's own that may open the WebSocket
    api_docs: bool = False  # serve /docs, /redoc and /openapi.json
    audio_lead_s: float = 1.0  # how far a client's microphone audio may run ahead of real time
    rate_per_s: float = 80.0  # client messages per second (microphone sends 25)
    burst: int = 80
    text_per_s: float = 0.5  # typed messages per second (each one is a user turn the thinker answers and voices)
    text_burst: int = 3
    max_errors: int = 10  # protocol errors before the session is closed
    max_outgoing: int = 2000  # queued messages before a slow client is dropped
    hello_timeout_s: float = 10.0
    thinker_factory: Callable[[Hello], Thinker] | None = field(default=None, repr=False)

    def check(self) -> None:
        """Raise ValueError on an unknown backend name or an exposed bind address without a token."""
        self.agent(hello=None, seed=0, voice=DEFAULT_VOICE).check(live=self.thinker_factory is None)
        for origin in self.allow_origins:
            normalise_origin(origin)
        if self.asr not in ASR_CHOICES:
            raise ValueError(f"unknown speech recogniser {self.asr!r}; choose one of {', '.join(ASR_CHOICES)}")
        if self.host not in LOOPBACK and not self.token:
            raise ValueError(f"binding {self.host} exposes the server beyond this machine: pass --token SECRET (clients must send it)")


    def agent(self, hello: Hello | None, seed: int, voice: str) -> AgentChoice:
        """The registry choice for one session (the visitor's character and story time)."""
        spec = ThinkerSpec(world=self.world)
        if hello is not None:
            spec.character, spec.story_time, spec.visitor = hello.character, hello.story_time, hello.visitor
        return AgentChoice(engine=self.engine, thinker=self.thinker, talker=self.talker, face=self.face,
                           body=self.body, voice=voice, seed=seed, thinker_spec=spec)


class _RateLimiter:
    """Token bucket: ``rate`` messages a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.capacity = rate, float(burst)
        self.tokens, self.last = float(burst), time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _default_thinker(config: ServeConfig, hello: Hello, choice: AgentChoice) -> Thinker:
    if config.thinker_factory is not None:
        return config.thinker_factory(hello)
    return THINKERS.create(choice.thinker, spec=choice.thinker_spec)


def _forget(thinker: Thinker) -> dict[str, int]:
    """Delete what ``thinker`` remembers of its visitor; row counts (zeros for a thinker without memory)."""
    forget = getattr(thinker, "forget", None)
    if forget is None:
        return {"sessions": 0, "turns": 0, "facts": 0}
    gone = forget()
    return {"sessions": gone.sessions, "turns": gone.turns, "facts": gone.facts}


def warm_up(config: ServeConfig) -> float:
    """Load everything a session needs before the first visitor, then freeze it out of the GC.

    The first visitor's welcome no longer waits for models (it took 3 s), and the garbage
    collector's full passes no longer scan the loaded world, embedder and weights (they grew to
    266 ms and stalled every session at once). Returns the seconds it took.
    """
    start = time.perf_counter()
    choice = config.agent(Hello(visitor=new_visitor_id()), seed=0, voice=DEFAULT_VOICE)
    if config.thinker_factory is None:
        thinker = THINKERS.create(choice.thinker, spec=choice.thinker_spec)
        thinker.respond("Hello, who are you?")  # loads the embedder and the retriever's vectors
        _forget(thinker)
        getattr(thinker, "close", lambda: None)()
    if choice.engine == "mot":  # one model is talker, face and body: load (and check) its weights now
        from anima.e2e.mot.engine import MoTAgent

        agent = MoTAgent.load(voice=choice.voice, seed=0)
        face, body, talker = agent.face, agent.body, agent.talker
    else:
        face, body = FACES.create(choice.face, seed=0), BODIES.create(choice.body, seed=0)
        talker = TALKERS.create(choice.talker, voice=choice.voice)  # loads a neural voice's weights once
    if "torch" in sys.modules:
        import torch

        # Sessions take turns on one event loop and each model is small: intra-op threads would only
        # fight the other sessions' work for the two cores (the learned face ran fastest on one).
        torch.set_num_threads(1)
    for _ in talker.stream("Ready."):  # first-call allocations (and the speech engine) before any visitor
        pass
    if speech_recognition(config) and not config.asr_url:
        local_recognizer(config.asr, config.world).new_stream()  # builds the domain (cached on disk) once
    silence = np.zeros(960, dtype=np.float32)
    for k in range(5):
        face.step(k * 0.04, silence, silence)
        body.next_frame()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - start


ASR_CHOICES = ("pocketsphinx", "none")


def speech_recognition(config: ServeConfig) -> bool:
    return bool(config.asr_url) or config.asr != "none"


_RECOGNIZERS: dict[tuple[str, str | None], Any] = {}
_RECOGNIZERS_LOCK = threading.Lock()


def local_recognizer(kind: str, world: Path | None):
    """The process's shared recogniser; sessions each open a stream.

    It decodes in a child process (``anima.asr.process``): PocketSphinx keeps the GIL while it
    decodes, which from a thread would still stall every session's clock (benchmarks/serve_load.py).
    """
    from anima.asr.process import ProcessRecognizer

    key = (kind, None if world is None else str(world))
    with _RECOGNIZERS_LOCK:
        recognizer = _RECOGNIZERS.get(key)
        if recognizer is None:
            recognizer = _RECOGNIZERS[key] = ProcessRecognizer(kind, world=world)
    return recognizer


def _build_stages(config: ServeConfig, choice: AgentChoice, thinker: Thinker, sink: ClientSink) -> tuple[list, ConversationHistory]:
    history = ConversationHistory()
    asr: list = []
    if config.asr_url:
        asr.append(TranscriptionStage(openai_transcriber(config.asr_url, config.asr_model)))
    elif config.asr != "none":
        asr.append(TranscriptionStage(recognizer=local_recognizer(config.asr, config.world)))
    engine = ENGINES.create(choice.engine, choice=choice, history=history, thinker=thinker)
    persona = getattr(thinker, "persona", None)
    if config.agent_interrupts and persona is not None:
        from anima.core.duplex import TurnTaking
        from anima.thinker.interjector import persona_interjector, thinker_interjector

        interjector = thinker_interjector(thinker) if hasattr(thinker, "story_time") else persona_interjector(persona)
        for stage in engine:
            if isinstance(stage, TurnTaking):
                stage.interjector = interjector
    # The user's prosody per turn (for the session's rating), right after the turn-taking stage.
    turns = next((i + 1 for i, stage in enumerate(engine) if stage.name == "turns"), None)
    if turns is not None:
        engine.insert(turns, ReactionTap())
    # The recogniser goes after the echo canceller (it must hear the user, not the agent), else first.
    at = next((i + 1 for i, stage in enumerate(engine) if stage.name == "echo"), 0)
    return [*engine[:at], *asr, *engine[at:], sink], history


WORKER_CONFIG_ENV = "ANIMA_SERVE_CONFIG"  # the ServeConfig (JSON) a worker process builds its app from


def config_to_env(config: ServeConfig) -> str:
    """The plain fields of ``config`` as JSON, for worker processes (a custom thinker factory cannot travel)."""
    if config.thinker_factory is not None:
        raise ValueError("a custom thinker_factory cannot run in worker processes; use workers=1")
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "thinker_factory"}
    fields["world"] = None if config.world is None else str(config.world)
    fields["allow_origins"] = list(config.allow_origins)
    return json.dumps(fields)


def worker_app() -> FastAPI:
    """The app of one worker process of ``anima serve --workers N`` (uvicorn's factory).

    Each worker is a whole server of its own (its event loop on its own core, its sessions, its
    limits), warmed up before it accepts; the kernel spreads new connections over the workers.
    """
    from anima.serve.limits import install_repeat_filter, raise_fd_limit

    raise_fd_limit()
    install_repeat_filter()
    fields = json.loads(os.environ[WORKER_CONFIG_ENV])
    fields["world"] = None if fields["world"] is None else Path(fields["world"])
    fields["allow_origins"] = tuple(fields["allow_origins"])
    config = ServeConfig(**fields)
    app = create_app(config)
    warm_up(config)
    return app


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI application (used by ``anima serve`` and by tests with uvicorn)."""
    config = config or ServeConfig()
    config.check()
    docs = {} if config.api_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="anima", version=str(PROTOCOL_VERSION), **docs)
    app.state.config = config
    app.state.sessions = {}
    app.state.admitted = 0  # WebSockets past the handshake (the session limit counts these)
    allowed_origins = frozenset(normalise_origin(o) for o in config.allow_origins)
    app.state.metrics = []  # one dict per finished session (for the load benchmark)
    ids = itertools.count(1)

    def authorised(request: Request | WebSocket, *more: str | None) -> bool:
        return check_token(config.token, request.query_params.get("token"), request.cookies.get(TOKEN_COOKIE), *more)

    @app.get("/")
    async def index(request: Request) -> FileResponse:
        if not authorised(request):
            raise HTTPException(status_code=401, detail="missing or wrong token")
        page = FileResponse(WEB_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"})
        if config.token is not None:
            # The page's assets, audio worklet and WebSocket then carry the token without a query string.
            page.set_cookie(TOKEN_COOKIE, config.token, httponly=True, samesite="strict", path="/")
        return page

    @app.get("/static/{name}")
    async def static(name: str, request: Request) -> FileResponse:
        if not authorised(request):
            raise HTTPException(status_code=401, detail="missing or wrong token")
        if name not in WEB_FILES:
            raise HTTPException(status_code=404, detail=f"no file {name!r}")
        return FileResponse(WEB_DIR / name, media_type=WEB_FILES[name])

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"ok": True})  # nothing about sessions or visitors: anyone may ask

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), allowed_origins):
            # Refused before the handshake completes (the browser sees HTTP 403): a page from another
            # origin must not drive this server or read a visitor's conversation.
            log_limited("refused a WebSocket from origin %r", ws.headers.get("origin"))
            await ws.close(code=1008)
            return
        # Counted before the first await, so connections opened together cannot all pass the limit.
        admitted = app.state.admitted < config.max_sessions
        if admitted:
            app.state.admitted += 1
        session_id = next(ids)
        try:
            await ws.accept()
            if not admitted:
                await _close(ws, 1013, f"server busy: {config.max_sessions} sessions already")
                return
            await _serve_session(ws, session_id)
        except WebSocketDisconnect:
            pass
        except Exception:  # one session's failure never touches the others
            log.exception("session %d failed", session_id)
            with contextlib.suppress(Exception):
                await ws.close(code=1011)
        finally:
            if admitted:
                app.state.admitted -= 1
            app.state.sessions.pop(session_id, None)

    async def _close(ws: WebSocket, code: int, message: str) -> None:
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps({"type": "error", "message": message, "fatal": True}))
            await ws.close(code=code)

    async def _serve_session(ws: WebSocket, session_id: int) -> None:
        try:
            raw = await asyncio.wait_for(ws.receive_text(), timeout=config.hello_timeout_s)
            hello = parse_hello(parse_json(raw))
        except TimeoutError:
            await _close(ws, 1008, "no hello within the time limit")
            return
        except ProtocolError as exc:
            await _close(ws, 1008, str(exc))
            return
        except (KeyError, RuntimeError):
            await _close(ws, 1008, "the first message must be a JSON text message 'hello'")
            return
        if not authorised(ws, hello.token):
            await _close(ws, 1008, "missing or wrong token")
            return
        if hello.visitor is None:
            hello.visitor = new_visitor_id()  # a new visitor: empty memory; the welcome tells the client its id
        choice = config.agent(hello, seed=session_id, voice=CHARACTER_VOICES.get(hello.character, DEFAULT_VOICE))
        try:
            thinker = await asyncio.to_thread(_default_thinker, config, hello, choice)
        except (ValueError, KeyError) as exc:
            await _close(ws, 1008, f"cannot start this session: {exc}")
            return

        outgoing: asyncio.Queue[Any] = asyncio.Queue()
        overflow = asyncio.Event()

        def send(message: Any) -> None:
            if outgoing.qsize() >= config.max_outgoing:
                overflow.set()
                return
            outgoing.put_nowait(message)

        clock = MediaClock(realtime=True)
        live = LiveInput(clock, max_lead_s=config.audio_lead_s)
        # Off the event loop: a learned body or face loads its weights here (hundreds of ms), and
        # every other session's audio and motion must keep flowing meanwhile.
        stages, history = await asyncio.to_thread(_build_stages, config, choice, thinker, ClientSink(send))
        session = Session(stages, live, clock, history, max_duration_s=LIVE_SESSION_MAX_S)
        app.state.sessions[session_id] = session
        await ws.send_text(json.dumps({
            "type": "welcome", "version": PROTOCOL_VERSION, "session": session_id, "sample_rate": 24000, "fps": 25,
            "character": hello.character, "story_time": hello.story_time, "speech_recognition": speech_recognition(config),
            "visitor": hello.visitor,
        }))

        sent_late = Lateness()  # motion frames, as handed to the socket

        async def writer() -> None:
            while True:
                message = await outgoing.get()
                if isinstance(message, bytes):
                    if message[0] == BinaryKind.MOTION:  # how late the server hands this tick's motion to the socket
                        sent_late.add(clock.now_ns() / NS_PER_S - HEADER.unpack_from(message)[4])
                    await ws.send_bytes(message)
                else:
                    await ws.send_text(message if isinstance(message, str) else json.dumps(message))

        async def reader() -> str:
            limiter, errors = _RateLimiter(config.rate_per_s, config.burst), 0
            typing = _RateLimiter(config.text_per_s, config.text_burst)
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return "disconnected"
                if not limiter.allow():
                    return "rate limit exceeded"
                try:
                    if message.get("bytes") is not None:
                        data = message["bytes"]
                        live.add_audio(parse_user_audio(data))
                    else:
                        text = message.get("text") or ""
                        if len(text) > MAX_MESSAGE_BYTES:
                            raise ProtocolError(f"message too large ({len(text)} bytes; limit {MAX_MESSAGE_BYTES})")
                        msg = parse_json(text)
                        match msg["type"]:
                            case "text":
                                text = parse_text(msg)
                                if not typing.allow():
                                    raise ProtocolError(f"typing too fast: at most {config.text_per_s:g} message(s) a second; "
                                                        "this one was dropped")
                                live.add_text(text)
                            case "ping":
                                send({"type": "pong", "t": parse_ping(msg)})
                            case "forget":
                                parse_forget(msg)
                                send({"type": "forgotten", **await asyncio.to_thread(_forget, thinker)})
                                history.turns.clear()
                            case "rate":
                                rating = parse_rate(msg)
                                tap = next((s for s in stages if isinstance(s, ReactionTap)), None)
                                try:
                                    send(await asyncio.to_thread(rate_live, thinker, tap, history, rating))
                                except ValueError as exc:  # nothing to rate yet, or the session was forgotten
                                    raise ProtocolError(f"rate: {exc}") from None
                            case other:
                                raise ProtocolError(f"unknown message type {other!r}; expected text, ping, forget or rate")
                except ProtocolError as exc:
                    errors += 1
                    send({"type": "error", "message": str(exc)})
                    if errors >= config.max_errors:
                        return f"too many protocol errors ({errors})"

        run_task = asyncio.create_task(session.run())
        write_task = asyncio.create_task(writer())
        read_task = asyncio.create_task(reader())
        overflow_task = asyncio.create_task(overflow.wait())
        done, _ = await asyncio.wait({run_task, write_task, read_task, overflow_task}, return_when=asyncio.FIRST_COMPLETED)
        reason = "session ended"
        if read_task in done and not read_task.cancelled() and read_task.exception() is None:
            reason = read_task.result()
        elif overflow_task in done:
            reason = "client too slow: outgoing queue full"
        live.closed = True
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(run_task), timeout=5)
        for task in (write_task, read_task, overflow_task, run_task):
            task.cancel()
        close = getattr(thinker, "close", None)
        if close is not None:  # the thinker's database connection, off the event loop
            with contextlib.suppress(Exception):
                await asyncio.to_thread(close)
        m = session.pipeline.metrics
        app.state.metrics.append({
            "session": session_id, "reason": reason, "reply_latency_s": list(m.reply_latency_s),
            "barge_in_latency_s": list(m.barge_in_latency_s), "underrun_ticks": m.underrun_ticks, "late_ticks": m.late_ticks,
            "tick_lateness": dataclasses.asdict(m.tick_lateness), "motion_sent_late": dataclasses.asdict(sent_late),
            "history": [(t.speaker, t.text, t.interrupted) for t in history.turns],
        })
        if reason not in ("disconnected", "session ended"):
            await _close(ws, 1008, reason)
        else:
            with contextlib.suppress(Exception):
                await ws.close()

    return app
