"""The causal motion codec (anima/e2e/duplex/motion.py) and its trainer: shapes, causality, bounded reach,
streaming == offline past the window, checkpoints, clear errors, and that training lowers the loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anima.checkpoint import CheckpointError
from anima.e2e.duplex.motion import FRAME_DIM, MotionCodec, MotionCodecConfig, frame_features, split_frame

torch.set_num_threads(1)


def tiny(**kw) -> MotionCodecConfig:
    return MotionCodecConfig(**{"latent": 8, "d_model": 32, "n_head": 2, "window": 6, **kw})


def synthetic_motion(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth face (frames, 112) at 25 fps and body263 (0.8 frames, 263) at 20 fps: sums of slow sines."""
    rng = np.random.default_rng(seed)

    def smooth(n, d, fps):
        t = np.arange(n)[:, None] / fps
        return (rng.normal(size=(1, d)) * np.sin(2 * np.pi * rng.uniform(0.2, 1.5, (1, d)) * t + rng.uniform(0, 6, (1, d)))
                + rng.normal(size=(1, d))).astype(np.float32)

    return smooth(frames, 112, 25) * 0.1, smooth(round(frames * 0.8), 263, 20) * 0.05


def codec_with_stats(config: MotionCodecConfig, seed: int = 0) -> MotionCodec:
    torch.manual_seed(seed)
    codec = MotionCodec(config)
    g = torch.Generator().manual_seed(seed + 1)
    codec.set_normalisation(torch.randn(config.frame_dim, generator=g), torch.rand(config.frame_dim, generator=g) + 0.5)
    codec.set_latent_stats(torch.randn(config.latent, generator=g) * 0.1, torch.rand(config.latent, generator=g) + 0.5)
    return codec.eval()


def test_frame_helpers_layout_and_round_trip():
    face, body = synthetic_motion(100)
    x = frame_features(face, body)
    assert x.shape == (100, FRAME_DIM) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, :112], face)
    np.testing.assert_allclose(x[0, 112:], body[0])  # t = 0 is the same instant at 20 and 25 fps
    np.testing.assert_allclose(x[5, 112:], body[4], atol=1e-6)  # 0.2 s: frame 5 at 25 fps, frame 4 at 20 fps
    face2, body2 = split_frame(x)
    assert face2.shape == (100, 112) and body2.shape == (80, 263)
    np.testing.assert_array_equal(face2, face)
    assert np.abs(body2 - body).max() < 0.02  # smooth motion survives 20 -> 25 -> 20 fps
    with pytest.raises(ValueError, match="face"):
        frame_features(face[:, :100], body)
    with pytest.raises(ValueError, match="body263"):
        frame_features(face, body[:, :200])
    with pytest.raises(ValueError, match="375"):
        split_frame(x[:, :300])


def test_shapes():
    codec = codec_with_stats(tiny())
    x = torch.randn(3, 17, FRAME_DIM)
    with torch.no_grad():
        z = codec.encode(x)
        y = codec.decode(z)
    assert z.shape == (3, 17, 8) and y.shape == (3, 17, FRAME_DIM)
    assert torch.isfinite(y).all()


def test_causal_and_bounded_reach():
    codec = codec_with_stats(tiny(n_layer_enc=1, n_layer_dec=1))
    x = torch.randn(1, 30, FRAME_DIM)
    t = 11
    x2 = x.clone()
    x2[:, t + 1:] += torch.randn_like(x2[:, t + 1:]) * 3  # the future changes
    with torch.no_grad():
        z, z2 = codec.encode(x), codec.encode(x2)
        y, y2 = codec.decode(z), codec.decode(z2)
    torch.testing.assert_close(z[:, :t + 1], z2[:, :t + 1], rtol=0, atol=0)
    torch.testing.assert_close(y[:, :t + 1], y2[:, :t + 1], rtol=0, atol=0)
    assert (z[:, t + 1:] - z2[:, t + 1:]).abs().amax(-1).min() > 1e-3  # and every later latent sees it
    # one layer of window 6: frame t depends on frames t-5..t only
    x3 = x.clone()
    x3[:, 4] += 5.0
    with torch.no_grad():
        z3 = codec.encode(x3)
    diff = (z3 - z).abs().amax(-1)[0]
    assert (diff[:4] == 0).all() and (diff[4:10] > 1e-4).all() and (diff[10:] == 0).all()


def test_gradient_causality_through_encode_and_decode():
    codec = codec_with_stats(tiny())
    x = torch.randn(1, 32, FRAME_DIM, requires_grad=True)
    y = codec.decode(codec.encode(x))
    t, reach = 25, 2 * 2 * (6 - 1)  # 2 encoder + 2 decoder layers, each 5 frames back
    y[0, t].sum().backward()
    grad = x.grad.abs().amax(-1)[0]
    assert (grad[t + 1:] == 0).all() and (grad[t - reach:t + 1] > 0).all()
    assert (grad[:t - reach] == 0).all()


