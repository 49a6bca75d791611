"""UniLS model: multi-scale quantiser, generator (streaming = teacher forcing, causality, stage 2
starts as stage 1, LoRA freezing), metrics, and the runtime face with the shipped weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anima.face import motion as motion_space
from anima.face import params
from anima.face.model.quantizer import MultiScaleQuantizer, QuantizerConfig
from anima.face.model.unils import UniLS, UniLSConfig, token_schedule
from anima.face.training.metrics import TrackPair, evaluate, frechet_distance, segments

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

TINY_Q = QuantizerConfig(hidden=32, codebook_size=32, code_dim=16)



def tiny(audio: bool, lora: int = 0, seed: int = 0) -> UniLS:
    torch.manual_seed(seed)
    q = MultiScaleQuantizer(TINY_Q).eval()
    cfg = UniLSConfig(n_layer=2, n_embd=32, n_head=2, code_dim=16, codebook_size=32, dropout=0.0, audio=audio, lora_rank=lora)
    model = UniLS(q, cfg)
    with torch.no_grad():
        for name, p in model.generator.named_parameters():
            if "lora_b" not in name:
                p.normal_(0.0, 0.05)  # non-zero cross-attention too, so the test sees the audio path
    return model.eval()


# -- quantiser ----------------------------------------------------------------------------------


def slow_quantize(q: MultiScaleQuantizer, z: torch.Tensor) -> torch.Tensor:
    """Residual multi-scale VQ of one window written out with loops. (100, D) -> (100, D)"""
    residual = z.clone()
    total = torch.zeros_like(z)
    for s in q.config.scales:
        seg = 100 // s
        for i in range(s):
            mean = residual[i * seg:(i + 1) * seg].mean(0)
            code = q.codebook[((q.codebook - mean) ** 2).sum(1).argmin()]
            total[i * seg:(i + 1) * seg] += code
            residual[i * seg:(i + 1) * seg] -= code
    return total


def test_quantizer_matches_slow_reference_and_counts_tokens():
    torch.manual_seed(0)
    q = MultiScaleQuantizer(TINY_Q).eval()
    z = torch.randn(2, 200, 16)
    zq, codes, _ = q.quantize(z)
    assert [c.shape for c in codes] == [(2, 2 * s) for s in (1, 5, 25, 50, 100)]
    assert sum(c.shape[1] for c in codes) == 2 * 181
    for b in range(2):
        for w in range(2):
            torch.testing.assert_close(zq[b, w * 100:(w + 1) * 100], slow_quantize(q, z[b, w * 100:(w + 1) * 100]))
    torch.testing.assert_close(q.latents_from_codes(codes), zq)


def test_quantizer_decoding_is_causal_and_training_reduces_error():
    torch.manual_seed(1)
    q = MultiScaleQuantizer(TINY_Q)
    lat = torch.randn(1, 100, 16, requires_grad=True)
    q.decode_latents(lat)[0, 40].sum().backward()
    assert lat.grad[0, 41:].abs().max() == 0 and lat.grad[0, 38:41].abs().max() > 0
    x = torch.sin(torch.linspace(0, 20, 200))[None, :, None] * torch.randn(1, 1, 50) + 0.1 * torch.randn(4, 200, 50)
    opt = torch.optim.Adam(q.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        _, losses = q(x)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        first = first if first is not None else losses["recon"].item()
    assert losses["recon"].item() < 0.7 * first


def test_quantizer_config_validation():
    with pytest.raises(ValueError, match="scales"):
        QuantizerConfig(scales=(1, 3, 100))
    with pytest.raises(ValueError, match="multiple"):
        MultiScaleQuantizer(TINY_Q).quantize(torch.zeros(1, 150, 16))


# -- generator ----------------------------------------------------------------------------------


def test_token_schedule_is_time_ordered_coarse_to_fine():
    scale, segment, start = token_schedule(100, (1, 5, 25, 50, 100))
    assert len(scale) == 181
    assert start.tolist() == sorted(start.tolist())
    assert scale[:5].tolist() == [0, 1, 2, 3, 4] and start[:5].tolist() == [0] * 5
    assert (start[1:] >= start[:-1]).all()


@pytest.mark.parametrize("audio", [False, True])
def test_streaming_equals_teacher_forcing_across_window_boundaries(audio):
    """Feeding the true codes one step at a time gives the teacher-forced logits (T4), also after
    the cache is rebuilt at window boundaries, and decodes to the quantiser's reconstruction."""
    model = tiny(audio, lora=2 if audio else 0)
    q = model.quantizer
    torch.manual_seed(5)
    W = 3
    mot, ref = torch.randn(2, W * 100, 50), torch.randn(2, 100, 50)
    own, other = torch.randn(2, W * 100, 80), torch.randn(2, W * 100, 80)
    codes = q.encode(mot)
    per_window = []
    for w in range(W):
        targets, _, _ = model._stream_inputs([c[:, w * s:(w + 1) * s] for s, c in zip(q.config.scales, codes, strict=True)])
        per_window.append(targets)
    forced = iter([t for tg in per_window for t in tg.T])
    seen = []

    def replay(logits, st):
        seen.append(logits.clone())
        return next(forced)

    model._sample = replay
    state = model.new_state(ref)
    out = torch.stack([model.step(own[:, f] if audio else None, other[:, f] if audio else None, state) for f in range(W * 100)], 1)
    seen = torch.stack(seen, 1)
    with torch.no_grad():
        lg01, _ = model(mot[:, :200], ref, own[:, :200] if audio else None, other[:, :200] if audio else None)
        lg12, _ = model(mot[:, 100:], ref, own[:, 100:] if audio else None, other[:, 100:] if audio else None)
    torch.testing.assert_close(seen[:, :362], lg01, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seen[:, 362:], lg12[:, 181:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, q.reconstruct(mot), atol=1e-5, rtol=1e-5)


def test_tokens_never_see_future_audio_or_motion():
    model = tiny(True, lora=0)
    torch.manual_seed(6)
    mot, ref = torch.randn(1, 200, 50), torch.randn(1, 100, 50)
    own = torch.randn(1, 200, 80, requires_grad=True)
    other = torch.randn(1, 200, 80, requires_grad=True)
    logits, _ = model(mot, ref, own, other)
    frames = model.generator.tok_frame
    n = int((frames == 130).nonzero()[0])  # the first token at frame 130
    logits[0, n].sum().backward()
    assert own.grad[0, 131:].abs().max() == 0 and other.grad[0, 131:].abs().max() == 0
    assert own.grad[0, :131].abs().max() > 0 and other.grad[0, :131].abs().max() > 0


def test_stage2_starts_as_stage1_and_trains_only_new_weights():
    stage1 = tiny(False, seed=3)
    stage2 = UniLS(stage1.quantizer, UniLSConfig(**{**stage1.config.__dict__, "audio": True, "lora_rank": 4}))
    missing, unexpected = stage2.load_state_dict(stage1.state_dict(), strict=False)
    assert not unexpected and all(any(t in k for t in ("lora_", "xattn_", "ln_own", "ln_other", "audio_enc")) for k in missing)
    trainable = stage2.generator.trainable_stage2()
    names = {n for n, p in stage2.generator.named_parameters() if p.requires_grad}
    assert names and all(("lora_" in n or "xattn_" in n or "ln_o" in n or n.startswith("audio_enc")) for n in names)
    assert len(trainable) == len(names)
    torch.manual_seed(7)
    mot, ref = torch.randn(2, 200, 50), torch.randn(2, 100, 50)
    with torch.no_grad():
        a, _ = stage1(mot, ref)
        b, _ = stage2(mot, ref, torch.randn(2, 200, 80), torch.randn(2, 200, 80))
    torch.testing.assert_close(a, b)  # zero-initialised cross-attention outputs and LoRA B


def test_merged_lora_gives_the_same_model():
    model = tiny(True, lora=4)
    with torch.no_grad():
        for name, p in model.generator.named_parameters():
            if "lora_b" in name:
                p.normal_(0.0, 0.05)
    mot, ref, a, b = torch.randn(1, 200, 50), torch.randn(1, 100, 50), torch.randn(1, 200, 80), torch.randn(1, 200, 80)
    with torch.no_grad():
        before, _ = model(mot, ref, a, b)
        model.generator.merge_lora()
        after, _ = model(mot, ref, a, b)
    assert not any("lora_" in n for n, _ in model.generator.named_parameters())
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-4)


