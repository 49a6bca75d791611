"""Causal 1-D VAE: 263-D HumanML3D features <-> 4-channel latents at a quarter of the frame rate.

    vae = MotionVAE(VAEConfig())
    mean, logvar = vae.encode(x)          # x (B, T, 263) normalised features, T % 4 == 0 -> (B, T/4, 4) each
    x_hat = vae.decode(z)                 # (B, N, 4) -> (B, 4N, 263)
    state = vae.new_state()               # streaming decode: the caller owns the conv caches
    frames = vae.step(z[:, :1], state)    # (B, 4, 263), identical to the offline decode

Strictly causal in time: every convolution is padded on the left only, downsampling convs see
frames up to the last one of their output step, upsampling repeats a token then convolves
causally, and the norm is per time step (RMS over channels). So latent ``k`` depends only on
frames ``<= 4k + 3`` and decoded frame ``t`` only on latents ``<= t // 4`` (tests prove both).

The paper adapts Wan2.1's causal video VAE; this is the 1-D analogue at laptop size. Loss:
feature MSE + joint-position MSE (through ``recover_from_ric``) + a small KL, and for the
decoder fine-tuning stage a jerk-matching term (third differences of the recovered joints), which
removes the seams the decoder otherwise leaves every 4 frames at token boundaries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from anima.body.data.humanml3d import FEATURE_DIM


class DecoderState:
    """Streaming state of one decode (``MotionVAE.new_state``): the last ``pad`` inputs of every
    causal convolution of the decoder, so the next chunk continues where this one ended."""

    def __init__(self, n_convs: int) -> None:
        self.caches: list[torch.Tensor | None] = [None] * n_convs  # per conv: (B, C, pad), None = zeros

    def reset(self) -> None:
        """Back to the start of a stream (all-zero history)."""
        self.caches = [None] * len(self.caches)

    def clone(self) -> DecoderState:
        """An independent snapshot."""
        copy = DecoderState(len(self.caches))
        copy.caches = [None if c is None else c.clone() for c in self.caches]
        return copy


class CausalConv1d(nn.Module):
    """Conv1d padded on the left so output step i sees inputs <= i * stride + stride - 1.

    Given a ``DecoderState`` it continues from the last ``pad`` inputs kept there (slot
    ``cache_index``) and keeps its own, so feeding a sequence in chunks (lengths multiple of the
    stride) gives exactly the offline output.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation)
        self.stride = stride
        self.pad = (kernel - 1) * dilation - (stride - 1)
        self.cache_index = -1  # slot in a DecoderState (set by the Decoder)

    def forward(self, x: torch.Tensor, state: DecoderState | None = None) -> torch.Tensor:  # (B, C, T) -> (B, C', T / stride)
        if x.shape[-1] % self.stride:
            raise ValueError(f"CausalConv1d: length {x.shape[-1]} is not a multiple of the stride {self.stride}")
        if state is None:
            x = F.pad(x, (self.pad, 0))
        else:
            cache = state.caches[self.cache_index]
            if cache is None:
                cache = x.new_zeros(x.shape[0], x.shape[1], self.pad)
            x = torch.cat([cache, x], dim=-1)  # (B, C, pad + T)
            state.caches[self.cache_index] = x[..., x.shape[-1] - self.pad:] if self.pad else x[..., :0]
        return self.conv(x)


class ChannelRMSNorm(nn.Module):
    """RMS norm over channels at each time step (a norm over time would break causality)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-6) * self.weight


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.norm = ChannelRMSNorm(channels)
        self.conv1 = CausalConv1d(channels, channels, kernel, dilation=dilation)
        self.conv2 = CausalConv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, state: DecoderState | None = None) -> torch.Tensor:  # (B, C, T)
        return x + self.conv2(F.silu(self.conv1(F.silu(self.norm(x)), state)), state)


class Upsample2(nn.Module):
    """Repeat every step twice, then a causal conv: outputs 2i and 2i+1 see inputs <= i."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, channels, kernel)

    def forward(self, x: torch.Tensor, state: DecoderState | None = None) -> torch.Tensor:  # (B, C, T) -> (B, C, 2T)
        return self.conv(torch.repeat_interleave(x, 2, dim=-1), state)