@pytest.mark.parametrize("chunks", [[1] * 40, [2] * 20, [1, 3, 2, 7, 1, 1, 10, 15]])
def test_streaming_equals_offline_beyond_the_window(chunks):
    codec = codec_with_stats(tiny())
    x = torch.randn(2, sum(chunks), FRAME_DIM)  # 40 frames: well past window 6 and the stacked reach of 2 layers
    with torch.no_grad():
        z, y = codec.encode(x), codec.decode(codec.encode(x))
        state = codec.new_state()
        zs, ys, i = [], [], 0
        for n in chunks:
            zs.append(codec.encode_step(state, x[:, i:i + n]))
            ys.append(codec.decode_step(state, zs[-1]))
            i += n
    torch.testing.assert_close(torch.cat(zs, 1), z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(ys, 1), y, rtol=1e-5, atol=1e-4)
    assert state.encoded == state.decoded == 40
    for k, v in state.encoder + state.decoder:  # bounded state: window - 1 frames a layer
        assert k.shape[2] == v.shape[2] == 5


def test_state_snapshot_restores_exactly():
    codec = codec_with_stats(tiny())
    x = torch.randn(1, 20, FRAME_DIM)
    with torch.no_grad():
        state = codec.new_state()
        codec.decode_step(state, codec.encode_step(state, x[:, :12]))
        snap = state.clone()
        a = codec.decode_step(state, codec.encode_step(state, x[:, 12:16]))
        b = codec.decode_step(snap, codec.encode_step(snap, x[:, 12:16]))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_save_load_round_trip(tmp_path):
    codec = codec_with_stats(tiny())
    codec.save(tmp_path / "codec", step=7)
    loaded = MotionCodec.from_pretrained(tmp_path / "codec")
    assert loaded.config == codec.config and not loaded.training
    for name in ("mean", "std", "latent_mean", "latent_std"):
        torch.testing.assert_close(getattr(loaded, name), getattr(codec, name), rtol=0, atol=0)
    x = torch.randn(1, 15, FRAME_DIM)
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(loaded.encode(x)), codec.decode(codec.encode(x)), rtol=0, atol=0)


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        MotionCodec.from_pretrained(tmp_path / "absent")
    codec = codec_with_stats(tiny())
    good = codec.save(tmp_path / "good")
    corrupt = codec.save(tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="unreadable"):
        MotionCodec.from_pretrained(corrupt)
    mismatched = codec.save(tmp_path / "mismatched")
    meta = json.loads((mismatched / "config.json").read_text())
    meta["config"]["model"]["d_model"] = 64
    (mismatched / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match"):
        MotionCodec.from_pretrained(mismatched)
    meta = json.loads((good / "config.json").read_text())
    meta["config"]["kind"] = "mot"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a motion codec"):
        MotionCodec.from_pretrained(foreign)
    meta["config"] = {"kind": "motion_codec", "model": {"latent": 8, "depth": 3}}
    (foreign / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="depth"):
        MotionCodec.from_pretrained(foreign)
    (foreign / "config.json").write_text("{ broken")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        MotionCodec.from_pretrained(foreign)


def test_bad_inputs_give_clear_errors():
    codec = codec_with_stats(tiny())
    with pytest.raises(ValueError, match=r"encode: expected \(B, T, 375\), got \(4, 375\)"):
        codec.encode(torch.randn(4, FRAME_DIM))
    with pytest.raises(ValueError, match=r"decode: expected \(B, T, 8\)"):
        codec.decode(torch.randn(1, 4, 9))
    with pytest.raises(ValueError, match="floating point"):
        codec.encode(torch.zeros(1, 4, FRAME_DIM, dtype=torch.long))
    with pytest.raises(TypeError, match="torch tensor"):
        codec.encode(np.zeros((1, 4, FRAME_DIM), np.float32))
    state = codec.new_state()
    with torch.no_grad():
        codec.encode_step(state, torch.randn(2, 3, FRAME_DIM))
        with pytest.raises(RuntimeError, match="batch of 2"):
            codec.encode_step(state, torch.randn(3, 1, FRAME_DIM))
        with pytest.raises(TypeError, match="new_state"):
            codec.decode_step(object(), torch.randn(2, 1, 8))
    with pytest.raises(ValueError, match="heads"):
        MotionCodecConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError, match=r"\(375,\)"):
        codec.set_normalisation(np.zeros(10), np.ones(10))


