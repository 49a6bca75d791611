"""FloodDiffusion: schedules, DiT, the streaming API, baselines and a few training steps (tiny configs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anima.body.model.dit import DiTConfig, MotionDiT
from anima.body.model.schedule import ChunkSchedule, TriangularSchedule, make_schedule
from anima.body.model.streaming import MotionStream
from anima.body.model.vae import MotionVAE, VAEConfig
from anima.body.text import MAX_PROMPT_CHARS, TextEncoder, prompt_for_gesture

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

TEXTS = {t: np.random.default_rng(i).normal(size=384).astype(np.float32) / 20 for i, t in
         enumerate(["a person bows", "a person waves goodbye", "a person stands still", "x" * MAX_PROMPT_CHARS])}


def _levels_over_time(schedule, steps: int, tokens: int) -> np.ndarray:
    """Simulate: level[k] after each step, from the schedule's windows."""
    level = np.ones(tokens)
    history = []
    for _ in range(steps):
        ks, now, nxt = schedule.window()
        for k, a, b in zip(ks, now, nxt, strict=True):
            if k < tokens:
                assert abs(level[k] - a) < 1e-12  # the window's "before" level is where the token is
                level[k] = b
        schedule.advance()
        history.append(level.copy())
    return np.array(history)


def test_triangular_schedule_matches_formula_and_commits_every_two_steps():
    s = TriangularSchedule(n_s=5, steps_per_unit=10)
    hist = _levels_over_time(s, 60, 30)
    t = np.arange(1, 61)[:, None] / 10
    expected = np.clip(1 + np.arange(30)[None] / 5 - t, 0, 1)
    np.testing.assert_allclose(hist, expected, atol=1e-12)
    s.reset()
    committed = []
    for _ in range(40):
        ks, _, _ = s.window()
        assert len(ks) <= s.max_active
        s.advance()
        committed.append(s.committed)
    assert committed[9] == 1  # the first token needs 10 steps
    assert all(committed[i + 2] - committed[i] == 1 for i in range(9, 36))  # then one token every 2 steps
    with pytest.raises(ValueError):
        TriangularSchedule(n_s=3, steps_per_unit=10)


def test_chunk_schedule_denoises_a_chunk_then_commits_it():
    s = ChunkSchedule(chunk=4, steps=5)
    hist = _levels_over_time(s, 10, 8)
    assert np.all(hist[4, :4] == 0) and np.all(hist[4, 4:] == 1)
    assert np.all(hist[9] == 0)
    s.reset()
    for _ in range(4):
        s.advance()
    assert s.committed == 0
    s.advance()
    assert s.committed == 4
    ar = make_schedule("ar", DiTConfig())
    assert ar.chunk == 1 and ar.name == "ar"
    with pytest.raises(KeyError, match="flood, chunk, ar"):
        make_schedule("magic", DiTConfig())


def test_training_levels_have_an_active_window():
    rng = np.random.default_rng(0)
    s = TriangularSchedule()
    for _ in range(50):
        lv = s.training_levels(40, rng)
        active = (lv > 0) & (lv < 1)
        # levels never increase to the left: history clean, future noise
        assert np.all(np.diff(lv) >= -1e-12)
        assert active.sum() <= s.n_s + 1


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    vae = MotionVAE(VAEConfig(width=16, blocks=1)).eval()
    models = {m: MotionDiT(DiTConfig.for_method(m, width=32, depth=2, heads=2, history=6)).eval() for m in ("flood", "chunk", "ar")}
    # Random weights give a zero velocity (adaLN-Zero init); perturb so that outputs depend on inputs.
    for model in models.values():
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return vae, models


def _stream(tiny, method="flood", seed=0):
    vae, models = tiny
    model = models[method]
    return MotionStream(model, vae, make_schedule(method, model.config), np.zeros(263), np.ones(263) * 0.1,
                        TextEncoder(TEXTS), seed=seed)


