"""Causal VAE: strict causality of encoder and decoder, streaming equals offline, state snapshot."""

from __future__ import annotations

import pytest
import torch

from anima.body.model.vae import MotionVAE, VAEConfig

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]



@pytest.fixture(scope="module")
def vae() -> MotionVAE:
    torch.manual_seed(0)
    return MotionVAE(VAEConfig(width=32, blocks=2)).eval()


def test_shapes_and_errors(vae):
    mean, logvar = vae.encode(torch.randn(2, 24, 263))
    assert mean.shape == logvar.shape == (2, 6, 4)
    assert vae.decode(mean).shape == (2, 24, 263)
    with pytest.raises(ValueError, match="multiple of 4"):
        vae.encode(torch.randn(1, 10, 263))
    with pytest.raises(ValueError, match="expected"):
        vae.encode(torch.randn(1, 8, 262))


def test_encoder_is_causal(vae):
    """Latent k depends on frames <= 4k + 3 only: changing frames > t leaves the finished tokens bit-identical."""
    x = torch.randn(1, 40, 263)
    base, _ = vae.encode(x)
    for t in (0, 7, 13, 22, 39):
        y = x.clone()
        y[:, t + 1:] = torch.randn_like(y[:, t + 1:]) * 3
        out, _ = vae.encode(y)
        done = (t + 1) // 4  # tokens whose frames are all <= t
        assert torch.equal(out[:, :done], base[:, :done])
        if t + 1 < 40:
            assert not torch.allclose(out[:, done:], base[:, done:])


def test_decoder_is_causal_frame_by_frame(vae):
    """Decoded frame t does not change when latents after token t // 4 change."""
    z = torch.randn(1, 10, 4)
    base = vae.decode(z)
    for k in range(10):
        w = z.clone()
        w[:, k + 1:] += torch.randn_like(w[:, k + 1:])
        out = vae.decode(w)
        assert torch.equal(out[:, :4 * (k + 1)], base[:, :4 * (k + 1)])


def test_gradient_causality(vae):
    """The gradient of reconstructed frame t with respect to input frames > t is zero (STYLE T4)."""
    x = torch.randn(1, 32, 263, requires_grad=True)
    mean, _ = vae.encode(x)
    out = vae.decode(mean)
    t = 13
    out[0, t].sum().backward()
    token_end = 4 * (t // 4) + 3  # the VAE is causal at token granularity: frame t sees its token's frames
    assert torch.all(x.grad[0, token_end + 1:] == 0)
    assert x.grad[0, : t + 1].abs().sum() > 0


def test_streaming_decoder_equals_offline(vae):
    z = torch.randn(2, 12, 4)
    full = vae.decode(z)
    state = vae.new_state()
    parts = [vae.step(z[:, i:i + 1], state) for i in range(6)] + [vae.step(z[:, 6:12], state)]
    stream = torch.cat(parts, dim=1)
    assert ((stream - full).abs().max() / full.abs().max()) < 1e-6
    # the offline decode keeps no state
    assert torch.equal(vae.decode(z), full)
    with pytest.raises(RuntimeError, match="new_state"):
        vae.step(z, None)


def test_latent_noise_only_while_training():
    """Decoder-robustness noise perturbs sampled latents in training, never at inference."""
    torch.manual_seed(0)
    noisy = MotionVAE(VAEConfig(width=16, blocks=1, latent_noise=0.5))
    x = torch.randn(2, 16, 263)
    noisy.eval()
    torch.testing.assert_close(noisy(x, sample=False)[0], noisy.decode(noisy.encode(x)[0]))
    clean = MotionVAE(VAEConfig(width=16, blocks=1))
    clean.load_state_dict(noisy.state_dict())
    noisy.train()
    clean.train()
    torch.manual_seed(1)
    a = noisy(x)[0]
    torch.manual_seed(1)
    b = clean(x)[0]
    assert not torch.allclose(a, b)  # the same draw plus the extra latent noise
