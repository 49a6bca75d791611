"""Frame kinds and their interruption behaviour.

A frame's class decides what an interruption does to it, so no stage has to work it out:

- ``SystemFrame``: jumps every queue and is never dropped (interruptions, turn events, state).
- ``DataFrame`` / ``ControlFrame``: kept in order in bounded queues; dropped when an interruption
  passes, unless the class also derives from ``UninterruptibleFrame`` (user input, clock ticks, the
  per-tick face/body/video output: things that belong to the timeline rather than to a reply).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

_frame_ids = itertools.count()

NS_PER_S = 1_000_000_000


@dataclass
class Frame:
    """Base of every frame. ``pts_ns`` is the media time (session clock) the frame refers to."""

    pts_ns: int = field(default=0, kw_only=True)
    id: int = field(init=False, repr=False, compare=False)
    # Interruption generation of the stage that pushed it; set by the runtime, never by callers.
    epoch: int = field(init=False, default=-1, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.id = next(_frame_ids)

    @property
    def pts_s(self) -> float:
        return self.pts_ns / NS_PER_S

    @property
    def interruptible(self) -> bool:
        return not isinstance(self, (SystemFrame, UninterruptibleFrame))

    def __str__(self) -> str:
        return f"{type(self).__name__}#{self.id}(pts={self.pts_s:.3f}s)"


class SystemFrame(Frame):
    """Bypasses queues, handled at once, never dropped."""


class DataFrame(Frame):
    """Media or content, queued in order; dropped on interruption unless uninterruptible."""


class ControlFrame(Frame):
    """Control signal, queued in order with the data it controls."""


class UninterruptibleFrame:
    """Marker mixin: a queued frame that survives interruptions."""
