"""The speech tokenizer (Kodama, paper 2.1, small): 24 kHz speech <-> 8 codes per 80 ms (1 kbps).

    wav (B, N) 24 kHz
      |-- acoustic encoder: causal conv 1 -> C, four strided stages (4, 4, 5, 6: /480 -> 50 Hz),
      |   each after three parallel residual units (dilation 1, 3, 9, Snake), averaged, added back
      |-- semantic encoder: causal log-mel (50 Hz) -> causal ConvNeXt blocks; supervised by a teacher
      |     learnable FFT band split (rFFT over the channels of each frame, a learnt soft mask):
      |     low band -> /4 -> 12.5 Hz -> 2 semantic RVQ codebooks (codes 0-1)
      |     high band -> added to the acoustic latent -> /4 -> 12.5 Hz -> 6 acoustic codebooks (2-7)
      `-- decoder (Vocos): codes -> x4 repeat -> causal ConvNeXt at 50 Hz -> log-magnitude + phase
          -> windowed inverse rFFT -> overlap-add (written out, so streaming equals offline)

Every convolution is causal (left padding only), so the same modules stream: a ``StreamState``
holds each layer's last inputs (and the overlap-add tail). Token k covers samples
[1920 k, 1920 (k+1)) and is emitted once they are all in; decoding token k returns exactly those
samples: there is no look-ahead beyond the 80 ms token, and chunked streaming == offline.

    tok = SpeechTokenizer.from_pretrained("anima/assets/weights/talker/tokenizer")
    codes = tok.encode(wav)            # (B, 8, T) int64 in [0, 1024)
    audio = tok.decode(codes)          # (B, 1920 T)
    enc, dec = tok.new_encoder_state(), tok.new_decoder_state()
    codes = tok.encode_step(enc, chunk)   # (B, 8, k) for the k tokens completed by this chunk
    audio = tok.decode_step(dec, codes)   # (B, 1920 k)

The semantic branch has its own small encoder on a causal log-mel (as the paper's semantic encoder
is separate from the acoustic one) rather than sharing the acoustic stages: the mel front end costs
~2% of the encoder, and the teacher can shape it without pulling on the waveform features.
The semantic teacher (training only) gives 50 Hz targets: by default the phoneme id of each frame
(a stand-in for W2v-BERT); ``semantic_head`` maps each quantised semantic token to its 4 frames'
targets. A real SSL teacher sets ``teacher_kind="features"`` and ``teacher_dim`` to its width.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from anima.checkpoint import CheckpointError, read_config
from anima.talker.model.rvq import ResidualVQ

SAMPLE_RATE = 24000

# ---------------------------------------------------------------------------------------------
# Streaming state and causal blocks


@dataclass
class StreamState:
    """Per-stream caches, owned by the caller: each causal layer's pending input, keyed by layer."""

    buffers: dict[nn.Module, torch.Tensor] = field(default_factory=dict)
    pending: torch.Tensor | None = None  # encoder: samples not yet making a whole token


def causal_window(module: nn.Module, x: torch.Tensor, state: StreamState | None, span: int, stride: int) -> torch.Tensor:
    """The input a window op (receptive field ``span``, ``stride``) needs, left-padded causally.

    Offline: ``x`` with ``span - stride`` zeros in front (so N inputs give N // stride outputs).
    Streaming: the cached tail of earlier calls + ``x``, cut to whole windows; the rest is kept.
    """
    pad = span - stride
    if state is None:
        return F.pad(x, (pad, 0))
    buf = state.buffers.get(module)
    if buf is None:
        buf = x.new_zeros(*x.shape[:-1], pad)
    buf = torch.cat([buf, x], -1)
    n = (buf.shape[-1] - span) // stride + 1 if buf.shape[-1] >= span else 0
    state.buffers[module] = buf[..., n * stride:]
    return buf[..., : (n - 1) * stride + span] if n > 0 else buf[..., :0]


class CausalConv1d(nn.Conv1d):
    """Conv1d that only looks back: output t sees inputs up to (t + 1) * stride - 1."""

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        span = (self.kernel_size[0] - 1) * self.dilation[0] + 1
        x = causal_window(self, x, state, span, self.stride[0])
        if x.shape[-1] < span:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        return super().forward(x)


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha with a learnt alpha per channel (periodic inductive bias)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (1.0 - torch.cos(2.0 * self.alpha * x)) * (0.5 / (self.alpha + 1e-9))  # sin^2 y = (1 - cos 2y) / 2


