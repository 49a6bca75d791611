"""Sampling behaviour: a noise schedule matrix chosen at run time, DDIM updates, history guidance.

Schedule matrix K (rows = denoising iterations, columns = the tokens of a window; entries are
integer levels 0..S, S = pure noise): row 0 is all S, the last row all 0, and each row lowers some
tokens' levels (Diffusion Forcing, paper 3.3; NOTES.md)::

    uniform         K[m, t] = S - m                        every token together (S rows)
    pyramid         K[m, t] = clip(S + t*u - m, 0, S)      far tokens noisier than near ones (u = 1)
    autoregressive  the pyramid with u = S                 one token finished before the next starts

The same trained model runs all three: diffusion forcing trains every token at its own level.

Long sequences go window by window (``window`` tokens, whole chunks): tokens before the window are
clean (the behaviour history: given before the speech, then what was generated), the window's tokens
follow the matrix, later tokens do not exist yet (the hybrid mask never shows a chunk the future).

Guidance (classifier-free, over the history and the speech; paper 3.3 after DFoT):
    vanilla  v = v_u + w (v_full - v_u)
    history  v = v_u + w (v_partial - v_u) + w_h (v_full - v_partial)
where full = speech + clean history, partial = speech + the history noised to ``partial_level`` (what
survives is its low-frequency shape), u = no speech and history at pure noise. ``none`` runs one
forward per row. Guidance in v equals guidance in eps for a fixed z (both are linear in v).

Dimensions that never varied in the training data (std at the floor of ``behaviour.statistics``:
reserved face slots, joints the procedural body never moves) are pinned to the data's value at
every update: the model has nothing to say about them, and its residual noise there integrates
into a spinning, jittering body (measured: 40x the data's jerk before the pin).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from anima.e2e.mot.behaviour import STD_FLOOR
from anima.e2e.mot.model import MixtureOfTransformers, alpha_sigma

SCHEDULES = ("uniform", "pyramid", "autoregressive")
GUIDANCE = ("none", "vanilla", "history")


def schedule_matrix(kind: str, tokens: int, steps: int, slope: int = 1) -> np.ndarray:
    """(M + 1, tokens) integer levels, row 0 all ``steps``, last row all 0."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if tokens < 1 or steps < 1:
        raise ValueError(f"schedule needs tokens >= 1 and steps >= 1, got {tokens}, {steps}")
    u = 0 if kind == "uniform" else steps if kind == "autoregressive" else slope
    rows = steps + (tokens - 1) * u
    m = np.arange(rows + 1)[:, None]
    t = np.arange(tokens)[None, :]
    return np.clip(steps + t * u - m, 0, steps).astype(np.int64)


