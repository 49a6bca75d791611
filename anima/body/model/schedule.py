"""Noise schedules over latent tokens: FloodDiffusion's lower-triangular one and the two baselines'.

A schedule says, at each inference step, which tokens get an Euler update and from which noise
level to which (``window()``), and how many tokens are finished (``committed``); it holds its own
step index (``advance()``, ``reset()``), so the model never sees schedule state. It also draws
the per-token noise levels of a training example (``training_levels``). Noise level s: 1 is pure
noise, 0 is clean; z = (1 - s) x + s eps, the model predicts v = x - eps, and an update
z += v (s_now - s_next) lowers a token's level from s_now to s_next.

- ``TriangularSchedule`` (FloodDiffusion, paper eq. 14-15): s_k(t) = clamp(1 + k/n_s - t, 0, 1),
  t = step * dt. With n_s = 5 and dt = 1/10 about five tokens are in flight, each gets 10
  updates, and one token (4 frames) is committed every 2 steps.
- ``ChunkSchedule(chunk, steps)``: all tokens of a chunk at one level, denoised together in
  ``steps`` updates, then committed at once (PRIMAL-like chunk diffusion). ``chunk = 1`` is the
  autoregressive baseline: one token fully denoised at a time from the history (MotionStreamer-like).

Both take ``power``: at inference a token's level is its linear level raised to ``power``
(training levels are unchanged). ``power`` > 1 makes the Euler steps shrink toward the clean end,
as Karras et al. (2022) space their steps, so a token gets more, finer updates near 0; 1 is the
uniform spacing. It changes neither which tokens are in flight nor when one is committed.
"""

from __future__ import annotations

import numpy as np


class TriangularSchedule:
    name = "flood"

    def __init__(self, n_s: int = 5, steps_per_unit: int = 10, power: float = 1.0) -> None:
        if steps_per_unit % n_s:
            raise ValueError(f"TriangularSchedule: steps_per_unit ({steps_per_unit}) must be a multiple of n_s ({n_s})")
        if power <= 0:
            raise ValueError(f"TriangularSchedule: power must be > 0, got {power}")
        self.n_s = n_s
        self.power = power
        self.K = steps_per_unit  # updates a token receives; dt = 1 / K
        self.per_token = steps_per_unit // n_s  # steps between two commits
        self.step_index = 0

    @property
    def max_active(self) -> int:
        return self.n_s + 1

    @property
    def first_commit_steps(self) -> int:
        """Steps from a cold start to the first committed token."""
        return self.K

    def reset(self) -> None:
        self.step_index = 0

    def levels(self, tokens: np.ndarray, step: int) -> np.ndarray:
        """Exact levels at a step: clamp((K + k K/n_s - step) / K, 0, 1) ** power. (n,) -> (n,)"""
        a = self.K + np.asarray(tokens) * self.per_token - step
        return (np.clip(a, 0, self.K) / self.K) ** self.power

    def window(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tokens updated by the next step and their levels before / after it. (n,), (n,), (n,)"""
        m = self.step_index
        # level(k, m) > 0  <=>  k > (m - K) / per_token ;  level(k, m + 1) < 1  <=>  k < (m + 1) / per_token
        lo = max(0, (m - self.K) // self.per_token + 1)
        hi = -(-(m + 1) // self.per_token)  # ceil
        tokens = np.arange(lo, hi)
        return tokens, self.levels(tokens, m), self.levels(tokens, m + 1)

    @property
    def committed(self) -> int:
        """Tokens at level 0 after ``step_index`` steps (all of them final)."""
        m = self.step_index
        return max(0, (m - self.K) // self.per_token + 1)

    def advance(self) -> None:
        self.step_index += 1

    def training_levels(self, num_tokens: int, rng: np.random.Generator) -> np.ndarray:
        """Levels of a training clip at a uniform random time t in (0, N / n_s + 1). (N,)"""
        t = rng.uniform(0.0, num_tokens / self.n_s + 1.0)
        return np.clip(1.0 + np.arange(num_tokens) / self.n_s - t, 0.0, 1.0)


class ChunkSchedule:
    def __init__(self, chunk: int = 10, steps: int = 10, power: float = 1.0) -> None:
        if chunk < 1 or steps < 1:
            raise ValueError(f"ChunkSchedule: chunk ({chunk}) and steps ({steps}) must be >= 1")
        if power <= 0:
            raise ValueError(f"ChunkSchedule: power must be > 0, got {power}")
        self.power = power
        self.chunk = chunk
        self.steps = steps
        self.step_index = 0
        self.name = "ar" if chunk == 1 else "chunk"

    @property
    def max_active(self) -> int:
        return self.chunk

    @property
    def first_commit_steps(self) -> int:
        return self.steps

    def reset(self) -> None:
        self.step_index = 0

    def window(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c, j = divmod(self.step_index, self.steps)
        tokens = np.arange(c * self.chunk, (c + 1) * self.chunk)
        s_now = np.full(self.chunk, (1.0 - j / self.steps) ** self.power)
        s_next = np.full(self.chunk, (1.0 - (j + 1) / self.steps) ** self.power)
        return tokens, s_now, s_next

    @property
    def committed(self) -> int:
        return (self.step_index // self.steps) * self.chunk

    def advance(self) -> None:
        self.step_index += 1

    def training_levels(self, num_tokens: int, rng: np.random.Generator) -> np.ndarray:
        """History clean, one chunk (possibly cut by the clip's end) at a uniform level, rest pure noise."""
        start = int(rng.integers(0, num_tokens))
        levels = np.ones(num_tokens)
        levels[:start] = 0.0
        levels[start:start + self.chunk] = rng.uniform(1e-3, 1.0)
        return levels


def make_schedule(method: str, config) -> TriangularSchedule | ChunkSchedule:
    """The schedule of a method ("flood", "chunk", "ar") for a DiT config; unknown names raise."""
    match method:
        case "flood":
            return TriangularSchedule(config.n_s, config.denoise_steps, config.level_power)
        case "chunk":
            return ChunkSchedule(config.chunk, config.denoise_steps, config.level_power)
        case "ar":
            return ChunkSchedule(1, config.denoise_steps, config.level_power)
    raise KeyError(f"unknown body method {method!r}; expected one of flood, chunk, ar")
