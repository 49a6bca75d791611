"""The duplex decoder G: shapes, causality, streaming == offline, the delay, the loss, TTS init."""

import pytest
import torch

from anima.e2e.duplex.model import DuplexConfig, DuplexDecoder, delayed_rows, init_from_tts, shift_right

pytestmark = pytest.mark.unit


def _model(**kw) -> DuplexDecoder:
    torch.manual_seed(0)
    return DuplexDecoder(DuplexConfig.preset("tiny", **kw)).eval()


def _inputs(m: DuplexDecoder, B: int = 2, S: int = 12, seed: int = 0) -> dict:
    c = m.config
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, c.codebook_size, (B, c.n_codebooks, S), generator=g)
    rows = delayed_rows(codes, c.delays, c.pad)
    return {"agent_rows": shift_right(rows, c.start),
            "user_frames": torch.randint(0, c.codebook_size, (B, S, c.n_codebooks), generator=g),
            "motion": torch.randn(B, S, c.motion_dim, generator=g), "has_motion": torch.rand(B, S, generator=g) > 0.2,
            "prompt": torch.randn(B, S, c.d_prompt, generator=g), "has_prompt": torch.rand(B, S, generator=g) > 0.5,
            "traj": torch.randn(B, S, c.frames_per_step * c.d_traj, generator=g), "has_traj": torch.ones(B, S, dtype=torch.bool),
            "identity": torch.tensor([0, c.n_identity])}, rows


def test_the_parties_are_told_apart_when_they_share_the_tables():
    m = _model()
    inputs, _ = _inputs(m, B=1, S=4)
    swapped = dict(inputs, agent_rows=inputs["user_frames"], user_frames=inputs["agent_rows"].clamp(max=m.config.pad))
    assert not torch.allclose(m.embed(**inputs), m.embed(**swapped))
    small, big = _model(), _model(share_tables=False)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in big.parameters())


def test_delayed_rows_and_shift():
    codes = torch.arange(2 * 3).view(1, 2, 3)  # K=2, S=3
    rows = delayed_rows(codes, (0, 1), pad=99)
    assert rows[0].tolist() == [[0, 99], [1, 3], [2, 4]]
    assert shift_right(rows, 7)[0].tolist() == [[7, 7], [0, 99], [1, 3]]


def test_causal_and_streaming_equals_offline():
    m = _model()
    inputs, _ = _inputs(m)
    x = m.embed(**inputs)
    full = m(x)  # (B, S, d)
    assert full.shape == (2, 12, m.config.d_model)
    x2 = x.clone()
    x2[:, 7:] += torch.randn_like(x2[:, 7:])
    assert torch.allclose(m(x2)[:, :7], full[:, :7], atol=1e-5)
    assert not torch.allclose(m(x2)[:, 7:], full[:, 7:], atol=1e-3)
    state = m.new_state(batch=2)
    streamed = torch.cat([m(x[:, :5], state), *(m(x[:, i:i + 1], state) for i in range(5, 12))], dim=1)
    assert torch.allclose(streamed, full, atol=1e-5)


def test_the_window_bounds_the_state_and_offline_refuses_longer_sequences():
    m = _model()
    c = m.config
    state = m.new_state()
    with pytest.raises(ValueError, match="user_frame"):
        m.step(state, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="codes"):
        m.step(state, torch.full((1, c.n_codebooks), c.codebook_size))
    g = torch.Generator().manual_seed(1)
    frames = []
    for i in range(c.context + 10):
        out = m.step(state, torch.randint(0, c.codebook_size, (1, c.n_codebooks), generator=g), generator=g)
        assert out.motion.shape == (1, c.frames_per_step, c.latent) and torch.isfinite(out.motion).all()
        assert all(layer.k.shape[2] <= c.context - 1 for layer in state.layers)
        if i < max(c.delays):
            assert out.frame is None and (out.row[0, 2:] == c.pad).all()
        else:
            frames.append(out.frame)
    assert all(((f >= 0) & (f < c.codebook_size)).all() for f in frames)
    with pytest.raises(ValueError, match="longer than the context"):
        m(torch.zeros(1, c.context + 1, c.d_model))


def test_the_frame_a_row_completes_undoes_the_delay():
    m = _model()
    c = m.config
    codes = torch.randint(0, c.codebook_size, (1, c.n_codebooks, 6))
    rows = delayed_rows(codes, c.delays, c.pad)[0]  # (6, K)
    state = m.new_state()
    got = []
    for i in range(6):
        out = m.step(state, None, force_row=rows[i][None])
        if out.frame is not None:
            got.append(out.frame[0])
    assert torch.equal(torch.stack(got), codes[0, :, :len(got)].T)


def test_loss_trains_and_ignores_what_it_should():
    m = _model().train()
    inputs, rows = _inputs(m)
    targets = rows.masked_fill(rows == m.config.pad, -100)
    motion_target = torch.randn(2, 12, m.config.motion_dim)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, metrics = m.loss(inputs, targets, motion_target, inputs["has_motion"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or metrics
    assert metrics["nll"] < first["nll"] and set(metrics) >= {"nll", "semantic_nll", "acoustic_nll", "diffusion"}
    audio_only, am = m.loss(inputs, targets, None)
    assert "diffusion" not in am
    all_ignored = torch.full_like(targets, -100)
    assert float(m.loss(inputs, all_ignored, None)[0]) == 0.0


def test_init_from_tts_copies_the_transformer_and_audio_tables():
    from anima.talker.model.kodama_tts import KodamaTTS, KodamaTTSConfig

    tts = KodamaTTS(KodamaTTSConfig.preset("tiny", symbols=("_", "a", "b"), codebook_size=64))
    m = _model()
    copied = init_from_tts(m, tts)
    assert "agent_emb" in copied and "blocks.0.attn.qkv.weight" in copied and "user_emb" not in copied
    separate = _model(share_tables=False)
    assert "user_emb" in init_from_tts(separate, tts) and torch.equal(separate.user_emb, tts.audio_emb)
    assert torch.equal(m.blocks[1].mlp[0].weight, tts.blocks[1].mlp[0].weight)
    assert torch.equal(m.agent_emb, tts.audio_emb)