def test_bad_inputs_raise_clear_errors():
    model = tiny(True)
    mot, ref = torch.randn(1, 200, 50), torch.randn(1, 100, 50)
    with pytest.raises(ValueError, match="motion must be"):
        model(mot[:, :150], ref, torch.zeros(1, 150, 80), torch.zeros(1, 150, 80))
    with pytest.raises(ValueError, match="own audio"):
        model(mot, ref, torch.zeros(1, 190, 80), torch.zeros(1, 200, 80))
    bad = torch.zeros(1, 200, 80)
    bad[0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(mot, ref, torch.zeros(1, 200, 80), bad)
    with pytest.raises(RuntimeError, match="must be a UniLSState"):
        model.step(torch.zeros(1, 80), torch.zeros(1, 80), None)
    state = model.new_state(ref)
    with pytest.raises(ValueError, match="own must be"):
        model.step(torch.zeros(2, 80), torch.zeros(1, 80), state)
    nan = torch.full((1, 80), float("nan"))
    assert torch.isfinite(model.step(nan, nan, state)).all()  # non-finite features read as zeros in streaming
    model.train()
    with pytest.raises(RuntimeError, match="training mode"):
        model.step(nan, nan, state)


def test_generation_is_seeded():
    model = tiny(True)
    ref = torch.randn(1, 100, 50)
    own, other = torch.randn(1, 30, 80), torch.randn(1, 30, 80)
    a = model.generate(ref, 30, own, other, seed=1)
    b = model.generate(ref, 30, own, other, seed=1)
    c = model.generate(ref, 30, own, other, seed=2)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


# -- motion space and metrics ---------------------------------------------------------------------


def test_motion_space_round_trip_and_ranges():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 1, (20, motion_space.MOTION_DIM)).astype(np.float32)
    m[3, 5] = np.nan
    face = motion_space.from_motion(m)
    params.check_ranges(face)
    np.testing.assert_allclose(motion_space.to_motion(face), motion_space.clip_motion(m), atol=1e-6)
    np.testing.assert_allclose(face[0], params.from_arkit(params.to_arkit(face[0])), atol=1e-6)