@dataclass
class SamplerSettings:
    schedule: str = "pyramid"
    steps: int = 10  # S: levels a token goes through (the paper: 50 DDIM steps)
    guidance: str = "vanilla"
    scale: float = 1.5  # w (the paper's 1.5)
    history_scale: float = 1.0  # w_h, the high-frequency history term of ``history`` guidance
    partial_level: float = 0.5  # the history's noise level in the partial condition
    window: int = 10  # tokens generated together (whole chunks); 10 = 0.8 s

    def check(self, chunk: int) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.guidance not in GUIDANCE:
            raise ValueError(f"unknown guidance {self.guidance!r}; choose one of {', '.join(GUIDANCE)}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.window < chunk or self.window % chunk:
            raise ValueError(f"window {self.window} must be a positive multiple of the model's chunk ({chunk})")
        if not 0.0 < self.partial_level < 1.0:
            raise ValueError(f"partial_level must lie in (0, 1), got {self.partial_level}")


@dataclass
class SampleStats:
    forwards: int = 0  # behaviour-pass calls (each over the context + window tokens)
    seconds: float = 0.0


@torch.no_grad()
def sample_behaviour(model: MixtureOfTransformers, kv: list[tuple[torch.Tensor, torch.Tensor]], boa: int, n_speech: int,
                     n_tokens: int, history: torch.Tensor | None = None, settings: SamplerSettings | None = None,
                     silent: bool = False, seed: int = 0, context: int = 20, stats: SampleStats | None = None,
                     on_window: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """Behaviour tokens (normalised) for one sequence, ``history`` clean tokens first.

    kv: the speech pass's keys/values, batch 1. boa / n_speech: BOA's position and the speech
    length. n_tokens: tokens to generate after the history. history: (config.history + done, D)
    normalised clean tokens: what came before the speech, then the ``done`` frames of it already
    generated (a streaming caller continues a sequence window by window; ``done`` a multiple of
    the chunk); None = config.history tokens at the data mean (zeros). The new tokens are frames
    done .. done + n_tokens - 1 of the speech (or of a silent command). context: clean tokens kept
    in front of a window (whole chunks). ``on_window`` receives each finished window (W, D) as soon
    as it is done. Returns (len(history) + n_tokens, D).
    """
    c = model.config
    s = settings or SamplerSettings()
    s.check(c.chunk)
    if context % c.chunk:
        raise ValueError(f"context {context} must be a multiple of the chunk ({c.chunk})")
    D = c.behaviour_dim
    dev = kv[0][0].device
    if history is None:
        history = torch.zeros(c.history, D, device=dev)
    P = history.shape[0] if history.dim() == 2 else -1
    if history.dim() != 2 or history.shape[1] != D or P < c.history or (P - c.history) % c.chunk:
        raise ValueError(f"history: expected ({c.history} + a multiple of {c.chunk}, {D}) tokens, got {tuple(history.shape)}")
    total = P + n_tokens
    if total > c.max_tokens:
        raise ValueError(f"{total - c.history} behaviour tokens: the model takes at most {c.max_tokens - c.history} after its history")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tokens = torch.zeros(total, D, device=dev)
    tokens[:P] = history
    positions, visible = model.layout(torch.tensor([boa], device=dev), torch.tensor([n_speech], device=dev), total,
                                      torch.tensor([silent], device=dev))
    fixed = model.behaviour.std <= STD_FLOOR  # (D,) never varied in training: not generated (their mean)
    t0 = time.perf_counter()
    start = P
    while start < total:
        end = min(start + s.window, total)
        lo = max(0, start - context)
        W = end - start
        K = torch.from_numpy(schedule_matrix(s.schedule, W, s.steps)).float() / s.steps  # (M + 1, W) levels
        z = torch.randn(W, D, generator=gen).to(dev)  # the window at pure noise
        hist_noise = torch.randn(start - lo, D, generator=gen).to(dev)
        for m in range(1, K.shape[0]):
            now, nxt = K[m - 1].to(dev), K[m].to(dev)
            moving = nxt < now
            if not moving.any():
                continue
            v = _guided_v(model, kv, tokens[lo:start], z, now, positions[:, lo:end], visible[:, lo:end], hist_noise, s, stats)
            a, sg = (x[:, None] for x in alpha_sigma(now))
            x0, eps = a * z - sg * v, sg * z + a * v
            x0 = x0.masked_fill(fixed, 0.0)  # dimensions constant in the data stay at its value
            a2, s2 = alpha_sigma(nxt)
            z = torch.where(moving[:, None], a2[:, None] * x0 + s2[:, None] * eps, z)
        tokens[start:end] = z
        if on_window is not None:
            on_window(z)
        start = end
    if stats is not None:
        stats.seconds += time.perf_counter() - t0
    return tokens


def _guided_v(model: MixtureOfTransformers, kv, past: torch.Tensor, z: torch.Tensor, levels: torch.Tensor,
              positions: torch.Tensor, visible: torch.Tensor, hist_noise: torch.Tensor, s: SamplerSettings,
              stats: SampleStats | None) -> torch.Tensor:
    """v of the window's tokens under the guidance; the conditions run as one batch. (W, D)"""
    P, W = past.shape[0], z.shape[0]
    clean = torch.zeros(P, device=z.device)
    rows = [(past, clean, visible)]  # full: speech + clean history
    if s.guidance == "history":  # partial: speech + history noised to partial_level
        a, sg = alpha_sigma(torch.tensor(s.partial_level))
        rows.append((a * past + sg * hist_noise, torch.full((P,), s.partial_level, device=z.device), visible))
    if s.guidance != "none":  # unconditional: no speech, history pure noise
        rows.append((hist_noise, torch.ones(P, device=z.device), torch.zeros_like(visible)))
    n = len(rows)
    x = torch.stack([torch.cat([h, z]) for h, _, _ in rows])  # (n, P + W, D)
    lv = torch.stack([torch.cat([hl, levels]) for _, hl, _ in rows])  # (n, P + W)
    vis = torch.cat([r[2] for r in rows])  # (n, P + W)
    valid = torch.ones(n, P + W, dtype=torch.bool, device=z.device)
    kvn = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in kv]
    out = model.behaviour_pass(x, lv, positions.expand(n, -1), vis, valid, kvn)[:, P:]  # (n, W, D)
    if stats is not None:
        stats.forwards += n
    if s.guidance == "none":
        return out[0]
    if s.guidance == "vanilla":
        return out[1] + s.scale * (out[0] - out[1])
    return out[2] + s.scale * (out[1] - out[2]) + s.history_scale * (out[0] - out[1])
