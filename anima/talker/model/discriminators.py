"""The tokenizer's GAN critics (paper 2.1): a multi-period and a multi-scale STFT discriminator.

Multi-period (HiFi-GAN): the waveform is folded into (N / p, p) for p in 2, 3, 5, 7, 11 and each
fold is read by 2-D convs along time, so each sub-discriminator judges one periodic structure.
Multi-scale STFT (EnCodec): 2-D convs over the complex STFT (real and imaginary as channels) at
several window sizes. Both return, per sub-discriminator, its logits and every layer's feature
map (for feature matching). Channels are small: they train on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: int = 16, layers: int = 4) -> None:
        super().__init__()
        self.period = period
        chans = [1] + [min(channels * 2**i, 256) for i in range(layers)]
        self.convs = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3, 1), padding=(2, 0)) for i in range(layers))
        self.post = nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """wav (B, N) -> logits (B, *) and feature maps."""
        x = F.pad(wav, (0, -wav.shape[-1] % self.period), mode="reflect")
        x = x.reshape(x.shape[0], 1, -1, self.period)  # (B, 1, N / p, p)
        return _critic(self.convs, self.post, x)


def _critic(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv stack then the 1-channel output: (logits (B, *), every layer's feature map)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


class STFTDiscriminator(nn.Module):
    def __init__(self, n_fft: int, channels: int = 16, layers: int = 3) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([nn.Conv2d(2, channels, (3, 9), stride=(1, 2), padding=(1, 4))])  # halve F at once: CPU
        for i in range(layers):  # time dilations 1, 2, 4; frequency strided by 2
            self.convs.append(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(2**i, 1), padding=(2**i, 4)))
        self.convs.append(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1)))
        self.post = nn.Conv2d(channels, 1, (3, 3), padding=(1, 1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav, self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)  # (B, F, T)
        x = torch.stack([spec.real, spec.imag], 1).transpose(2, 3)  # (B, 2, T, F)
        return _critic(self.convs, self.post, x)


class Discriminators(nn.Module):
    """All sub-discriminators; ``forward`` returns a list of (logits, feature maps), one per critic."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), ffts: tuple[int, ...] = (2048, 1024, 512),
                 channels: int = 16) -> None:
        super().__init__()
        self.mpd = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)
        self.msd = nn.ModuleList(STFTDiscriminator(n, channels) for n in ffts)

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(wav) for d in self.mpd] + [d(wav) for d in self.msd]
