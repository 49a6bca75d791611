"""The live server over real WebSockets on loopback: protocol, limits, auth, barge-in, isolation."""

import asyncio
import json
import time

import numpy as np
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anima.serve.app import ServeConfig
from anima.serve.protocol import HEADER, BinaryKind, decode_binary
from anima.talker.espeak import EspeakTTS
from anima.testing.server import RepeatingThinker, running_server

pytestmark = pytest.mark.integration

LONG = ("Beneath the waves the Nautilus glides in silence, and I have watched the forests of the deep sway "
        "in currents no sailor has ever charted, season after season, far from every shore.")


@pytest.fixture(scope="module")
def server():
    config = ServeConfig(port=0, thinker_factory=lambda hello: RepeatingThinker(LONG), rate_per_s=200, burst=200)
    with running_server(config) as (address, app):
        yield address, app


async def hello(ws, **extra):
    await ws.send(json.dumps({"type": "hello", "version": 1, "character": "nemo", **extra}))
    return json.loads(await ws.recv())


async def collect(ws, seconds, until=None):
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            msg = await asyncio.wait_for(ws.recv(), timeout=max(0.01, end - time.monotonic()))
        except TimeoutError:
            break
        out.append(msg if isinstance(msg, bytes) else json.loads(msg))
        if until is not None and until(out[-1]):
            break
    return out


def audio_message(samples, seq=0):
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    return HEADER.pack(int(BinaryKind.USER_AUDIO), 1, 0, seq, 0.0) + pcm.tobytes()


def test_text_turn_streams_audio_motion_and_events(server):
    address, _ = server

    async def run():
        async with websockets.connect(f"ws://{address}/ws") as ws:
            welcome = await hello(ws)
            assert welcome["type"] == "welcome" and welcome["version"] == 1 and welcome["sample_rate"] == 24000
            await ws.send(json.dumps({"type": "text", "text": "Tell me about the sea."}))
            msgs = await collect(ws, 6.0)
        kinds = [decode_binary(m)[0] if isinstance(m, bytes) else m["type"] for m in msgs]
        assert BinaryKind.MOTION in kinds and BinaryKind.AGENT_AUDIO in kinds
        assert "agent_started" in kinds and "words" in kinds
        states = [m["state"] for m in msgs if isinstance(m, dict) and m["type"] == "state"]
        assert "thinking" in states and "speaking" in states
        motion = [decode_binary(m) for m in msgs if isinstance(m, bytes) and decode_binary(m)[0] == BinaryKind.MOTION]
        assert all(m[3].size == 112 + 66 for m in motion)
        pts = [m[2] for m in motion]
        assert pts == sorted(pts) and len(motion) > 100  # 25 motion frames a second, in order

    asyncio.run(run())


def test_barge_in_stops_the_agent_and_no_audio_of_that_turn_follows(server):
    address, app = server
    speech = EspeakTTS().synthesize("Wait, stop, stop please!", voice="en-us+f3").samples

    async def run():
        async with websockets.connect(f"ws://{address}/ws") as ws:
            await hello(ws)
            await ws.send(json.dumps({"type": "text", "text": "Tell me everything."}))
            msgs = await collect(ws, 8.0, until=lambda m: isinstance(m, dict) and m.get("type") == "agent_started")
            turn = next(m["turn"] for m in msgs if isinstance(m, dict) and m.get("type") == "agent_started")
            await asyncio.sleep(1.0)
            # The microphone: 40 ms messages in real time, as the browser sends them.
            chunks = [np.zeros(960, np.float32)] * 5 + [speech[i : i + 960] for i in range(0, speech.size, 960)] + [np.zeros(960, np.float32)] * 15
            interrupted_at, after = None, []
            sender = asyncio.create_task(_send_paced(ws, chunks))
            msgs = await collect(ws, 4.0)
            await sender
            for i, m in enumerate(msgs):
                if isinstance(m, dict) and m["type"] == "interrupt":
                    interrupted_at = i
                if interrupted_at is not None and isinstance(m, bytes):
                    kind, ident, _, _ = decode_binary(m)
                    if kind == BinaryKind.AGENT_AUDIO:
                        after.append(ident)
            assert interrupted_at is not None, "the server detected the barge-in"
            assert turn not in after, "no audio from the interrupted turn after the interruption"
            stopped = [m for m in msgs if isinstance(m, dict) and m["type"] == "agent_stopped"]
            assert stopped and stopped[0]["interrupted"] and len(stopped[0]["heard"]) < len(LONG)

    asyncio.run(run())
    latencies = [x for m in app.state.metrics for x in m["barge_in_latency_s"]]
    for _ in range(50):
        if latencies:
            break
        time.sleep(0.1)
        latencies = [x for m in app.state.metrics for x in m["barge_in_latency_s"]]
    assert latencies and max(latencies) < 0.15


