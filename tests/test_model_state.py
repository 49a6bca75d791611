"""Per-session streaming state: one shared model, many sessions.

Every streaming model holds weights only; a session's state is an object the caller owns
(``state = model.new_state(...)``, ``model.step(x, state)``, ``state.reset()``). These tests show
that sessions interleaved over one model give exactly what each gives alone, that ``reset`` is a
fresh state, that a cloned state continues exactly as the original (STYLE.md T5), that the
FloodDiffusion sampler matches a slow reference loop written here (T6), and that loading weights
twice shares them.
"""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
import torch

from anima.body.data.humanml3d import recover_from_ric
from anima.body.model.dit import DiTConfig, MotionDiT
from anima.body.model.schedule import make_schedule
from anima.body.model.streaming import FloodWeights, MotionStream
from anima.body.model.vae import MotionVAE, VAEConfig
from anima.body.text import TextEncoder
from anima.face.model.quantizer import MultiScaleQuantizer, QuantizerConfig
from anima.face.model.unils import SamplingConfig, UniLS, UniLSConfig

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]


# -- UniLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unils() -> UniLS:
    torch.manual_seed(0)
    q = MultiScaleQuantizer(QuantizerConfig(hidden=32, codebook_size=32, code_dim=16)).eval()
    cfg = UniLSConfig(n_layer=2, n_embd=32, n_head=2, code_dim=16, codebook_size=32, dropout=0.0, audio=True)
    model = UniLS(q, cfg)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.normal_(0.0, 0.05)  # non-zero cross-attention, so the audio path matters
    return model.eval()


def _audio(seed: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, frames, 80, generator=g), torch.randn(1, frames, 80, generator=g)


def _run(model: UniLS, state, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.step(own[:, f], other[:, f], state) for f in range(own.shape[1])])  # (T, 50)


