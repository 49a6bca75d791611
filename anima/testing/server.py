"""Run the live server in a background thread for tests and benchmarks (loopback only)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from anima.core.plan import ActionPlan
from anima.thinker.base import ThinkerContext


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RepeatingThinker:
    """A stand-in Thinker for server tests: always answers with the same plan."""

    def __init__(self, speech: str, gesture: str = "respond") -> None:
        self.plan = ActionPlan(speech, gesture=gesture)

    def respond(self, utterance: str, context: ThinkerContext) -> ActionPlan:
        return self.plan


@contextlib.contextmanager
def running_server(config) -> Iterator[tuple[str, object]]:
    """Start ``create_app(config)`` with uvicorn on 127.0.0.1; yields (base_url, app)."""
    import uvicorn

    from anima.serve.app import create_app
    from anima.serve.server import uvicorn_config

    app = create_app(config)
    port = config.port if config.port else free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start within 20 s")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
