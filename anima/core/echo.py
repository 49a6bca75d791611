"""Acoustic echo cancellation: the agent must not hear (and barge in on) its own voice.

Without a headset the loudspeaker's sound reaches the microphone. The playout sends every tick
of audio it played back up the pipeline (``PlayedAudioFrame`` travelling UP); this stage, at the
head of the pipeline, keeps that *reference* and removes its echo from the user's audio before the
voice activity detector and the speech recogniser see it.

The canceller is a partitioned-block frequency-domain adaptive filter (PBFDAF: overlap-save, one
NLMS step per 20 ms block, the gradient constrained to a linear convolution), the algorithm inside
SpeexDSP's and WebRTC's cancellers, covering echo paths (loudspeaker and capture buffering + room) from
``ref_delay_s`` (60 ms) to ``ref_delay_s + tail_s`` (360 ms) long. Adaptation freezes while the user talks over the agent (double talk: the residual much
louder than the echo estimate once the filter has converged), so their voice does not untrain it.
A residual suppressor then zeroes blocks the echo estimate explains (residual below
``suppress_ratio`` times it): what is left of the echo after the filter is quieter than the
detector's threshold would need. The user's voice over the echo passes: it is louder than the
echo estimate.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from anima.core.frames import NS_PER_S, SAMPLE_RATE, Frame, PlayedAudioFrame, UserAudioFrame
from anima.core.stage import DOWN, UP, Direction, Stage


class EchoCanceller:
    """Streaming echo canceller for one session: ``add_reference`` the played audio, ``process`` the mic."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, block_s: float = 0.02, tail_s: float = 0.3,
                 ref_delay_s: float = 0.06, step: float = 0.8, suppress_ratio: float = 2.0) -> None:
        if not 0 < step <= 1:
            raise ValueError(f"EchoCanceller: step must be in (0, 1], got {step}")
        self.rate = sample_rate
        self.B = int(round(block_s * sample_rate))  # block (hop) in samples
        self.K = max(1, int(np.ceil(tail_s * sample_rate / self.B)))  # partitions
        self.step, self.suppress_ratio = step, suppress_ratio
        # The played audio comes back up the pipeline a tick or two after the microphone audio of the
        # same moment, so the filter reads the reference ref_delay_s late: it covers echo paths
        # ref_delay_s .. ref_delay_s + tail_s long (a loudspeaker's sound needs >= 60 ms to come back
        # through the playback and capture buffers of any real device).
        self.ref_delay = int(round(ref_delay_s * sample_rate))
        bins = self.B + 1  # rfft of 2B samples
        self.W = np.zeros((self.K, bins), np.complex128)  # (K, B + 1) filter partitions
        self.X: deque[np.ndarray] = deque([np.zeros(bins, np.complex128)] * self.K, maxlen=self.K)  # newest first
        self.power = np.full(bins, 1e-6)  # smoothed reference power per bin
        self._ref = np.zeros(0, np.float32)  # reference not yet consumed (aligned to the mic stream)
        self._ref_start = 0  # stream sample index of _ref[0]
        self._prev_ref = np.zeros(self.B, np.float32)  # the block before the current one (overlap-save)
        self._mic = np.zeros(0, np.float32)  # mic samples waiting for a full block
        self._mic_start: int | None = None  # stream sample index of _mic[0]
        self._out: deque[np.ndarray] = deque()
        self.echo_power = 0.0  # smoothed power of the echo estimate (diagnostics)
        self.residual_power = 0.0
        self.erle_db = 0.0  # smoothed echo-return-loss enhancement while only the echo is present
        self._converged = False  # the filter once explained the echo well (ERLE > 6 dB): double talk is detectable
        self._double_talk_blocks = 0
        self.max_double_talk_s = 2.0
        self._ref_powers: deque[float] = deque([0.0], maxlen=self.K)  # reference power of the blocks the tail covers
        self._learning_s = 0.0  # seconds of played audio seen so far
        self.learn_s = 2.0

    def _index(self, pts_ns: int) -> int:
        return int(round(pts_ns * self.rate / NS_PER_S))

    def add_reference(self, samples: np.ndarray, pts_ns: int) -> None:
        """Audio the loudspeaker played from media time ``pts_ns`` on (silence may be skipped)."""
        start = self._index(pts_ns)
        samples = np.asarray(samples, np.float32)
        end_have = self._ref_start + self._ref.size
        if self._ref.size == 0:
            self._ref, self._ref_start = samples.copy(), start
            return
        if start > end_have:  # a gap: the agent played nothing there
            self._ref = np.concatenate([self._ref, np.zeros(start - end_have, np.float32)])
        elif start < end_have:  # overlap (should not happen): keep what we have
            samples = samples[end_have - start:]
        self._ref = np.concatenate([self._ref, samples])

    def _reference_block(self, start: int) -> np.ndarray:
        """The reference samples [start, start + B), zeros where none was played."""
        out = np.zeros(self.B, np.float32)
        lo, hi = start - self._ref_start, start - self._ref_start + self.B
        a, b = max(lo, 0), min(hi, self._ref.size)
        if b > a:
            out[a - lo:b - lo] = self._ref[a:b]
        drop = min(max(0, start + self.B - self._ref_start), self._ref.size)  # consumed: never needed again
        self._ref, self._ref_start = self._ref[drop:], self._ref_start + drop
        return out

    def process(self, mic: np.ndarray, pts_ns: int) -> np.ndarray:
        """The microphone chunk starting at ``pts_ns`` with the echo removed (same length; a block of latency-free
        processing: samples are returned as soon as their 20 ms block is complete, zeros before that)."""
        mic = np.asarray(mic, np.float32)
        if mic.ndim != 1:
            raise ValueError(f"EchoCanceller.process: expected mono (N,) samples, got shape {mic.shape}")
        if self._mic_start is None:
            self._mic_start = self._index(pts_ns)
        self._mic = np.concatenate([self._mic, mic])
        while self._mic.size >= self.B:
            block, self._mic = self._mic[:self.B], self._mic[self.B:]
            self._out.append(self._block(block, self._reference_block(self._mic_start - self.ref_delay)))
            self._mic_start += self.B
        out = np.concatenate(list(self._out)) if self._out else np.zeros(0, np.float32)
        self._out.clear()
        if out.size < mic.size:  # the first call before a full block: pad (a one-time 20 ms delay)
            out = np.concatenate([np.zeros(mic.size - out.size, np.float32), out])
        elif out.size > mic.size:
            self._out.append(out[mic.size:])
            out = out[:mic.size]
        return out

    def _block(self, d: np.ndarray, x: np.ndarray) -> np.ndarray:
        """One overlap-save step: mic block ``d`` (B,), reference block ``x`` (B,) at the same time."""
        B = self.B
        if not x.any() and not self._prev_ref.any() and max(self._ref_powers) == 0.0:
            self._ref_powers.append(0.0)  # the loudspeaker has been silent for the whole tail: no echo possible
            self.X.appendleft(np.zeros(B + 1, np.complex128))
            return d
        X0 = np.fft.rfft(np.concatenate([self._prev_ref, x]))  # (B + 1,)
        self._prev_ref = x
        self.X.appendleft(X0)
        Xs = np.stack(self.X)  # (K, B + 1): partition k holds the reference k blocks ago
        y = np.fft.irfft((self.W * Xs).sum(0))[B:].astype(np.float32)  # (B,) echo estimate
        e = d - y
        py, pe, pd = float(np.mean(y ** 2)), float(np.mean(e ** 2)), float(np.mean(d ** 2))
        px = float(np.mean(x ** 2))
        self.power = 0.9 * self.power + 0.1 * np.abs(X0) ** 2
        double_talk = self._converged and pe > 4.0 * py + 1e-9
        self._double_talk_blocks = self._double_talk_blocks + 1 if double_talk else 0
        if self._double_talk_blocks * self.B > self.max_double_talk_s * self.rate:
            double_talk = False  # too long for talk over the agent (it stops in < 1 s): the room changed, re-learn
        if px > 1e-8 and not double_talk:
            E = np.fft.rfft(np.concatenate([np.zeros(B), e]))  # (B + 1,)
            G = self.step * np.conj(Xs) * E / (self.K * self.power + 1e-6)  # (K, B + 1)
            g = np.fft.irfft(G, axis=1)  # (K, 2B)
            g[:, B:] = 0.0  # the gradient constraint: a linear, not circular, convolution
            self.W += np.fft.rfft(g, axis=1)
            if pd > 1e-8:
                self.erle_db = 0.9 * self.erle_db + 0.1 * float(np.clip(10 * np.log10(pd / max(pe, 1e-12)), -10, 40))
                self._converged = self._converged or self.erle_db > 6.0
        self.echo_power, self.residual_power = 0.9 * self.echo_power + 0.1 * py, 0.9 * self.residual_power + 0.1 * pe
        self._ref_powers.append(px)
        if px > 1e-8:
            self._learning_s += B / self.rate
        if self._converged and py > 1e-9 and pe < self.suppress_ratio * py:
            return np.zeros_like(e)  # what is left is echo: keep it from the detector and the recogniser
        if not self._converged and self._learning_s < self.learn_s and pe < max(self._ref_powers):
            # Still learning the room (the first reply's first second): an echo is never louder than what
            # the loudspeaker played, so anything quieter is taken for echo until the filter knows. After
            # learn_s without an echo to learn (a headset), this stops.
            return np.zeros_like(e)
        if pe > pd or (not self._converged and pe > 0.5 * pd):
            return d  # no echo found here (or not yet learnt), only the filter's own noise: pass the mic as is
        return e


class EchoCancellation(Stage):
    """Head-of-pipeline stage: the played audio (coming back UP) is the reference; user audio leaves echo-free."""

    def __init__(self, canceller: EchoCanceller | None = None) -> None:
        super().__init__(name="echo")
        self.canceller = canceller or EchoCanceller()

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        if direction is UP and isinstance(frame, PlayedAudioFrame):
            self.canceller.add_reference(frame.samples, frame.pts_ns)
        elif direction is DOWN and isinstance(frame, UserAudioFrame):
            with self.timed():
                clean = self.canceller.process(frame.samples, frame.pts_ns)
            frame = dataclasses.replace(frame, samples=clean)
        await self.push_frame(frame, direction)