@dataclass
class VAEConfig:
    feature_dim: int = FEATURE_DIM  # input channels (HumanML3D 263)
    latent_dim: int = 4  # latent channels
    width: int = 192  # conv channels
    blocks: int = 2  # residual blocks per resolution
    kernel: int = 3  # temporal kernel of the residual convs
    kl_weight: float = 1e-4  # weight of the KL term
    joint_weight: float = 1.0  # weight of the joint-position loss (metres^2, scaled x100)
    smooth_weight: float = 0.0  # weight of the jerk-matching loss (3rd differences of joints, cm^2)
    # Decoder robustness: during training, add per-token Gaussian noise of up to this many latent
    # standard deviations to the sampled latents (uniform per example), so that the small per-token
    # errors of a generator decode smoothly instead of as a seam at every token boundary.
    latent_noise: float = 0.0


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        w, k = config.width, config.kernel
        layers: list[nn.Module] = [CausalConv1d(config.feature_dim, w, k)]
        for stage in range(3):
            layers += [ResBlock(w, k, dilation=2**b) for b in range(config.blocks)]
            if stage < 2:
                layers.append(CausalConv1d(w, w, 4, stride=2))  # x2 down, causal
        self.body = nn.Sequential(*layers)
        self.norm = ChannelRMSNorm(w)
        self.out = CausalConv1d(w, 2 * config.latent_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 263, T) -> (B, 2 * latent, T / 4)
        return self.out(F.silu(self.norm(self.body(x))))


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        w, k = config.width, config.kernel
        layers: list[nn.Module] = [CausalConv1d(config.latent_dim, w, k)]
        for stage in range(3):
            layers += [ResBlock(w, k, dilation=2**b) for b in range(config.blocks)]
            if stage < 2:
                layers.append(Upsample2(w, k))
        self.body = nn.Sequential(*layers)
        self.norm = ChannelRMSNorm(w)
        self.out = CausalConv1d(w, config.feature_dim, 1)
        self.n_convs = 0
        for m in self.modules():
            if isinstance(m, CausalConv1d):
                m.cache_index, self.n_convs = self.n_convs, self.n_convs + 1

    def forward(self, z: torch.Tensor, state: DecoderState | None = None) -> torch.Tensor:
        """(B, N, latent) -> (B, 4N, 263). With a ``state``, ``z`` continues the latents decoded with it."""
        h = z.transpose(1, 2)  # (B, latent, N)
        for layer in self.body:
            h = layer(h, state)  # (B, width, <= 4N)
        return self.out(F.silu(self.norm(h)), state).transpose(1, 2)

    def new_state(self) -> DecoderState:
        return DecoderState(self.n_convs)


class MotionVAE(nn.Module):
    DOWNSAMPLE = 4  # frames per latent token

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # Latent statistics over the train set, so that the diffusion model sees unit-variance latents.
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 263) with T % 4 == 0 -> mean, logvar, each (B, T/4, latent)."""
        if x.ndim != 3 or x.shape[-1] != self.config.feature_dim:
            raise ValueError(f"MotionVAE.encode: expected (B, T, {self.config.feature_dim}), got {tuple(x.shape)}")
        if x.shape[1] % self.DOWNSAMPLE:
            raise ValueError(f"MotionVAE.encode: T={x.shape[1]} is not a multiple of {self.DOWNSAMPLE}")
        h = self.encoder(x.transpose(1, 2)).transpose(1, 2)  # (B, T/4, 2 * latent)
        mean, logvar = h.chunk(2, dim=-1)
        return mean, logvar.clamp(-20.0, 10.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, latent) -> (B, 4N, 263)."""
        return self.decoder(z)

    def new_state(self) -> DecoderState:
        """A streaming decode's state (the caller owns it; ``step`` continues it)."""
        return self.decoder.new_state()

    def step(self, z: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Streaming decode: latents (B, n, latent) that follow those already decoded with ``state``
        -> their frames (B, 4n, 263), exactly as the offline decode of the whole sequence gives them."""
        if not isinstance(state, DecoderState) or len(state.caches) != self.decoder.n_convs:
            raise RuntimeError("MotionVAE.step: state must come from this model's new_state()")
        return self.decoder(z, state)

    def forward(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if sample else mean
        if sample and self.training and self.config.latent_noise > 0:
            scale = torch.rand(z.shape[0], 1, 1) * self.config.latent_noise  # (B, 1, 1): clean to noisy examples
            z = z + torch.randn_like(z) * scale * self.latent_std
        return self.decode(z), mean, logvar

    # Normalised latents for the diffusion models.
    def to_diffusion(self, mean: torch.Tensor) -> torch.Tensor:
        return (mean - self.latent_mean) / self.latent_std

    def from_diffusion(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std + self.latent_mean

    def config_dict(self) -> dict:
        return asdict(self.config)
