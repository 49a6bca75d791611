"""Streaming motion generation: push prompts at any time, step, receive committed frames.

    stream = MotionStream.load("anima/assets/weights/body/flood")    # shipped VAE + FloodDiffusion
    stream.push_prompt("a person bows")            # from the next uncommitted frame on
    while True:
        joints = stream.step()                     # (n, 22, 3) newly committed frames, n in {0, 4, ...}

One ``step()`` is one Euler update of the tokens the schedule has in flight (``anima.body.model.schedule``)
with classifier-free guidance (conditional and null prompt in one batch of 2). Tokens whose level
reaches 0 are committed: decoded by the causal VAE decoder (streaming mode, so each token is
decoded once) and turned into joints by a streaming ``recover_from_ric``. Committed frames are
final: a prompt pushed later only changes tokens not yet committed (those in flight get the new
text for their remaining updates). The model sees at most ``history`` committed tokens, so the
cost of a step does not grow with the stream's length, and the stream never ends.

A ``MotionStream`` is one session's state: the tokens in flight, the committed history the
model sees, the prompts, the RNG, the schedule's position, the VAE's streaming decode state
(``MotionVAE.new_state``) and the joint recovery's. The networks are shared read-only:
``FloodWeights.load`` loads a checkpoint once per process, so every stream of a server holds
references to the same weights and costs only its state.

The same class runs the baselines: give it a DiT trained with ``ChunkSchedule`` (chunk diffusion,
or autoregressive with chunk = 1) and its schedule.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import json
import math
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anima.body.data.humanml3d import RicRecovery
from anima.body.model.dit import DiTConfig, MotionDiT
from anima.body.model.schedule import ChunkSchedule, TriangularSchedule, make_schedule
from anima.body.model.vae import MotionVAE, VAEConfig
from anima.body.skeleton import NUM_JOINTS
from anima.body.text import TEXT_DIM, TextEncoder
from anima.checkpoint import load_weights

FRAMES_PER_TOKEN = MotionVAE.DOWNSAMPLE


@dataclass
class _Prompt:
    first_token: int
    text: str
    embedding: np.ndarray  # (384,)
    has_text: bool


class MotionStream:
    """An endless text-conditioned motion stream from a DiT + causal VAE + noise schedule."""

    def __init__(self, model: MotionDiT, vae: MotionVAE, schedule: TriangularSchedule | ChunkSchedule,
                 feature_mean: np.ndarray, feature_std: np.ndarray, encoder: TextEncoder | None = None,
                 guidance: float | None = None, seed: int = 0, guidance_floor: float | None = None) -> None:
        self.model = model.eval()
        self.vae = vae.eval()
        self.schedule = schedule
        self.config: DiTConfig = model.config
        if schedule.max_active > self.config.max_active:
            raise ValueError(f"MotionStream: schedule updates {schedule.max_active} tokens, the model takes {self.config.max_active}")
        self.mean = np.asarray(feature_mean, dtype=np.float64)
        self.std = np.asarray(feature_std, dtype=np.float64)
        self.encoder = encoder or TextEncoder()
        self.guidance = self.config.guidance if guidance is None else guidance
        # noise level at and below which guidance is off (0 = guidance at every level)
        self.guidance_floor = self.config.guidance_floor if guidance_floor is None else guidance_floor
        self.seed = seed
        self.reset()

    # --- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to frame 0 with no prompt (the null prompt) and an empty history."""
        self.schedule.reset()
        self.generator = torch.Generator().manual_seed(self.seed)
        self.latents: dict[int, torch.Tensor] = {}  # token -> (latent,) while in flight
        self.history: deque[tuple[torch.Tensor, np.ndarray, bool]] = deque(maxlen=self.config.history)
        self.prompts: list[_Prompt] = [_Prompt(0, "", np.zeros(TEXT_DIM, np.float32), False)]
        self.recovery = RicRecovery()
        self.decoder_state = self.vae.new_state()  # the causal decoder's convolution caches
        self.committed_tokens = 0
        self.last_features = np.zeros((0, len(self.mean)))

    @property
    def committed_frames(self) -> int:
        return self.committed_tokens * FRAMES_PER_TOKEN

    @property
    def step_index(self) -> int:
        return self.schedule.step_index

    # --- prompts -------------------------------------------------------------------------------

    def push_prompt(self, text: str, frame: int | None = None) -> int:
        """Make ``text`` the prompt from ``frame`` on (default: now); "" is the null prompt.

        Only tokens not yet committed can change: the prompt applies from token
        max(ceil(frame / 4), first uncommitted token). Returns that token.
        """
        text = text.strip()
        first = self.committed_tokens if frame is None else max(self.committed_tokens, math.ceil(frame / FRAMES_PER_TOKEN))
        embedding = self.encoder.embed([text])[0] if text else np.zeros(TEXT_DIM, np.float32)
        # A later push for the same or an earlier token replaces what was scheduled from there on.
        self.prompts = [p for p in self.prompts if p.first_token < first]
        self.prompts.append(_Prompt(first, text, embedding, bool(text)))
        return first

    def prompt_at(self, token: int) -> _Prompt:
        starts = [p.first_token for p in self.prompts]
        return self.prompts[max(0, bisect.bisect_right(starts, token) - 1)]

    # --- one step ------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self) -> np.ndarray:
        """One denoising step; returns the joints of newly committed frames. # (n, 22, 3)"""
        tokens, s_now, s_next = self.schedule.window()
        for k in tokens:
            if int(k) not in self.latents:  # enters the window as pure noise (drawn in token order)
                self.latents[int(k)] = torch.randn(self.config.latent_dim, generator=self.generator)
        hist = list(self.history)
        n_hist = len(hist)
        z = torch.stack([h[0] for h in hist] + [self.latents[int(k)] for k in tokens])  # (L, latent)
        prompts = [self.prompt_at(int(k)) for k in tokens]
        text = np.stack([h[1] for h in hist] + [p.embedding for p in prompts])  # (L, 384)
        has_text = torch.tensor([h[2] for h in hist] + [p.has_text for p in prompts])
        level = torch.from_numpy(np.concatenate([np.zeros(n_hist), s_now])).float()
        pos = torch.arange(len(z)) - n_hist + self.config.history
        v = self._velocity(z, level, torch.from_numpy(text), has_text, pos)[n_hist:]  # (n_active, latent)
        delta = torch.from_numpy(s_now - s_next).float()[:, None]
        for i, k in enumerate(tokens):
            self.latents[int(k)] = self.latents[int(k)] + v[i] * delta[i]
        self.schedule.advance()
        done = self.schedule.committed
        if done <= self.committed_tokens:
            return np.zeros((0, NUM_JOINTS, 3))
        new = []
        for k in range(self.committed_tokens, done):
            p = self.prompt_at(k)
            new.append(self.latents.pop(k))
            self.history.append((new[-1], p.embedding, p.has_text))  # the text it was finished with
        self.committed_tokens = done
        return self._decode(torch.stack(new))

    def _velocity(self, z, level, text, has_text, pos) -> torch.Tensor:
        """Guided velocity v = w v_c - (w - 1) v_null, both in one batch. (L, latent)

        Guidance applies only to tokens whose noise level is above ``guidance_floor`` (a limited
        guidance interval, Kynkaanniemi et al. 2024): text steers a token while its shape is
        decided; near the end of its denoising, extrapolating between the two predictions only
        adds high-frequency detail that neither has, which shows up as jerk."""
        if self.guidance == 1.0:
            return self.model(z[None], level[None], text[None], has_text[None], pos[None])[0]
        v = self.model(
            torch.stack([z, z]), torch.stack([level, level]), torch.stack([text, text]),
            torch.stack([has_text, torch.zeros_like(has_text)]), torch.stack([pos, pos]),
        )
        w = torch.where(level > self.guidance_floor, self.guidance, 1.0)[:, None]  # (L, 1)
        return w * v[0] - (w - 1.0) * v[1]

    def _decode(self, z: torch.Tensor) -> np.ndarray:
        """Committed latents (n, latent) -> joints of their 4n frames, continuing the stream."""
        features = self.vae.step(self.vae.from_diffusion(z)[None], self.decoder_state)[0].double().numpy()  # (4n, 263)
        features = features * self.std + self.mean
        self.last_features = features
        return self.recovery.push(features)

    # --- conveniences --------------------------------------------------------------------------

    def fork(self, seed: int) -> MotionStream:
        """A new, reset stream on the same model, VAE and text cache (its own schedule and state)."""
        schedule = copy.copy(self.schedule)
        schedule.reset()
        return MotionStream(self.model, self.vae, schedule, self.mean, self.std, self.encoder, self.guidance, seed,
                            self.guidance_floor)

    def generate(self, num_frames: int, prompts: list[tuple[int, str]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Step until ``num_frames`` more frames are committed and return them: joints
        (num_frames, 22, 3) and features (num_frames, 263). ``prompts`` = [(frame, text)], frames
        counted from this call, are pushed when playback reaches that frame (once the frame before
        it is committed), as a live stream would. Frames committed beyond ``num_frames`` are lost."""
        start = self.committed_frames
        pending = sorted(prompts or [], key=lambda p: p[0])
        joints, features = [np.zeros((0, NUM_JOINTS, 3))], [np.zeros((0, len(self.mean)))]
        while self.committed_frames < start + num_frames:
            while pending and self.committed_frames - start >= pending[0][0]:
                self.push_prompt(pending.pop(0)[1])
            out = self.step()
            if len(out):
                joints.append(out)
                features.append(self.last_features)
        return np.concatenate(joints)[:num_frames], np.concatenate(features)[:num_frames]

    @classmethod
    def load(cls, directory: str | Path, vae_directory: str | Path | None = None, seed: int = 0,
             guidance: float | None = None, encoder: TextEncoder | None = None,
             guidance_floor: float | None = None, level_power: float | None = None) -> MotionStream:
        """A new stream over a DiT checkpoint directory (its VAE: ``vae_directory`` or the one it
        names); the weights are loaded once per process (``FloodWeights.load``) and shared.
        ``guidance``, ``guidance_floor`` and ``level_power`` override the checkpoint's sampler settings."""
        weights = FloodWeights.load(directory, vae_directory)
        config = weights.model.config
        if level_power is not None:  # a sampler setting: the schedule's copy of the config only
            config = dataclasses.replace(config, level_power=level_power)
        schedule = make_schedule(weights.method, config)
        return cls(weights.model, weights.vae, schedule, weights.feature_mean, weights.feature_std,
                   encoder or weights.encoder, guidance, seed, guidance_floor)


@dataclass(frozen=True)
class FloodWeights:
    """What every stream of one checkpoint shares, read-only: the DiT, the VAE, the feature
    statistics and the text encoder with the checkpoint's cached prompt embeddings."""

    model: MotionDiT
    vae: MotionVAE
    method: str  # "flood", "chunk" or "ar": which noise schedule the DiT was trained with
    feature_mean: np.ndarray  # (263,)
    feature_std: np.ndarray  # (263,)
    encoder: TextEncoder

    @classmethod
    def load(cls, directory: str | Path, vae_directory: str | Path | None = None) -> FloodWeights:
        """The weights of a DiT checkpoint and its VAE, loaded once per process (cached by resolved
        paths; thread-safe, as sessions are built in worker threads)."""
        directory = Path(directory).resolve()
        vae_dir = (Path(vae_directory) if vae_directory else directory.parent / "vae").resolve()
        with _WEIGHTS_LOCK:
            weights = _WEIGHTS.get((directory, vae_dir))
            if weights is None:
                weights = _WEIGHTS[(directory, vae_dir)] = cls._read(directory, vae_dir)
        return weights

    @classmethod
    def _read(cls, directory: Path, vae_dir: Path) -> FloodWeights:
        meta = json.loads((directory / "config.json").read_text())
        model = MotionDiT(DiTConfig(**meta["config"]["dit"]))
        load_weights(directory, model)
        vae_meta = json.loads((vae_dir / "config.json").read_text())
        vae = MotionVAE(VAEConfig(**vae_meta["config"]["vae"]))
        load_weights(vae_dir, vae)
        if not (vae_dir / "feature_stats.npz").is_file():
            raise FileNotFoundError(f"{vae_dir}: no feature_stats.npz (feature mean/std and text embeddings)")
        stats = np.load(vae_dir / "feature_stats.npz")
        cache = {}
        if "texts" in stats.files:
            cache = dict(zip([str(t) for t in stats["texts"]], stats["embeddings"], strict=True))
        mean, std = stats["mean"], stats["std"]
        for a in (mean, std):
            a.setflags(write=False)  # shared by every stream
        return cls(model.eval().requires_grad_(False), vae.eval().requires_grad_(False), meta["config"]["method"],
                   mean, std, TextEncoder(cache))


_WEIGHTS: dict[tuple[Path, Path], FloodWeights] = {}  # (DiT dir, VAE dir) -> shared weights
_WEIGHTS_LOCK = threading.Lock()
