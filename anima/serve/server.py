"""Run the app with uvicorn, with the limits a public server needs.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a connection that
never completes its request line and headers (a raw TCP connect, a half-sent request) is kept
forever: 1,100 of them exhausted a 1,024-descriptor table and stopped the server from accepting
anyone. ``GuardedH11Protocol`` closes a connection whose request has not arrived within
``HEADER_TIMEOUT_S``, and keeps at most ``max_pending`` such connections open at once (a new one
pushes out the oldest), so idle sockets can never hold more than a fraction of the descriptors a
real visitor needs. WebSockets that never say hello are closed by the app (``hello_timeout_s``).
"""

from __future__ import annotations

import asyncio
import resource
from collections import OrderedDict

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from anima.serve.limits import install_repeat_filter, log_limited, raise_fd_limit

HEADER_TIMEOUT_S = 10.0  # a request line and headers must arrive this soon after connecting
KEEP_ALIVE_S = 5.0  # an idle HTTP/1.1 connection between requests
WS_MAX_BYTES = 64 * 1024  # largest WebSocket message (protocol.MAX_MESSAGE_BYTES)


def default_max_pending() -> int:
    """A quarter of the descriptor table (at least 16, at most 512) for connections without a request."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(16, min(512, soft // 4))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus a deadline and a cap for connections without a request."""

    header_timeout_s = HEADER_TIMEOUT_S
    max_pending = default_max_pending()
    _pending: OrderedDict[GuardedH11Protocol, None] = OrderedDict()  # oldest first; one event loop per process

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout_s, self._header_timeout)
        pending = GuardedH11Protocol._pending
        pending[self] = None
        while len(pending) > self.max_pending:
            oldest, _ = pending.popitem(last=False)
            log_limited("closed the oldest of %d connections that have sent no request yet", len(pending) + 1)
            oldest._give_up()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None:  # headers arrived: a request is running
            self._settled()

    def connection_lost(self, exc: Exception | None) -> None:
        self._settled()
        super().connection_lost(exc)

    def _settled(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        GuardedH11Protocol._pending.pop(self, None)

    def _header_timeout(self) -> None:
        self._header_deadline = None
        if self.cycle is None:
            log_limited("closed a connection that sent no complete request within %.0f s", self.header_timeout_s)
            self._give_up()

    def _give_up(self) -> None:
        self._settled()
        # After an upgrade the transport belongs to the WebSocket protocol: leave it alone.
        if not self.transport.is_closing() and self.transport.get_protocol() is self:
            self.transport.close()


def uvicorn_config(app, host: str, port: int, workers: int = 1) -> uvicorn.Config:
    """The uvicorn settings ``anima serve`` and the test server share.

    ``app`` is the application, or with ``workers > 1`` the import string of a factory that builds
    one in each worker process.
    """
    raise_fd_limit()
    install_repeat_filter()
    return uvicorn.Config(app, host=host, port=port, log_level="warning", http=GuardedH11Protocol,
                          timeout_keep_alive=int(KEEP_ALIVE_S), ws_max_size=WS_MAX_BYTES,
                          ws_per_message_deflate=False,  # audio and motion do not compress: deflate only cost CPU
                          workers=workers, factory=workers > 1)


def serve_forever(app, host: str, port: int, workers: int = 1) -> None:
    """Serve until interrupted: in this process, or in ``workers`` processes sharing one socket."""
    config = uvicorn_config(app, host, port, workers)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()