class ResidualUnit(nn.Module):
    """Dilated causal conv -> Snake -> 1x1 conv (its input is already Snake-activated)."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, channels, kernel, dilation=dilation)
        self.act = Snake(channels)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        return self.proj(self.act(self.conv(x, state)))


class EncoderStage(nn.Module):
    """Three parallel residual units (dilations 1, 3, 9) averaged and added back, then a strided conv.

    The units share one input Snake (they see the same input; Muffin/DAC give each its own): at
    24 kHz the activations cost more than the convolutions, and this keeps the encoder >20x real time.
    """

    def __init__(self, cin: int, cout: int, stride: int, config: TokenizerConfig) -> None:
        super().__init__()
        self.act_in = Snake(cin)
        self.units = nn.ModuleList(ResidualUnit(cin, config.res_kernel, d) for d in config.dilations)
        self.act = Snake(cin)
        self.down = CausalConv1d(cin, cout, 2 * stride, stride=stride)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        h = self.act_in(x)
        x = x + sum(u(h, state) for u in self.units) / len(self.units)  # (B, cin, T)
        return self.down(self.act(x), state)  # (B, cout, T / stride)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv -> LayerNorm -> MLP (x mult) -> scaled residual (Vocos' backbone)."""

    def __init__(self, dim: int, kernel: int, mult: int) -> None:
        super().__init__()
        self.dw = CausalConv1d(dim, dim, kernel, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, mult * dim), nn.Linear(mult * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-2))

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        h = self.norm(self.dw(x, state).transpose(1, 2))  # (B, T, C)
        h = self.fc2(F.gelu(self.fc1(h))) * self.gamma
        return x + h.transpose(1, 2)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filters (no librosa at runtime)."""
    fmax = fmax or sample_rate / 2

    def mel(f):
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    edges = 700.0 * (10 ** (torch.linspace(mel(torch.tensor(fmin)), mel(torch.tensor(fmax)), n_mels + 2) / 2595.0) - 1.0)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lower) / (centre - lower)
    down = (upper - freqs) / (upper - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0)


class CausalLogMel(nn.Module):
    """Log-mel frames at ``sample_rate / hop``; frame t ends at sample (t + 1) hop (causal)."""

    def __init__(self, sample_rate: int, hop: int, n_mels: int) -> None:
        super().__init__()
        self.hop, self.n_fft = hop, 2 * hop
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("fb", mel_filterbank(sample_rate, self.n_fft, n_mels), persistent=False)

    def forward(self, wav: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """wav (B, N) -> (B, n_mels, N // hop)."""
        x = causal_window(self, wav, state, self.n_fft, self.hop)
        frames = x.unfold(-1, self.n_fft, self.hop) * self.window  # (B, T, n_fft)
        power = torch.fft.rfft(frames).abs().pow(2)  # (B, T, F)
        return torch.log(power @ self.fb.t() + 1e-5).transpose(1, 2)  # (B, n_mels, T)


class BandSplit(nn.Module):
    """Learnable FFT band split over the channels of each frame: e = low + high exactly.

    rFFT along the channel axis, a soft mask (sigmoid of one learnt logit per bin, starting as a
    low-pass at half the bins) keeps the low band, the rest is the high band. Per frame: causal.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        bins = dim // 2 + 1
        self.dim = dim
        self.logits = nn.Parameter(4.0 * (bins / 2 - torch.arange(bins).float()) / bins * 4)

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """e (B, D, T) -> (low (B, D, T), high (B, D, T))."""
        spec = torch.fft.rfft(e, dim=1)  # (B, D/2+1, T)
        low = torch.fft.irfft(spec * torch.sigmoid(self.logits)[None, :, None], n=self.dim, dim=1)
        return low, e - low


# ---------------------------------------------------------------------------------------------
# Config


@dataclass
class TokenizerConfig:
    sample_rate: int = SAMPLE_RATE
    channels: int = 4  # width after the input conv; doubles at each encoder stage (thin at 24 kHz: the cost is there)
    strides: tuple[int, ...] = (4, 4, 5, 6)  # product = samples per 50 Hz latent frame
    dilations: tuple[int, ...] = (1, 3, 9)  # the parallel residual units of each stage
    res_kernel: int = 5
    latent_dim: int = 128  # acoustic latent at 50 Hz
    token_stride: int = 4  # 50 Hz -> 12.5 Hz before quantisation
    semantic: bool = True  # False: no semantic branch, all codebooks acoustic (the ablation)
    n_mels: int = 64  # semantic encoder input
    semantic_dim: int = 128
    semantic_layers: int = 3
    num_semantic_codebooks: int = 2
    num_codebooks: int = 8  # semantic + acoustic
    codebook_size: int = 1024
    codebook_dim: int = 8  # factorised lookup dimension
    quantizer_dim: int = 128  # each stream at 12.5 Hz
    quantizer_dropout: float = 0.0  # probability that a training batch uses fewer acoustic codebooks
    decoder_dim: int = 256
    decoder_layers: int = 4
    kernel: int = 7  # causal depthwise kernel of the ConvNeXt blocks
    mult: int = 3  # ConvNeXt MLP expansion
    hop: int = 480  # ISTFT hop (decoder frame rate = sample_rate / hop)
    n_fft: int = 1920
    teacher_dim: int = 0  # semantic teacher: phoneme classes (or SSL feature width); 0 = no head
    teacher_kind: str = "classes"  # "classes" (cross-entropy) or "features" (L2 + cosine)
    harmonics: int = 0  # a harmonic-plus-noise decoder: this many harmonics of a predicted F0 added to the ISTFT; 0 = off
    f0_min: float = 50.0  # the harmonic branch's F0 range (Hz)
    f0_max: float = 600.0
    harmonic_mix: float = 0.8  # in voiced frames the ISTFT keeps 1 - mix x voicing of its output: the sines carry the voice

    @property
    def frame_samples(self) -> int:
        return math.prod(self.strides)

    @property
    def token_samples(self) -> int:
        return self.frame_samples * self.token_stride

    def validate(self) -> TokenizerConfig:
        if self.token_samples % self.hop:
            raise ValueError(f"tokenizer config: hop {self.hop} must divide the token length {self.token_samples}")
        if self.n_fft < self.hop:
            raise ValueError(f"tokenizer config: n_fft {self.n_fft} < hop {self.hop}")
        if self.semantic and not 0 < self.num_semantic_codebooks < self.num_codebooks:
            raise ValueError(f"tokenizer config: {self.num_semantic_codebooks} semantic of {self.num_codebooks} codebooks")
        if self.harmonics < 0 or not 0 < self.f0_min < self.f0_max or not 0 <= self.harmonic_mix <= 1:
            raise ValueError(f"tokenizer config: harmonics {self.harmonics}, F0 range {self.f0_min}-{self.f0_max} Hz, "
                             f"mix {self.harmonic_mix}")
        if self.teacher_kind not in ("classes", "features"):
            raise ValueError(f"tokenizer config: teacher_kind {self.teacher_kind!r} is not 'classes' or 'features'")
        return self


CONFIGS = {
    "small": TokenizerConfig(),
    "tiny": TokenizerConfig(channels=2, latent_dim=32, n_mels=32, semantic_dim=32, semantic_layers=1, codebook_size=64,
                            codebook_dim=4, quantizer_dim=32, decoder_dim=32, decoder_layers=1, mult=2, hop=480, n_fft=960),
}


# ---------------------------------------------------------------------------------------------
# The model


class SpeechTokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = c = config.validate()
        # acoustic encoder
        self.enc_in = CausalConv1d(1, c.channels, 7)
        chans = [c.channels * 2**i for i in range(len(c.strides) + 1)]
        self.enc_stages = nn.ModuleList(EncoderStage(chans[i], chans[i + 1], s, c) for i, s in enumerate(c.strides))
        self.enc_out = nn.Sequential(Snake(chans[-1]), nn.Conv1d(chans[-1], c.latent_dim, 1))
        # semantic branch
        n_acoustic = c.num_codebooks - (c.num_semantic_codebooks if c.semantic else 0)
        if c.semantic:
            self.mel = CausalLogMel(c.sample_rate, c.frame_samples, c.n_mels)
            self.sem_in = CausalConv1d(c.n_mels, c.semantic_dim, 3)
            self.sem_blocks = nn.ModuleList(ConvNeXtBlock(c.semantic_dim, c.kernel, c.mult) for _ in range(c.semantic_layers))
            self.band = BandSplit(c.semantic_dim)
            self.high_proj = nn.Conv1d(c.semantic_dim, c.latent_dim, 1)
            self.sem_down = CausalConv1d(c.semantic_dim, c.quantizer_dim, 2 * c.token_stride, stride=c.token_stride)
            self.sem_rvq = ResidualVQ(c.quantizer_dim, c.num_semantic_codebooks, c.codebook_size, c.codebook_dim)
            if c.teacher_dim:
                self.semantic_head = nn.Linear(c.quantizer_dim, c.token_stride * c.teacher_dim)
        self.ac_down = CausalConv1d(c.latent_dim, c.quantizer_dim, 2 * c.token_stride, stride=c.token_stride)
        self.ac_rvq = ResidualVQ(c.quantizer_dim, n_acoustic, c.codebook_size, c.codebook_dim)
        # decoder
        self.dec_in = nn.Conv1d((2 if c.semantic else 1) * c.quantizer_dim, c.decoder_dim, 1)
        self.dec_conv = CausalConv1d(c.decoder_dim, c.decoder_dim, 3)
        self.dec_blocks = nn.ModuleList(ConvNeXtBlock(c.decoder_dim, c.kernel, c.mult) for _ in range(c.decoder_layers))
        self.dec_norm = nn.LayerNorm(c.decoder_dim)
        self.head = nn.Linear(c.decoder_dim, 2 * (c.n_fft // 2 + 1))
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        if c.harmonics:  # per frame: F0, voicing logit, loudness, harmonic distribution (K)
            self.harm_head = nn.Linear(c.decoder_dim, 3 + c.harmonics)

    # Parameters that only read codes (the decoder and the phoneme head): training them alone keeps
    # every code the encoder gives, so a TTS trained on earlier codes still fits (``--freeze-encoder``).
    DECODER_PARTS = ("dec_in.", "dec_conv.", "dec_blocks.", "dec_norm.", "head.", "semantic_head.", "harm_head.")

    def is_decoder_parameter(self, name: str) -> bool:
        return name.startswith(self.DECODER_PARTS)

    def code_digest(self) -> str:
        """A digest of the weights that decide the codes (encoder, band split, quantisers)."""
        import hashlib

        h = hashlib.sha256()
        for name, t in sorted(self.named_parameters()):  # buffers (codebook usage counts) decide nothing
            if not self.is_decoder_parameter(name):
                h.update(name.encode())
                h.update(t.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    # -- public facts -----------------------------------------------------------------------------

    num_codebooks = property(lambda self: self.config.num_codebooks)
    codebook_size = property(lambda self: self.config.codebook_size)
    sample_rate = property(lambda self: self.config.sample_rate)
    frame_rate = property(lambda self: self.config.sample_rate / self.config.token_samples)  # 12.5 Hz
    bitrate = property(lambda self: self.num_codebooks * math.log2(self.codebook_size) * self.frame_rate)  # bit/s

    # -- encoder ------------------------------------------------------------------------------------

    def _latents(self, wav: torch.Tensor, state: StreamState | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """wav (B, N) -> (semantic low band (B, Qd, N/1920) or None, acoustic (B, Qd, N/1920))."""
        c = self.config
        x = self.enc_in(wav[:, None], state)  # (B, C, N)
        for stage in self.enc_stages:
            x = stage(x, state)  # (B, 2C, N / stride)
        acoustic = self.enc_out(x)  # (B, latent, T50)
        semantic = None
        if c.semantic:
            e = self.sem_in(self.mel(wav, state), state)  # (B, D, T50)
            for block in self.sem_blocks:
                e = block(e, state)
            low, high = self.band(e)
            acoustic = acoustic + self.high_proj(high)
            semantic = self.sem_down(low, state)  # (B, Qd, T12)
        return semantic, self.ac_down(acoustic, state)  # (B, Qd, T12)

    def quantize(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training forward of the encoder + RVQ: wav (B, N), N a multiple of 1920.

        Returns codes (B, 8, T), the quantised streams "q_semantic" / "q_acoustic" (B, Qd, T),
        "semantic_pred" (B, 4T, teacher_dim) when there is a teacher head, and the VQ losses.
        """
        semantic, acoustic = self._latents(wav)
        n_q = None
        if self.training and self.config.quantizer_dropout and torch.rand(()) < self.config.quantizer_dropout:
            n_q = int(torch.randint(1, self.ac_rvq.num_codebooks + 1, ()))
        qa, codes, losses = self.ac_rvq(acoustic.transpose(1, 2), n_q)  # (B, T, Qd), (B, 6, T)
        out = {"q_acoustic": qa.transpose(1, 2), "commitment": losses["commitment"], "codebook": losses["codebook"]}
        if semantic is not None:
            qs, sem_codes, sem_losses = self.sem_rvq(semantic.transpose(1, 2))
            codes = torch.cat([sem_codes, codes], 1)
            out["q_semantic"] = qs.transpose(1, 2)
            out["commitment"] = out["commitment"] + sem_losses["commitment"]
            out["codebook"] = out["codebook"] + sem_losses["codebook"]
            if hasattr(self, "semantic_head"):
                B, T, _ = qs.shape
                out["semantic_pred"] = self.semantic_head(qs).reshape(B, T * self.config.token_stride, -1)
        out["codes"] = codes
        return out

    # -- decoder ------------------------------------------------------------------------------------

    def _embed(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, 8, T) -> decoder input (B, 2 Qd, T) (semantic and acoustic streams side by side)."""
        k = self.config.num_semantic_codebooks if self.config.semantic else 0
        parts = [self.sem_rvq.decode(codes[:, :k])] if k else []
        parts.append(self.ac_rvq.decode(codes[:, k:]))
        return torch.cat(parts, -1).transpose(1, 2)

    def _features(self, z: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """Quantised streams (B, 2 Qd, T) -> the decoder's normalised features (B, T50, Cd), what its heads read."""
        c = self.config
        x = self.dec_in(z).repeat_interleave(c.token_samples // c.hop, -1)  # (B, Cd, T50)
        x = self.dec_conv(x, state)
        for block in self.dec_blocks:
            x = block(x, state)
        return self.dec_norm(x.transpose(1, 2))

    def _synthesize(self, z: torch.Tensor, state: StreamState | None = None, extras: dict | None = None) -> torch.Tensor:
        """Quantised streams (B, 2 Qd, T) -> waveform (B, 1920 T). ``extras``: gets the harmonic branch's
        per-frame F0 and voicing logit (training supervises them)."""
        c = self.config
        hn = self._features(z, state)  # (B, T50, Cd)
        log_mag, phase = self.head(hn).chunk(2, -1)  # (B, T50, F) each
        spec = torch.polar(torch.exp(log_mag.clamp(max=7.0)), phase)  # (B, T50, F)
        frames = torch.fft.irfft(spec, n=c.n_fft) * self.window  # (B, T50, n_fft)
        audio = self._overlap_add(frames, state)
        if c.harmonics:
            harmonic, voicing = self._harmonic(hn, state, extras)
            audio = audio * (1 - c.harmonic_mix * voicing) + harmonic
        return audio

    def _harmonic(self, hn: torch.Tensor, state: StreamState | None, extras: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The harmonic branch (DDSP's harmonic oscillator): (B, T50, Cd) -> (B, hop T50) samples and
        the voicing gate per sample (B, hop T50), which scales the ISTFT's share.

        An ISTFT head must get each frame's phases right for a voice's harmonics to line up across its
        overlapping frames; a mel loss never asks it to, and without a long GAN run it does not, so its
        voiced sounds come out aperiodic (whispered). Here a sum of sines at multiples of a predicted
        F0 is periodic by construction; the ISTFT keeps the noise and what the sines miss. Per frame:
        F0 (supervised with the YIN targets), a voicing gate, a loudness and the share of each harmonic;
        each ramps linearly from the previous frame's value over the frame (causal: a frame's samples
        need nothing later), the phase is the running integral of F0 (float64, carried in ``state``),
        and harmonics at or above Nyquist are silent. Added to an ISTFT that already speaks, the sines
        only add error until their F0 is right, and the mel loss silences them (measured: loudness
        0.002 after 700 steps); so in voiced frames the ISTFT gives up ``harmonic_mix`` of its output.
        """
        c = self.config
        p = self.harm_head(hn)  # (B, T, 3 + K)
        B, T, _ = p.shape
        f0 = c.f0_min * torch.exp(torch.sigmoid(p[..., 0]) * math.log(c.f0_max / c.f0_min))  # (B, T) Hz
        voicing = p[..., 1]  # (B, T) logit
        gate = torch.sigmoid(voicing)[..., None]  # (B, T, 1)
        amps = F.softplus(p[..., 2:3]) * torch.softmax(p[..., 3:], -1) * gate  # (B, T, K)
        if extras is not None:
            extras["f0_pred"], extras["voicing_logit"] = f0, voicing
        frames = torch.cat([f0.detach()[..., None], gate, amps], -1)  # (B, T, 2 + K): F0 is learnt from its targets only
        carried = state.buffers.get(self.harm_head) if state is not None else None
        first, phase0 = carried if carried is not None else (frames[:, :1], torch.zeros(B, dtype=torch.float64, device=hn.device))
        previous = torch.cat([first, frames[:, :-1]], 1)  # (B, T, 2 + K)
        ramp = torch.arange(1, c.hop + 1, device=hn.device, dtype=hn.dtype) / c.hop  # (hop,)
        tracks = previous[..., None] + (frames - previous)[..., None] * ramp  # (B, T, 2 + K, hop)
        tracks = tracks.permute(0, 2, 1, 3).reshape(B, 2 + c.harmonics, T * c.hop)  # (B, 2 + K, N)
        f0s, gates, amp = tracks[:, 0], tracks[:, 1], tracks[:, 2:]  # (B, N), (B, N), (B, K, N)
        phase = phase0[:, None] + torch.cumsum(2 * math.pi * f0s.double() / c.sample_rate, -1)  # (B, N) radians
        phase = torch.remainder(phase, 2 * math.pi)
        if state is not None:
            state.buffers[self.harm_head] = (frames[:, -1:], phase[:, -1])
        k = torch.arange(1, c.harmonics + 1, device=hn.device, dtype=hn.dtype)[None, :, None]  # (1, K, 1)
        audible = (k * f0s[:, None, :] < c.sample_rate / 2).to(hn.dtype)  # (B, K, N)
        return (torch.sin(k * phase.to(hn.dtype)[:, None, :]) * amp * audible).sum(1), gates  # (B, N) each

    def _overlap_add(self, frames: torch.Tensor, state: StreamState | None) -> torch.Tensor:
        """Frame j spans samples [j hop, j hop + n_fft); samples [j hop, (j+1) hop) are final after it."""
        c = self.config
        B, T, n = frames.shape
        y = F.fold(frames.transpose(1, 2), (1, (T - 1) * c.hop + n), (1, n), stride=(1, c.hop)).reshape(B, -1)
        tail_len = n - c.hop
        if state is not None:
            tail = state.buffers.get(self)
            if tail is not None:
                y[:, :tail_len] += tail
            state.buffers[self] = y[:, T * c.hop:]
        norm = (self.window**2).reshape(-1, c.hop).sum(0).mean()  # steady-state window overlap
        return y[:, : T * c.hop] / norm

    # -- public API ---------------------------------------------------------------------------------

    def forward(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training forward: wav (B, N), N a multiple of 1920 -> quantize() outputs + "audio" (B, N)."""
        out = self.quantize(wav)
        z = out["q_acoustic"] if not self.config.semantic else torch.cat([out["q_semantic"], out["q_acoustic"]], 1)
        out["audio"] = self._synthesize(z, extras=out)
        return out

    def _check_wav(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        if sample_rate != self.sample_rate:
            raise ValueError(f"tokenizer: audio at {sample_rate} Hz, expected {self.sample_rate} Hz (resample first)")
        if not torch.is_tensor(wav) or wav.dim() != 2 or not wav.is_floating_point():
            raise ValueError(f"tokenizer: expected a float tensor (B, N), got {getattr(wav, 'shape', type(wav))}")
        return wav.to(self.head.weight.dtype)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """wav (B, N) float at 24 kHz -> codes (B, 8, ceil(N / 1920)) int64 (the end is zero-padded)."""
        wav = self._check_wav(wav, sample_rate)
        if wav.shape[-1] == 0:
            raise ValueError("tokenizer: empty audio (0 samples)")
        wav = F.pad(wav, (0, -wav.shape[-1] % self.config.token_samples))
        semantic, acoustic = self._latents(wav)
        codes = self.ac_rvq.encode(acoustic.transpose(1, 2))
        if semantic is not None:
            codes = torch.cat([self.sem_rvq.encode(semantic.transpose(1, 2)), codes], 1)
        return codes

    def _check_codes(self, codes: torch.Tensor) -> None:
        if not torch.is_tensor(codes) or codes.dim() != 3 or codes.shape[1] != self.num_codebooks:
            raise ValueError(f"tokenizer: expected codes (B, {self.num_codebooks}, T), got {getattr(codes, 'shape', type(codes))}")
        if codes.is_floating_point() or codes.is_complex():
            raise ValueError(f"tokenizer: codes must be integers, got {codes.dtype}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"tokenizer: codes out of range [0, {self.codebook_size}): "
                             f"min {int(codes.min())}, max {int(codes.max())}")

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, 8, T) int -> waveform (B, 1920 T) at 24 kHz."""
        self._check_codes(codes)
        if codes.shape[-1] == 0:
            return torch.zeros(codes.shape[0], 0)
        return self._synthesize(self._embed(codes.long()))

    # -- streaming ----------------------------------------------------------------------------------

    def new_encoder_state(self) -> StreamState:
        return StreamState()

    def new_decoder_state(self) -> StreamState:
        return StreamState()

    @torch.no_grad()
    def encode_step(self, state: StreamState, samples: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """Feed (B, n) new samples (any n); returns the codes (B, 8, k) of the k tokens they complete."""
        samples = self._check_wav(samples, sample_rate)
        if state.pending is not None:
            samples = torch.cat([state.pending, samples], -1)
        whole = samples.shape[-1] // self.config.token_samples * self.config.token_samples
        state.pending = samples[:, whole:]
        if whole == 0:
            return torch.zeros(samples.shape[0], self.num_codebooks, 0, dtype=torch.long)
        semantic, acoustic = self._latents(samples[:, :whole], state)
        codes = self.ac_rvq.encode(acoustic.transpose(1, 2))
        if semantic is not None:
            codes = torch.cat([self.sem_rvq.encode(semantic.transpose(1, 2)), codes], 1)
        return codes

    @torch.no_grad()
    def decode_step(self, state: StreamState, codes: torch.Tensor) -> torch.Tensor:
        """Feed (B, 8, k) codes; returns their (B, 1920 k) samples (final: the next call never changes them)."""
        self._check_codes(codes)
        if codes.shape[-1] == 0:
            return torch.zeros(codes.shape[0], 0)
        return self._synthesize(self._embed(codes.long()), state)

    # -- loading ------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> SpeechTokenizer:
        """The inference tokenizer of a checkpoint directory, loaded once per process and shared (read-only)."""
        key = Path(directory).resolve()
        with _PRETRAINED_LOCK:
            model = _PRETRAINED.get(key)
            if model is None:
                model = load_tokenizer(key)
                model.requires_grad_(False)
                _PRETRAINED[key] = model
        return model


_PRETRAINED: dict[Path, SpeechTokenizer] = {}
_PRETRAINED_LOCK = threading.Lock()


def config_from_dict(d: dict) -> TokenizerConfig:
    known = TokenizerConfig.__dataclass_fields__
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise CheckpointError(f"tokenizer config has unknown fields {unknown}")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return TokenizerConfig(**d)


def config_to_dict(config: TokenizerConfig) -> dict:
    return asdict(config)


def load_tokenizer(directory: str | Path) -> SpeechTokenizer:
    """A fresh tokenizer with a checkpoint's weights, in eval mode.

    Reads a training run's checkpoint (weights under ``tokenizer.``, discriminators ignored) or a
    bare tokenizer checkpoint; clear ``CheckpointError`` if missing, corrupt or mismatched.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_config(directory)
    cfg = meta.get("config", {})
    cfg = cfg.get("tokenizer", cfg)
    if not isinstance(cfg, dict) or "strides" not in cfg:
        raise CheckpointError(f"{directory}: config.json holds no speech tokenizer config")
    try:
        model = SpeechTokenizer(config_from_dict(cfg))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{directory}: bad tokenizer config ({e})") from None
    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{directory}: no model.safetensors")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable weights ({e})") from None
    if any(k.startswith("tokenizer.") for k in weights):
        weights = {k[len("tokenizer."):]: v for k, v in weights.items() if k.startswith("tokenizer.")}
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise CheckpointError(f"{directory}: weights do not match the tokenizer config ({str(e)[:300]})") from None
    if missing or unexpected:
        raise CheckpointError(f"{directory}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.eval()