def test_metrics_on_perfect_and_static_predictions():
    rng = np.random.default_rng(1)
    T = 400
    gt = rng.normal(0, 0.05, (T, 50)).cumsum(0) * 0.1 + 0.2
    speaking = np.zeros(T, bool)
    speaking[100:250] = True
    energy = np.where(speaking, -20.0, -100.0)
    gt[:, motion_space.JAW_OPEN] = np.where(speaking, 0.1 + 0.05 * np.sin(np.arange(T)), 0.0)
    perfect = evaluate([TrackPair(gt.copy(), gt, speaking, energy)])
    assert perfect["speak_lip_max_err"] == 0 and perfect["listen_head_dd_deg"] == 0
    assert perfect["listen_std_ratio_head"] == pytest.approx(1.0)
    assert abs(perfect["listen_expr_fd"]) < 1e-6
    static = evaluate([TrackPair(np.repeat(gt.mean(0, keepdims=True), T, 0), gt, speaking, energy)])
    assert static["listen_std_ratio_head"] < 1e-9 and static["listen_head_dd_deg"] > 0
    assert perfect["jaw_energy_r"] > 0.5
    assert segments(np.array([0, 1, 1, 0, 1] + [1] * 30, bool), 2) == [(1, 3), (4, 35)]
    a = rng.normal(size=(500, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 1.0) == pytest.approx(3.0, rel=1e-3)


# -- the runtime face with the shipped weights -------------------------------------------------------


def _shipped_face(**kw):
    from anima.face.unils import DEFAULT_WEIGHTS, UniLSFace

    if not (DEFAULT_WEIGHTS / "config.json").is_file():
        pytest.skip("no shipped UniLS weights")
    return UniLSFace.load(**kw)


def test_shipped_face_bad_audio_keeps_valid_live_frames():
    face = _shipped_face(seed=0)
    rng = np.random.default_rng(0)
    t = np.arange(960) / 24000
    voice = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    inputs = {
        "silent": lambda f: (np.zeros(960, np.float32), np.zeros(960, np.float32)),
        "empty": lambda f: (np.zeros(0, np.float32), None),
        "clipped": lambda f: (np.sign(voice) * 5.0, voice),
        "16 kHz ticks": lambda f: (voice[::3][:320].repeat(2), voice[:640]),
        "nan": lambda f: (np.full(960, np.nan, np.float32), np.where(rng.random(960) < 0.5, np.inf, voice)),
    }
    for name, make in inputs.items():
        face.reset()
        frames = np.stack([face.step(f * 0.04, *make(f)) for f in range(60)])
        params.check_ranges(frames)
        assert frames.shape == (60, 112), name
    face.reset()
    idle = np.stack([face.step(f * 0.04, np.zeros(960), np.zeros(960)) for f in range(200)])
    assert idle[:, 103:106].std(0).max() > 1e-3  # silence is not a frozen face


def test_shipped_face_controls():
    face = _shipped_face(seed=1)
    with pytest.raises(ValueError, match="unknown emotion"):
        face.set_emotion("bored", 0.0)
    with pytest.raises(ValueError, match="unknown gaze"):
        face.set_gaze("ceiling", 0.0)
    face.set_emotion("happy", 0.0)
    face.set_gaze("left", 0.0)
    frames = np.stack([face.step(f * 0.04, np.zeros(960), np.zeros(960)) for f in range(100)])
    params.check_ranges(frames)
    assert frames[-1, params.ARKIT_INDEX["mouthSmileLeft"]] > 0.3  # speed: benchmarks/face_stream.py


def test_animate_pair_handles_rates_lengths_and_nan(caplog):
    import logging

    from anima.face.model.unils import load_unils
    from anima.face.unils import DEFAULT_WEIGHTS
    from anima.render.face_dialogue import animate_pair

    if not (DEFAULT_WEIGHTS / "config.json").is_file():
        pytest.skip("no shipped UniLS weights")
    model, _ = load_unils(DEFAULT_WEIGHTS)
    rng = np.random.default_rng(2)
    ref = np.zeros((100, motion_space.MOTION_DIM), np.float32)
    a16 = (0.2 * rng.standard_normal(16000 * 2)).astype(np.float32)  # 2 s at 16 kHz
    b16 = (0.2 * rng.standard_normal(16000)).astype(np.float32)  # 1 s: shorter
    a16[100:200] = np.nan
    with caplog.at_level(logging.WARNING):
        fa, fb = animate_pair(model, a16, b16, ref, ref, sample_rate=16000, seed=0)
    assert fa.shape == fb.shape == (50, 112)
    assert any("differ in length" in r.message for r in caplog.records)
    params.check_ranges(np.concatenate([fa, fb]))