def test_dit_shapes_and_errors(tiny):
    model = tiny[1]["flood"]
    B, L = 2, 9
    args = (torch.randn(B, L, 4), torch.rand(B, L), torch.randn(B, L, 384), torch.ones(B, L, dtype=torch.bool),
            torch.arange(L)[None].repeat(B, 1))
    assert model(*args).shape == (B, L, 4)
    # padding: outputs of valid tokens do not depend on padded ones
    valid = torch.ones(B, L + 2, dtype=torch.bool)
    valid[:, L:] = False
    padded = (torch.cat([args[0], torch.randn(B, 2, 4) * 100], 1), torch.cat([args[1], torch.rand(B, 2)], 1),
              torch.cat([args[2], torch.randn(B, 2, 384)], 1), torch.ones(B, L + 2, dtype=torch.bool),
              torch.cat([args[4], torch.zeros(B, 2, dtype=torch.long)], 1))
    torch.testing.assert_close(model(*padded, valid)[:, :L], model(*args), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="tokens >"):
        model(torch.randn(1, 20, 4), torch.rand(1, 20), torch.randn(1, 20, 384), torch.ones(1, 20, dtype=torch.bool),
              torch.arange(20)[None])
    with pytest.raises(ValueError, match="text must be"):
        model(args[0], args[1], torch.randn(B, L, 100), args[3], args[4])


def test_stream_is_deterministic_and_infinite_with_constant_cost(tiny):
    a, b = _stream(tiny), _stream(tiny)
    a.push_prompt("a person bows")
    b.push_prompt("a person bows")
    ja, _ = a.generate(60)
    jb, _ = b.generate(60)
    np.testing.assert_array_equal(ja, jb)
    assert ja.shape == (60, 22, 3) and np.isfinite(ja).all()
    # Long stream: the model input never exceeds history + active tokens (constant cost per step).
    sizes = []
    original = a.model.forward

    def spy(z, *args, **kwargs):
        sizes.append(z.shape[1])
        return original(z, *args, **kwargs)

    a.model.forward = spy
    try:
        a.generate(60 + 400)  # 25 s of motion: the history is long past full
    finally:
        a.model.forward = original
    cfg = a.config
    assert max(sizes) <= cfg.history + cfg.max_active
    assert sizes[-1] == sizes[-3]  # steady state
    assert len(a.history) == cfg.history


def test_prompt_change_only_affects_uncommitted_frames(tiny):
    a, b = _stream(tiny), _stream(tiny)
    for s in (a, b):
        s.push_prompt("a person bows")
    ja, jb = [], []
    for _ in range(30):
        ja.append(a.step())
        jb.append(b.step())
    committed = a.committed_frames
    first = b.push_prompt("a person waves goodbye")
    assert first == b.committed_tokens  # applies from the first uncommitted token
    for _ in range(30):
        ja.append(a.step())
        jb.append(b.step())
    ja, jb = np.concatenate(ja), np.concatenate(jb)
    np.testing.assert_array_equal(ja[:committed], jb[:committed])  # what was out stays out
    assert not np.allclose(ja[committed:], jb[committed:])  # and the change shows after
    # A prompt for a later frame is scheduled, not applied now.
    c = _stream(tiny)
    token = c.push_prompt("a person bows", frame=41)
    assert token == 11 and c.prompt_at(10).text == "" and c.prompt_at(11).text == "a person bows"


def test_empty_and_very_long_prompts(tiny):
    s = _stream(tiny)
    s.push_prompt("")  # the null prompt
    assert not s.prompt_at(0).has_text
    s.push_prompt("x" * (MAX_PROMPT_CHARS + 500))  # cut to MAX_PROMPT_CHARS (cached in TEXTS)
    assert s.prompt_at(0).has_text
    joints, _ = s.generate(12)
    assert np.isfinite(joints).all()
    assert prompt_for_gesture("bow") == "a person bows"
    assert prompt_for_gesture("") == prompt_for_gesture("none")
    assert len(prompt_for_gesture("y" * 5000)) == MAX_PROMPT_CHARS


@pytest.mark.parametrize("method", ["chunk", "ar"])
def test_baselines_stream(tiny, method):
    s = _stream(tiny, method)
    s.push_prompt("a person bows")
    steps_before_first = 0
    while s.committed_frames == 0:
        s.step()
        steps_before_first += 1
    assert steps_before_first == s.config.denoise_steps
    chunk = s.config.chunk if method == "chunk" else 1
    assert s.committed_frames == 4 * chunk  # a whole chunk (or token) at once
    joints, _ = s.generate(100)
    assert joints.shape == (100, 22, 3)