async def _send_paced(ws, chunks):
    t0 = time.monotonic()
    for i, chunk in enumerate(chunks):
        await asyncio.sleep(max(0.0, t0 + i * 0.04 - time.monotonic()))
        await ws.send(audio_message(chunk, i))


def test_protocol_errors_are_reported_and_the_session_survives(server):
    address, _ = server

    async def run():
        async with websockets.connect(f"ws://{address}/ws") as ws:
            await hello(ws)
            bad = ["not json", "[1,2]", json.dumps({"type": "text"}), json.dumps({"type": "text", "text": ""}),
                   json.dumps({"type": "dance"}), json.dumps({"type": "text", "text": "x" * 3000}),
                   json.dumps({"type": "text", "text": "hi", "extra": 1})]
            for b in bad:
                await ws.send(b)
            await ws.send(b"\x07short")
            await ws.send(HEADER.pack(2, 1, 0, 0, 0.0) + b"\x00\x00")
            msgs = await collect(ws, 1.5)
            errors = [m["message"] for m in msgs if isinstance(m, dict) and m["type"] == "error"]
            assert len(errors) == 9
            assert any("not valid JSON" in e for e in errors) and any("unknown message type 'dance'" in e for e in errors)
            assert any("the limit is 2000" in e for e in errors) and any("unknown field(s) extra" in e for e in errors)
            await ws.send(json.dumps({"type": "ping", "t": 5}))
            msgs = await collect(ws, 1.0, until=lambda m: isinstance(m, dict) and m.get("type") == "pong")
            assert msgs[-1] == {"type": "pong", "t": 5}

    asyncio.run(run())


def test_bad_hello_and_rate_limit_close_only_that_session(server):
    address, _ = server

    async def run():
        async with websockets.connect(f"ws://{address}/ws") as good:
            await hello(good)
            async with websockets.connect(f"ws://{address}/ws") as ws:
                await ws.send(json.dumps({"type": "hello", "version": 99}))
                msg = json.loads(await ws.recv())
                assert msg["type"] == "error" and "version 99" in msg["message"]
            async with websockets.connect(f"ws://{address}/ws") as flood:
                await hello(flood)
                with pytest.raises(websockets.ConnectionClosed):
                    for i in range(2000):
                        await flood.send(json.dumps({"type": "ping", "t": i}))
                    await asyncio.wait_for(flood.recv(), 5)
                    while True:
                        await asyncio.wait_for(flood.recv(), 5)
            await good.send(json.dumps({"type": "ping", "t": 1}))
            msgs = await collect(good, 2.0, until=lambda m: isinstance(m, dict) and m.get("type") == "pong")
            assert msgs and msgs[-1]["type"] == "pong", "the well-behaved session is unaffected"

    asyncio.run(run())


def test_non_loopback_needs_a_token_and_it_is_checked():
    with pytest.raises(ValueError, match="--token"):
        from anima.serve.app import create_app

        create_app(ServeConfig(host="0.0.0.0"))
    config = ServeConfig(port=0, token="s3cret", thinker_factory=lambda hello: RepeatingThinker("yes"))
    with running_server(config) as (address, _):
        import httpx

        assert httpx.get(f"http://{address}/").status_code == 401
        assert httpx.get(f"http://{address}/?token=s3cret").status_code == 200

        async def run():
            async with websockets.connect(f"ws://{address}/ws") as ws:
                msg = await hello(ws, token="wrong")
                assert msg["type"] == "error" and "token" in msg["message"]
            async with websockets.connect(f"ws://{address}/ws?token=s3cret") as ws:
                assert (await hello(ws))["type"] == "welcome"

        asyncio.run(run())


messages = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=300),
    st.dictionaries(st.sampled_from(["type", "text", "version", "t", "character"]),
                    st.one_of(st.none(), st.integers(), st.text(max_size=50), st.booleans(), st.lists(st.integers(), max_size=3)),
                    max_size=4).map(json.dumps),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(messages, min_size=1, max_size=12))
def test_fuzzed_input_never_crashes_the_server_or_another_session(server, batch):
    address, _ = server

    async def run():
        async with websockets.connect(f"ws://{address}/ws") as bystander:
            await hello(bystander)
            try:
                async with websockets.connect(f"ws://{address}/ws") as ws:
                    await hello(ws)
                    for m in batch:
                        await ws.send(m)
                    await collect(ws, 0.2)
            except websockets.ConnectionClosed:
                pass
            await bystander.send(json.dumps({"type": "ping", "t": 7}))
            msgs = await collect(bystander, 3.0, until=lambda m: isinstance(m, dict) and m.get("type") == "pong")
            assert msgs and msgs[-1] == {"type": "pong", "t": 7}

    asyncio.run(run())
