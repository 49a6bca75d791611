"""Bounded logging for the server: one line per kind of event per interval, never a flood.

A burst of refused connections or an exhausted file-descriptor table makes asyncio and uvicorn log
one traceback per socket (hundreds of thousands of lines a minute). ``RepeatFilter`` lets the first
record of each kind through in every interval and counts the rest; the count is reported on the
next record of that kind that passes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

log = logging.getLogger("anima.serve")
INTERVAL_S = 10.0


class RepeatFilter(logging.Filter):
    """Pass the first record of each (logger, message template) per ``interval_s``; count the rest."""

    def __init__(self, interval_s: float = INTERVAL_S, max_kinds: int = 1024) -> None:
        super().__init__()
        self.interval_s, self.max_kinds = interval_s, max_kinds
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # kind -> (time passed, suppressed since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        with self._lock:
            passed, suppressed = self._last.get(key, (-float("inf"), 0))
            if now - passed < self.interval_s:
                self._last[key] = (passed, suppressed + 1)
                return False
            if len(self._last) >= self.max_kinds:  # bounded memory: forget the oldest kinds
                for old in sorted(self._last, key=lambda k: self._last[k][0])[: self.max_kinds // 2]:
                    del self._last[old]
            self._last[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} [{suppressed} more like this in the last {now - passed:.0f} s]"
        return True


_FILTER = RepeatFilter()


def install_repeat_filter(*logger_names: str) -> RepeatFilter:
    """Attach the shared filter to the handlers' loggers that can flood (asyncio, uvicorn, ours)."""
    for name in logger_names or ("asyncio", "uvicorn", "uvicorn.error", "uvicorn.access", "anima", "websockets"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    return _FILTER


def log_limited(message: str, *args: object) -> None:
    """A warning that is logged at most once per interval per message template."""
    install_repeat_filter("anima.serve")
    log.warning(message, *args)


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (idle sockets must not starve visitors)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        with contextlib.suppress(OSError, ValueError):  # not allowed here: keep the limit we have
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