def test_unils_sessions_interleaved_equal_each_alone(unils):
    """Two sessions (different style, seed, audio) stepped in turn over one model; 210 frames cross
    a window boundary and a cache rebuild."""
    frames = 210
    refs = [torch.randn(1, 100, 50, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    audio = [_audio(3, frames), _audio(4, frames)]
    alone = [_run(unils, unils.new_state(refs[i], seed=10 + i), *audio[i]) for i in range(2)]
    states = [unils.new_state(refs[i], seed=10 + i) for i in range(2)]
    together = [[], []]
    for f in range(frames):
        for i in (1, 0):
            together[i].append(unils.step(audio[i][0][:, f], audio[i][1][:, f], states[i]))
    for i in range(2):
        assert torch.equal(torch.cat(together[i]), alone[i])
    assert not torch.equal(alone[0], alone[1])  # the check can fail: the sessions differ


def test_unils_sessions_in_threads_equal_each_alone(unils):
    """The server steps sessions in worker threads: the shared model is only read."""
    refs = [torch.randn(1, 100, 50, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)]
    audio = [_audio(20 + i, 120) for i in range(3)]
    alone = [_run(unils, unils.new_state(refs[i], seed=i), *audio[i]) for i in range(3)]
    got: dict[int, torch.Tensor] = {}

    def session(i: int) -> None:
        got[i] = _run(unils, unils.new_state(refs[i], seed=i), *audio[i])

    threads = [threading.Thread(target=session, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(3):
        assert torch.equal(got[i], alone[i])


def test_unils_reset_is_a_fresh_state(unils):
    ref = torch.randn(1, 100, 50)
    own, other = _audio(5, 60)
    fresh = _run(unils, unils.new_state(ref, SamplingConfig(top_k=8), seed=3), own, other)
    state = unils.new_state(ref, SamplingConfig(top_k=8), seed=3)
    _run(unils, state, *_audio(6, 130))  # past a window boundary, RNG advanced
    state.reset()
    assert torch.equal(_run(unils, state, own, other), fresh)


def test_unils_state_snapshot_restore(unils):
    """T5: clone the state, step (through a window boundary), restore the clone, step again."""
    ref = torch.randn(1, 100, 50)
    state = unils.new_state(ref, seed=7)
    _run(unils, state, *_audio(8, 90))
    snapshot = state.clone()
    own, other = _audio(9, 30)
    a = _run(unils, state, own, other)
    b = _run(unils, snapshot, own, other)
    assert torch.equal(a, b)
    assert not torch.equal(a, _run(unils, state, own, other))  # the check can fail: state moved on


# -- the causal VAE decoder ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae() -> MotionVAE:
    torch.manual_seed(0)
    return MotionVAE(VAEConfig(width=16, blocks=1)).eval()


def test_vae_sessions_interleaved_equal_each_alone(vae):
    z = [torch.randn(1, 10, 4), torch.randn(1, 10, 4)]
    with torch.no_grad():
        alone = [torch.cat([vae.step(x[:, k:k + 1], s) for k in range(10)], 1) for x, s in zip(z, (vae.new_state(), vae.new_state()), strict=True)]
        states = [vae.new_state(), vae.new_state()]
        together = [[], []]
        for k in range(10):
            for i in (1, 0):
                together[i].append(vae.step(z[i][:, k:k + 1], states[i]))
    for i in range(2):
        assert torch.equal(torch.cat(together[i], 1), alone[i])
        torch.testing.assert_close(alone[i], vae.decode(z[i]), atol=1e-5, rtol=1e-5)


def test_vae_reset_and_snapshot_restore(vae):
    z = torch.randn(1, 9, 4)
    with torch.no_grad():
        fresh = vae.step(z[:, 6:], vae.new_state())
        state = vae.new_state()
        vae.step(z[:, :3], state)
        snapshot = state.clone()
        a = vae.step(z[:, 3:6], state)
        b = vae.step(z[:, 3:6], snapshot)
        assert torch.equal(a, b)  # T5
        assert not torch.equal(vae.step(z[:, 3:6], state), a)  # the check can fail: the caches moved on
        state.reset()
        assert torch.equal(vae.step(z[:, 6:], state), fresh)


# -- FloodDiffusion's streaming sampler -----------------------------------------------------------------

TEXTS = {t: np.random.default_rng(i).normal(size=384).astype(np.float32) / 20
         for i, t in enumerate(["a person bows", "a person waves goodbye"])}


@pytest.fixture(scope="module")
def flood() -> tuple[MotionDiT, MotionVAE]:
    torch.manual_seed(0)
    vae = MotionVAE(VAEConfig(width=16, blocks=1)).eval()
    model = MotionDiT(DiTConfig.for_method("flood", width=32, depth=2, heads=2, history=6)).eval()
    with torch.no_grad():
        for p in model.parameters():  # adaLN-Zero init gives a zero velocity: perturb
            p.add_(torch.randn_like(p) * 0.05)
    return model, vae


def _stream(flood, seed: int) -> MotionStream:
    model, vae = flood
    mean, std = np.linspace(-0.1, 0.1, 263), np.full(263, 0.1)
    return MotionStream(model, vae, make_schedule("flood", model.config), mean, std, TextEncoder(TEXTS), seed=seed)


def _steps(stream: MotionStream, n: int) -> np.ndarray:
    return np.concatenate([stream.step() for _ in range(n)])  # (frames, 22, 3)


def reference_flood(model: MotionDiT, vae: MotionVAE, text: np.ndarray, guidance: float, floor: float, seed: int,
                    steps: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The sampler written out plainly: levels from the paper's formula token by token, each
    guided prediction a separate call, and the committed latents decoded offline at the end."""
    c = model.config
    K, n_s = c.denoise_steps, c.n_s

    def level(k: int, m: int) -> float:  # s_k(t) = clamp(1 + k / n_s - t, 0, 1), t = m / K (integers: exact)
        return (min(max(K + k * (K // n_s) - m, 0), K) / K) ** c.level_power  # warped spacing (schedule.py)

    g = torch.Generator().manual_seed(seed)
    latents: dict[int, torch.Tensor] = {}
    emb = torch.from_numpy(text)
    for m in range(steps):
        done = [k for k in range(m + 1) if level(k, m) == 0]
        active = [k for k in range(m + 1) if level(k, m) > 0 and level(k, m + 1) < 1]
        for k in active:
            if k not in latents:
                latents[k] = torch.randn(c.latent_dim, generator=g)
        hist = done[-c.history:]
        tokens = hist + active
        z = torch.stack([latents[k] for k in tokens])[None]  # (1, L, latent)
        lv = torch.tensor([level(k, m) for k in tokens], dtype=torch.float32)[None]
        txt = emb.repeat(len(tokens), 1)[None]
        pos = (torch.arange(len(tokens)) - len(hist) + c.history)[None]
        with torch.no_grad():
            v_cond = model(z, lv, txt, torch.ones(1, len(tokens), dtype=torch.bool), pos)[0]
            v_null = model(z, lv, txt, torch.zeros(1, len(tokens), dtype=torch.bool), pos)[0]
        for i, k in enumerate(tokens):
            if k in active:
                w = guidance if level(k, m) > floor else 1.0
                v = w * v_cond[i] - (w - 1.0) * v_null[i]
                latents[k] = latents[k] + v * (level(k, m) - level(k, m + 1))
    committed = [k for k in sorted(latents) if level(k, steps) == 0]
    with torch.no_grad():
        features = vae.decode(vae.from_diffusion(torch.stack([latents[k] for k in committed]))[None])[0]
    return recover_from_ric(features.double().numpy() * std + mean)


def test_flood_sampler_matches_slow_reference(flood):
    """T6: the streaming sampler (window bookkeeping, batched guidance, streaming VAE decode and
    streaming joint recovery) against the plain loop above, 40 steps = 16 committed tokens."""
    stream = _stream(flood, seed=4)
    stream.push_prompt("a person bows")
    joints = _steps(stream, 40)
    ref = reference_flood(*flood, TEXTS["a person bows"], stream.guidance, stream.guidance_floor, 4, 40,
                          stream.mean, stream.std)
    assert joints.shape == ref.shape == (64, 22, 3)
    np.testing.assert_allclose(joints, ref, atol=1e-6)


def test_flood_streams_interleaved_equal_each_alone_and_reset(flood):
    alone = []
    for seed, text in ((1, "a person bows"), (2, "a person waves goodbye")):
        s = _stream(flood, seed)
        s.push_prompt(text)
        alone.append(_steps(s, 30))
    streams = [_stream(flood, 1), _stream(flood, 2)]
    streams[0].push_prompt("a person bows")
    streams[1].push_prompt("a person waves goodbye")
    together = [[], []]
    for _ in range(30):
        for i in (1, 0):
            together[i].append(streams[i].step())
    for i in range(2):
        assert np.array_equal(np.concatenate(together[i]), alone[i])
    streams[0].reset()
    streams[0].push_prompt("a person bows")
    assert np.array_equal(_steps(streams[0], 30), alone[0])


# -- weights loaded once per process ------------------------------------------------------------------


def _same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pa, pb = a.state_dict(), b.state_dict()
    return pa.keys() == pb.keys() and all(pa[k].data_ptr() == pb[k].data_ptr() for k in pa)


def test_unils_weights_are_shared_and_loaded_once(tmp_path):
    from anima.face.unils import DEFAULT_WEIGHTS, UniLSFace

    if not (DEFAULT_WEIGHTS / "config.json").is_file():
        pytest.skip("no shipped UniLS weights")
    a, b = UniLSFace.load(seed=0), UniLSFace.load(seed=1)
    assert a.model is b.model and _same_tensors(a.model, b.model)
    assert a.state is not b.state
    assert UniLS.from_pretrained(DEFAULT_WEIGHTS) is a.model
    # sessions are built in worker threads: a new path loaded from 4 threads at once is read once
    copy = tmp_path / "unils"
    shutil.copytree(DEFAULT_WEIGHTS, copy)
    got = []
    threads = [threading.Thread(target=lambda: got.append(UniLS.from_pretrained(copy))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(m is got[0] for m in got) and got[0] is not a.model


def test_flood_weights_are_shared_and_loaded_once():
    from anima.body.flood import FloodBody
    from anima.body.paths import WEIGHTS

    if not (WEIGHTS / "flood" / "config.json").is_file():
        pytest.skip("no shipped FloodDiffusion weights")
    a, b = FloodBody.load(seed=0), FloodBody.load(seed=1)
    assert a.template is not b.template
    assert a.template.model is b.template.model and _same_tensors(a.template.model, b.template.model)
    assert a.template.vae is b.template.vae and _same_tensors(a.template.vae, b.template.vae)
    assert FloodWeights.load(WEIGHTS / "flood", WEIGHTS / "vae").model is a.template.model
    assert a.template.decoder_state is not b.template.decoder_state