def test_flood_first_frame_after_prompt_is_two_steps_away(tiny):
    s = _stream(tiny)
    s.generate(20)
    s.push_prompt("a person waves goodbye")
    steps = 0
    while True:
        steps += 1
        if len(s.step()):
            break
    assert steps <= s.schedule.per_token


def test_a_few_training_steps_lower_the_loss():
    from anima.body.training.train import diffusion_loss

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = DiTConfig(width=32, depth=2, heads=2, history=6)
    model = MotionDiT(config)
    schedule = TriangularSchedule(config.n_s, config.denoise_steps)

    class Clips:  # two "clips" of smooth latents with texts
        latents = [np.cumsum(rng.normal(size=(30, 4)) * 0.2, 0).astype(np.float32) for _ in range(2)]
        texts = [np.tile(TEXTS["a person bows"], (30, 1)), np.tile(TEXTS["a person waves goodbye"], (30, 1))]
        p = np.array([0.5, 0.5])

    from anima.body.training.train import diffusion_batch

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = [diffusion_batch(Clips, schedule, config, 16, rng, 0.1) for _ in range(4)]
    with torch.no_grad():
        first = float(diffusion_loss(model, batches[0]))
    for _ in range(15):
        for batch in batches:
            loss = diffusion_loss(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        assert float(diffusion_loss(model, batches[0])) < first
    b = batches[0]
    assert b["loss_mask"].sum(1).max() <= config.max_active
    assert torch.all(b["level"][~b["loss_mask"] & b["valid"]] == 0)  # context tokens are clean


def test_guidance_applies_only_above_the_floor(tiny):
    """Limited-interval guidance: tokens at noise level <= floor get the conditional velocity alone."""
    stream = _stream(tiny)
    L = 8
    z, text = torch.randn(L, 4), torch.randn(L, 384)
    level = torch.linspace(0.05, 1.0, L)
    has_text, pos = torch.ones(L, dtype=torch.bool), torch.arange(L)
    model = stream.model
    with torch.no_grad():
        cond = model(z[None], level[None], text[None], has_text[None], pos[None])[0]
        null = model(z[None], level[None], text[None], torch.zeros_like(has_text)[None], pos[None])[0]
        stream.guidance, stream.guidance_floor = 3.0, 0.5
        v = stream._velocity(z, level, text, has_text, pos)
    low = level <= 0.5
    torch.testing.assert_close(v[low], cond[low], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v[~low], 3.0 * cond[~low] - 2.0 * null[~low], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cond[~low], null[~low])  # the check can fail: text changes the prediction
    stream.guidance_floor = 0.0  # plain CFG everywhere
    with torch.no_grad():
        torch.testing.assert_close(stream._velocity(z, level, text, has_text, pos), 3.0 * cond - 2.0 * null,
                                   atol=1e-5, rtol=1e-5)
    assert DiTConfig().guidance_floor == 0.5 and _stream(tiny).guidance_floor == DiTConfig().guidance_floor


def test_level_power_warps_levels_but_not_which_tokens_or_when():
    linear, warped = TriangularSchedule(5, 10), TriangularSchedule(5, 10, power=2.0)
    for _ in range(40):
        (t1, a1, b1), (t2, a2, b2) = linear.window(), warped.window()
        assert np.array_equal(t1, t2)
        np.testing.assert_allclose(a2, a1 ** 2)
        np.testing.assert_allclose(b2, b1 ** 2)
        linear.advance()
        warped.advance()
        assert linear.committed == warped.committed
    chunk = ChunkSchedule(1, 10, power=2.0)
    chunk.advance()
    assert chunk.window()[1][0] == pytest.approx(0.81)  # second update starts at 0.9 ** 2
    assert make_schedule("ar", DiTConfig(level_power=2.0)).power == 2.0
    assert make_schedule("flood", DiTConfig()).power == 1.0
    with pytest.raises(ValueError, match="power"):
        TriangularSchedule(power=0.0)
