"""A local OpenAI-compatible chat server for tests of what talks to the LLM slot (loopback only).

    with chat_server(lambda body: reply(json.dumps({"rewards": [3, 2]}))) as url:
        client = ChatClient(LLMConfig(url, stream=False))

``answer(body)`` gets each request's JSON body and returns (HTTP status, JSON body); ``reply(text)``
is the plain 200 answer carrying ``text`` as the assistant's message. Non-streaming only.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reply(content: str) -> tuple[int, dict]:
    """A 200 chat completion whose message is ``content``."""
    return 200, {"choices": [{"message": {"role": "assistant", "content": content}}]}


@contextlib.contextmanager
def chat_server(answer: Callable[[dict], tuple[int, dict]]) -> Iterator[str]:
    """Serve ``answer`` on a free loopback port; yields the base URL (``http://127.0.0.1:PORT/v1``)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            status, body = answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
