"""``anima serve --workers N``: several server processes share the port, each a whole server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time

import httpx
import pytest
import websockets

from anima.serve.app import ServeConfig, config_to_env
from anima.testing.server import RepeatingThinker, free_port

pytestmark = pytest.mark.integration


def test_worker_config_travels_as_json_and_refuses_a_custom_thinker() -> None:
    config = ServeConfig(port=1234, allow_origins=("http://a.test:1",), face="unils")
    fields = json.loads(config_to_env(config))
    assert fields["port"] == 1234 and fields["allow_origins"] == ["http://a.test:1"] and fields["face"] == "unils"
    with pytest.raises(ValueError, match="workers=1"):
        config_to_env(ServeConfig(thinker_factory=lambda hello: RepeatingThinker("Aye.")))


def test_two_workers_serve_sessions_in_two_processes(tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "ANIMA_HOME": str(tmp_path)}
    server = subprocess.Popen([sys.executable, "-m", "anima.cli", "serve", "--workers", "2", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json() == {"ok": True}:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        time.sleep(10)  # both workers warm

        async def run() -> list[int]:
            # Which process accepts a connection on a shared socket is up to the kernel; a process busy
            # with open sessions accepts less, so sessions opened one after another, kept open, spread.
            # Session numbers count per worker: a number seen twice means two processes served.
            sessions: list[int] = []
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(16):
                    ws = await stack.enter_async_context(websockets.connect(f"ws://127.0.0.1:{port}/ws"))
                    await ws.send(json.dumps({"type": "hello", "version": 1, "character": "nemo"}))
                    welcome = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    assert welcome["type"] == "welcome"
                    sessions.append(welcome["session"])
                    if len(set(sessions)) < len(sessions):
                        break
                    await asyncio.sleep(0.3)
            return sessions

        sessions = asyncio.run(run())
        assert len(set(sessions)) < len(sessions), sessions
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert "Traceback" not in out, out[-3000:]
