"""Who may use the server: the token (query, cookie or hello), the WebSocket Origin allow-list.

Threat model (docs/security.md): any web page the visitor opens can make their browser connect to
``ws://127.0.0.1:8765/ws``; browsers always send an ``Origin`` header with it, so a WebSocket whose
Origin is not this server's own (or an allowed one) is refused before the handshake completes.
Clients that are not browsers send no Origin and cannot be driven by a page, so they pass this
check (and still need the token where one is set).
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

TOKEN_COOKIE = "anima_token"  # set by the page when opened with ?token=..., sent with every asset and the WebSocket


def check_token(expected: str | None, *offered: str | None) -> bool:
    """True when no token is configured, or any offered token matches (constant-time compare)."""
    if expected is None:
        return True
    return any(o is not None and secrets.compare_digest(o.encode(), expected.encode()) for o in offered)


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, for comparing Origin headers and --allow-origin values."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"an origin looks like http://host:port, got {origin!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_allowed(origin: str | None, host: str | None, allowed: frozenset[str]) -> bool:
    """Whether a WebSocket from page ``origin`` may connect to this server (reached as ``host``).

    Same origin (the page this server served) is always allowed; others only when listed.
    ``Origin: null`` (sandboxed frames, files) is refused.
    """
    if origin is None:
        return True  # not a browser
    try:
        origin = normalise_origin(origin)
    except ValueError:
        return False
    if origin in allowed:
        return True
    return host is not None and urlsplit(origin).netloc == host.lower()