def test_training_lowers_the_loss_on_a_tiny_synthetic_set():
    from anima.e2e.duplex.training.train_motion import WindowSampler, frame_statistics

    frames = [frame_features(*synthetic_motion(120, seed)) for seed in range(4)]
    torch.manual_seed(0)
    codec = MotionCodec(tiny(window=8))
    codec.set_normalisation(*frame_statistics(frames))
    sampler = WindowSampler(frames, 40, seed=0)
    fixed = sampler.sample(8)
    opt = torch.optim.AdamW(codec.parameters(), lr=3e-3)
    codec.eval()
    with torch.no_grad():
        before = codec.loss(fixed)[0].item()
    codec.train()
    for _ in range(60):
        loss, metrics = codec.loss(sampler.sample(8))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(metrics) == {"loss", "mse", "vel"}
    codec.eval()
    with torch.no_grad():
        after = codec.loss(fixed)[0].item()
    assert after < 0.5 * before, (before, after)


def test_trainer_helpers():
    from anima.e2e.duplex.training.train_motion import (
        WindowSampler,
        evaluate_motion,
        frame_statistics,
        latent_statistics,
    )

    convs = []
    for seed in range(2):
        face, body = synthetic_motion(170, seed)
        convs.append({"face": face, "body263": body, "frames": frame_features(face, body)})
    mean, std = frame_statistics([c["frames"] for c in convs])
    allf = np.concatenate([c["frames"] for c in convs])
    np.testing.assert_allclose(mean, allf.mean(0), atol=1e-5)
    np.testing.assert_allclose(std, allf.std(0), rtol=1e-4, atol=1e-6)
    batch = WindowSampler([c["frames"] for c in convs] + [allf[:10]], 100, seed=0).sample(5)
    assert batch.shape == (5, 100, FRAME_DIM)
    with pytest.raises(ValueError, match="no conversation"):
        WindowSampler([allf[:10]], 100, seed=0)
    codec = codec_with_stats(tiny())
    codec.set_normalisation(mean, std)
    lm, ls = latent_statistics(codec, [c["frames"] for c in convs])
    codec.set_latent_stats(lm, ls)
    with torch.no_grad():
        z = torch.cat([codec.encode(torch.from_numpy(c["frames"])[None])[0] for c in convs])
    torch.testing.assert_close(z.mean(0), torch.zeros(8), rtol=0, atol=1e-4)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(8), rtol=0, atol=1e-3)
    report = evaluate_motion(codec, convs, stream_step=2)
    for key in ("mse_norm", "face_rmse", "body263_rmse", "mpjpe_m", "mpjpe_global_m"):
        assert report["offline"][key] > 0
        assert report["streamed"][key] == pytest.approx(report["offline"][key], rel=1e-4)
    assert report["max_abs_offline_vs_streamed"] < 1e-3 and report["frames"] == 340


def test_train_script_runs_resumes_and_evaluates(tmp_path):
    from anima.e2e.data.format import write_conversation
    from anima.e2e.duplex.training.train_motion import main

    root = tmp_path / "dialogues"
    for i, split in enumerate(["train", "train", "val", "test"]):
        face, body = synthetic_motion(130, i)
        T = face.shape[0]
        motion = {"face": face, "joints": np.zeros((T, 22, 3), np.float32), "joint_vel": np.zeros((T, 22, 3), np.float32),
                  "root": np.zeros((T, 3), np.float32), "prompt_id": np.zeros(T, np.int64), "body263": body}
        audio = np.zeros(T * 960, np.float32)
        write_conversation(root / f"c{i:06d}", audio, audio, motion, {"conv_id": f"c{i:06d}", "seed": i, "split": split, "events": []})
    out = tmp_path / "run"
    args = ["--dialogues", str(root), "--out", str(out), "--batch", "4", "--window-s", "2", "--val-every", "3",
            "--val-windows", "4", "--save-every", "3", "--quiet", "--set", "d_model=32", "--set", "n_head=2",
            "--set", "window=6", "--set", "latent=8"]
    main(args + ["--steps", "3", "--no-eval"])
    main(args + ["--steps", "6"])  # resumes at step 3, then the latent statistics and eval.json
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(lines[i]["val_loss"]) for i in (2, 5))  # scored every 3 steps, before and after resuming
    report = json.loads((out / "eval.json").read_text())
    assert report["step"] == 6 and report["test"]["conversations"] == 1
    codec = MotionCodec.from_pretrained(out)
    assert codec.config.d_model == 32 and not torch.equal(codec.latent_std, torch.ones(8))
    assert (out / "optimizer.safetensors").is_file()  # still resumable after the statistics were saved
    assert json.loads((out / "config.json").read_text())["step"] == 6
