"""A loudspeaker-to-microphone echo path for tests and benchmarks: no headset, the agent hears itself.

``EchoingSource`` wraps a session's input source (e.g. ``ScriptedUser``): it listens to the audio
the playout sends back up (``PlayedAudioFrame`` going UP), passes it through a bulk delay
(loudspeaker and capture buffering) and a small room (an exponentially decaying impulse response)
at ``gain_db`` (-10 dB: a laptop's speaker next to its microphone), and adds it to the user's
microphone audio.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from anima.core.frames import NS_PER_S, SAMPLE_RATE, Frame, PlayedAudioFrame, UserAudioFrame


def room_response(seed: int = 0, length_s: float = 0.03, decay_s: float = 0.008, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A direct path plus decaying reflections, unit energy: (N,) float32."""
    rng = np.random.default_rng(seed)
    n = int(length_s * rate)
    h = rng.standard_normal(n) * np.exp(-np.arange(n) / (decay_s * rate)) * 0.3
    h[0] = 1.0
    return (h / np.sqrt(np.sum(h ** 2))).astype(np.float32)


class EchoingSource:
    """An input source whose microphone also picks up the agent's played audio."""

    def __init__(self, inner, delay_s: float = 0.12, gain_db: float = -10.0, seed: int = 0) -> None:
        self.inner = inner
        self.delay = int(round(delay_s * SAMPLE_RATE))
        self.h = room_response(seed) * 10 ** (gain_db / 20)
        self._played: dict[int, np.ndarray] = {}  # start sample -> played samples
        self._tail = np.zeros(0, np.float32)  # convolution tail carried into later samples

    def __getattr__(self, name):  # everything else (clips, finished, ...) is the inner source's
        return getattr(self.inner, name)

    def observe(self, frame: Frame) -> None:
        if isinstance(frame, PlayedAudioFrame):
            self._played[int(round(frame.pts_ns * SAMPLE_RATE / NS_PER_S))] = frame.samples
        self.inner.observe(frame)

    def _echo(self, start: int, n: int) -> np.ndarray:
        """The echo in mic samples [start, start + n): played audio from ``delay`` earlier, through the room."""
        out = np.zeros(n + self.h.size, np.float32)
        lo = start - self.delay - self.h.size
        for s0, x in list(self._played.items()):
            if s0 + x.size < lo - SAMPLE_RATE:
                del self._played[s0]  # long gone
                continue
            a, b = max(s0, start - self.delay - self.h.size + 1), min(s0 + x.size, start - self.delay + n)
            if b <= a:
                continue
            seg = x[a - s0:b - s0]
            y = np.convolve(seg, self.h)  # lands at mic index a + delay ...
            i = a + self.delay - start
            j0, j1 = max(0, i), min(n, i + y.size)
            if j1 > j0:
                out[j0:j1] += y[j0 - i:j1 - i]
        return out[:n]

    def frames_for_tick(self, pts_ns: int, tick_ns: int) -> list[Frame]:
        frames = self.inner.frames_for_tick(pts_ns, tick_ns)
        out = []
        for f in frames:
            if isinstance(f, UserAudioFrame):
                start = int(round(f.pts_ns * SAMPLE_RATE / NS_PER_S))
                f = dataclasses.replace(f, samples=(f.samples + self._echo(start, f.samples.size)).astype(np.float32))
            out.append(f)
        return out

    def finished(self, now_ns: int) -> bool:
        return self.inner.finished(now_ns)
