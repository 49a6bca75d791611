"""The mixture of transformers: the frozen speech expert is the TTS itself, the hybrid mask, schedules, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anima.e2e.mot.behaviour import TOKEN_DIM, pack, unpack
from anima.e2e.mot.model import MixtureOfTransformers, MoTConfig, add_noise, alpha_sigma, speech_digest
from anima.e2e.mot.sampling import SamplerSettings, SampleStats, sample_behaviour, schedule_matrix
from anima.talker.model.kodama_tts import KodamaTTS, KodamaTTSConfig, make_sequence

D = 12  # behaviour dims of the tiny tests


def tiny_tts(seed: int = 0) -> KodamaTTS:
    torch.manual_seed(seed)
    return KodamaTTS(KodamaTTSConfig.preset("tiny", symbols=("_", "a", "b", "c", "d"), codebook_size=16)).eval()


def tiny_mot(mode: str = "expert", tts: KodamaTTS | None = None) -> MixtureOfTransformers:
    torch.manual_seed(1)
    mot = MixtureOfTransformers(MoTConfig.preset("tiny", mode=mode, behaviour_dim=D), tts or tiny_tts())
    for p in mot.behaviour.out_proj.parameters():  # the zero-initialised output would hide every dependence
        torch.nn.init.normal_(p, std=0.5)
    return mot.eval()


def speech_inputs(tts: KodamaTTS, frames: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    seq = make_sequence(tts.config, [1, 2, 3, 4, 1], torch.randint(0, 16, (8, frames), generator=g))
    spk, emo = tts.condition(None, "calm")
    return spk, emo, seq["text"][None], seq["audio"][None], seq["is_audio"][None]


@pytest.mark.parametrize("mode", ["expert", "dense", "lora"])
def test_speech_pass_is_the_tts_forward(mode):
    tts = tiny_tts()
    mot = tiny_mot(mode, tts)
    inputs = speech_inputs(tts)
    reference = tts(*inputs)
    kv, logits = mot.speech_pass(*inputs, logits=True)
    assert torch.equal(logits, reference)  # LoRA starts at zero: every mode starts as the TTS
    state = tts.new_state()
    tts(*inputs, state=state)  # the TTS's own KV cache holds the same keys and values
    for layer, (k, v) in zip(state.layers, kv, strict=True):
        assert torch.allclose(layer.k[:, :, :state.length], k, atol=1e-6)
        assert torch.allclose(layer.v[:, :, :state.length], v, atol=1e-6)


def behaviour_out(mot, kv, z, n_speech, boa, levels=None):
    T = z.shape[1]
    positions, visible = mot.layout(torch.tensor([boa]), torch.tensor([n_speech]), T)
    levels = torch.full((1, T), 0.5) if levels is None else levels
    return mot.behaviour_pass(z, levels, positions, visible, torch.ones(1, T, dtype=torch.bool), kv), visible


def test_hybrid_mask_chunks_and_audio():
    tts = tiny_tts()
    mot = tiny_mot("expert", tts)
    inputs = speech_inputs(tts, frames=10)
    kv, _ = mot.speech_pass(*inputs)
    n_speech, boa = kv[0][0].shape[2], 2 + 5  # 2 conditioning + 5 phonemes, BOA at 7
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 8, D, generator=g)  # history 2 + 6 frames; chunks of 2 tokens
    out, visible = behaviour_out(mot, kv, z, n_speech, boa)
    z2 = z.clone()
    z2[:, 6:] += 1.0  # the last chunk changes
    out2, _ = behaviour_out(mot, kv, z2, n_speech, boa)
    assert torch.equal(out[:, :6], out2[:, :6])  # earlier chunks never see a later one
    z3 = z.clone()
    z3[:, 5] += 1.0  # the second token of chunk 2 changes
    out3, _ = behaviour_out(mot, kv, z3, n_speech, boa)
    assert not torch.allclose(out[:, 4], out3[:, 4])  # its chunk-mate sees it (bidirectional in a chunk)
    assert torch.equal(out[:, :4], out3[:, :4])
    # chunk 0 (history, before the speech) sees the text up to BOA; chunk 1 frames 0-1 + the delay's 7 steps
    assert visible[0].tolist()[:4] == [boa + 1, boa + 1, boa + 2 + 1 + 7, boa + 2 + 1 + 7]
    # later audio changes nothing for a chunk that cannot see it
    spk, emo, text, audio, is_audio = speech_inputs(tts, frames=10)
    audio2 = audio.clone()
    step = 10  # audio step 10 sits at position boa + 1 + 10: chunk 1 (frames 0-1) sees steps <= 8, chunk 3 <= 12
    audio2[0, boa + 1 + step - 2] = (audio2[0, boa + 1 + step - 2] + 1) % 16  # (audio has no conditioning positions)
    kv2, _ = mot.speech_pass(spk, emo, text, audio2, is_audio)
    out4, _ = behaviour_out(mot, kv2, z, n_speech, boa)
    assert torch.equal(out[:, :4], out4[:, :4])
    assert not torch.allclose(out[:, -2:], out4[:, -2:])


def test_silent_sequence_sees_all_its_text():
    mot = tiny_mot()
    positions, visible = mot.layout(torch.tensor([6]), torch.tensor([7]), 6, torch.tensor([True]))
    assert visible.tolist() == [[7] * 6]
    assert positions[0].tolist() == [5, 6, 7, 8, 9, 10]  # token t writes frame t - history at boa + 1 + frame


def test_bad_config_and_mode():
    with pytest.raises(ValueError, match="mode"):
        MixtureOfTransformers(MoTConfig(mode="adapter"), tiny_tts())
    with pytest.raises(ValueError, match="history"):
        MixtureOfTransformers(MoTConfig(chunk=4, history=6), tiny_tts())
    with pytest.raises(ValueError, match="unknown MoT config"):
        MoTConfig.preset("huge")


def _train_steps(mot, steps=3):
    from anima.e2e.mot.training.train import diffusion_loss

    tts = mot.speech
    spk, emo, text, audio, is_audio = speech_inputs(tts, frames=6)
    batch = {"speaker": spk, "emotion": emo, "text": text, "audio": audio, "is_audio": is_audio,
             "x": torch.randn(1, 8, D), "valid": torch.ones(1, 8, dtype=torch.bool), "boa": torch.tensor([7]),
             "n_speech": torch.tensor([2 + text.shape[1]]), "silent": torch.tensor([False])}
    params = [p for p in mot.trainable().parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    mot.train()
    for _ in range(steps):
        loss = diffusion_loss(mot, batch, torch.rand(1, 8), torch.randn(1, 8, D), torch.tensor([False]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return mot.eval(), (spk, emo, text, audio, is_audio)


def test_frozen_expert_stays_the_tts_and_full_fine_tuning_does_not():
    digest = speech_digest(tiny_tts())
    expert, inputs = _train_steps(tiny_mot("expert"))
    assert speech_digest(expert.speech) == digest  # not one bit of the speech expert moved
    assert torch.equal(expert.speech_pass(*inputs, logits=True)[1], tiny_tts()(*inputs))
    dense, _ = _train_steps(tiny_mot("dense"))
    assert speech_digest(dense.speech) != digest
    assert not torch.allclose(dense.speech_pass(*inputs, logits=True)[1], tiny_tts()(*inputs))
    lora, _ = _train_steps(tiny_mot("lora"))
    assert speech_digest(lora.speech) == digest  # the base weights stay; the adapters change what they compute
    assert not torch.allclose(lora.speech_pass(*inputs, logits=True)[1], tiny_tts()(*inputs))


def test_schedule_matrices():
    for kind in ("uniform", "pyramid", "autoregressive"):
        K = schedule_matrix(kind, 5, 4)
        assert (K[0] == 4).all() and (K[-1] == 0).all()
        assert (np.diff(K, axis=0) <= 0).all()  # a token's level never rises
        assert (np.diff(K, axis=0) >= -1).all()  # one level per row
    assert schedule_matrix("uniform", 5, 4).shape == (5, 5)
    assert schedule_matrix("pyramid", 5, 4).shape == (4 + 4 + 1, 5)
    ar = schedule_matrix("autoregressive", 5, 4)
    assert ar.shape == (4 * 5 + 1, 5)
    assert ((np.diff(ar, axis=0) != 0).sum(1) == 1).all()  # exactly one token moves per row
    with pytest.raises(ValueError, match="schedule"):
        schedule_matrix("random", 5, 4)


@pytest.mark.parametrize("guidance", ["none", "vanilla", "history"])
def test_sampling_is_seeded_and_streams_windows(guidance):
    tts = tiny_tts()
    mot = tiny_mot("expert", tts)
    kv, _ = mot.speech_pass(*speech_inputs(tts, frames=10))
    settings = SamplerSettings(steps=3, window=4, guidance=guidance)
    windows, stats = [], SampleStats()
    a = sample_behaviour(mot, kv, 7, kv[0][0].shape[2], 10, settings=settings, seed=3, on_window=windows.append, stats=stats)
    b = sample_behaviour(mot, kv, 7, kv[0][0].shape[2], 10, settings=settings, seed=3)
    c = sample_behaviour(mot, kv, 7, kv[0][0].shape[2], 10, settings=settings, seed=4)
    assert a.shape == (2 + 10, D) and torch.equal(a, b) and not torch.equal(a, c)
    assert [w.shape[0] for w in windows] == [4, 4, 2]
    per_row = {"none": 1, "vanilla": 2, "history": 3}[guidance]
    assert stats.forwards == (6 + 6 + 4) * per_row  # pyramid rows: steps + tokens - 1 per window (4, 4, 2 tokens)
    assert torch.isfinite(a).all()


def test_sampler_rejects_bad_settings():
    tts = tiny_tts()
    mot = tiny_mot("expert", tts)
    kv, _ = mot.speech_pass(*speech_inputs(tts))
    with pytest.raises(ValueError, match="window"):
        sample_behaviour(mot, kv, 7, 10, 4, settings=SamplerSettings(window=3))
    with pytest.raises(ValueError, match="guidance"):
        sample_behaviour(mot, kv, 7, 10, 4, settings=SamplerSettings(guidance="strong"))
    with pytest.raises(ValueError, match="history"):
        sample_behaviour(mot, kv, 7, 10, 4, history=torch.zeros(5, D))
    with pytest.raises(ValueError, match="at most"):
        sample_behaviour(mot, kv, 7, 10, 1000)


def test_noise_parametrisation():
    x, eps = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    levels = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.7, 0.9]])
    z = add_noise(x, levels, eps)
    assert torch.allclose(z[0, 0], x[0, 0]) and torch.allclose(z[0, 2], eps[0, 2], atol=1e-6)
    a, s = alpha_sigma(levels)
    v = a[..., None] * eps - s[..., None] * x
    assert torch.allclose(a[..., None] * z - s[..., None] * v, x, atol=1e-5)  # x from (z, v)
    assert torch.allclose(s[..., None] * z + a[..., None] * v, eps, atol=1e-5)  # eps from (z, v)


def test_behaviour_tokens_round_trip():
    rng = np.random.default_rng(0)
    face = rng.normal(size=(50, 112)).astype(np.float32)
    body = np.cumsum(rng.normal(size=(40, 263)), axis=0).astype(np.float32) * 0.01
    tokens = pack(face, body)
    assert tokens.shape == (25, TOKEN_DIM)
    face2, body2 = unpack(tokens)
    assert np.array_equal(face2, face)
    assert body2.shape == (40, 263) and np.abs(body2 - body).max() < 0.05  # linear resampling both ways
    with pytest.raises(ValueError, match="face"):
        pack(face[:, :100], body)
    with pytest.raises(ValueError, match="750"):
        unpack(tokens[:, :700])
