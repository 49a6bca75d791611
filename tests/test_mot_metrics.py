"""Behaviour metrics and the behaviour evaluator of the mixture of transformers (anima/e2e/mot/training)."""

from __future__ import annotations

import numpy as np
import pytest

from anima.e2e.mot.training.metrics import (
    face_param_jerk,
    frechet_distance,
    frozen_fraction,
    jerk,
    lip_sync,
    lip_sync_correlation,
    speech_energy,
)

SR = 24_000


def speech_like(seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a syllable-rate envelope (4 Hz plus jitter) and its per-frame envelope. -> (N,), (T,)"""
    t = np.arange(int(seconds * 25)) / 25
    env = 0.05 + 0.3 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))) * rng.uniform(0.5, 1.0, len(t))
    audio = rng.standard_normal(len(t) * 960) * np.repeat(env, 960)
    return audio.astype(np.float32), env


def face_with_jaw(jaw: np.ndarray) -> np.ndarray:
    face = np.zeros((len(jaw), 112), np.float32)
    face[:, 100] = jaw
    return face


def test_speech_energy_is_one_db_value_per_face_frame():
    audio = np.concatenate([np.zeros(960), 0.1 * np.ones(960), np.ones(100)])
    e = speech_energy(audio, SR)
    assert e.shape == (3,)
    assert e[0] == pytest.approx(-100.0) and e[1] == pytest.approx(-20.0, abs=1e-3) and -100 < e[2] < 0


def test_lip_sync_high_for_a_jaw_that_follows_energy_and_near_zero_for_a_random_jaw():
    rng = np.random.default_rng(0)
    audio, env = speech_like(20.0, rng)
    energy = speech_energy(audio, SR)
    follows = face_with_jaw(0.02 * (energy - energy.min()))
    assert lip_sync_correlation(follows, audio, SR) > 0.95
    random = face_with_jaw(rng.uniform(0, 0.3, len(env)))
    assert abs(lip_sync_correlation(random, audio, SR, max_lag=0)) < 0.2


def test_lip_sync_finds_the_lag_of_a_late_jaw_and_uses_the_speech_mask():
    rng = np.random.default_rng(1)
    audio, _ = speech_like(20.0, rng)
    energy = speech_energy(audio, SR)
    late = face_with_jaw(np.concatenate([np.zeros(2), energy[:-2] - energy.min()]))  # jaw two frames after the sound
    r, lag = lip_sync(late, audio, SR, max_lag=2)
    assert lag == 2 and r > 0.99
    assert lip_sync(late, audio, SR, max_lag=0)[0] < r
    none = np.zeros(len(energy), bool)
    assert np.isnan(lip_sync_correlation(late, audio, SR, speech=none))


def test_jerk_of_a_smooth_curve_is_below_that_of_a_noisy_one():
    rng = np.random.default_rng(0)
    t = np.arange(100) / 25
    smooth = np.zeros((100, 112), np.float32)
    smooth[:, 103] = 0.1 * np.sin(2 * np.pi * 0.5 * t)
    noisy = smooth.copy()
    noisy[:, 103] += 0.01 * rng.standard_normal(100)
    assert face_param_jerk(smooth)[3:].max() < face_param_jerk(noisy)[3:].max()
    body = np.zeros((80, 263), np.float32)
    body[:, 3] = 0.9  # root height
    body[:, 4:67] = 0.1  # joints at rest (ric)
    noisy_body = body + 0.01 * rng.standard_normal(body.shape).astype(np.float32)
    calm, shaky = jerk(smooth, body), jerk(noisy, noisy_body)
    assert calm["body_jerk_mean"] < shaky["body_jerk_mean"] and calm["face_param_jerk_peak"] < shaky["face_param_jerk_peak"]


def test_frozen_fraction_counts_still_frames():
    face = np.zeros((11, 112), np.float32)
    face[6:, 103] = np.linspace(0, 0.05, 5)  # still for 6 steps, moving for the last 4
    assert frozen_fraction(face) == pytest.approx(6 / 10)
    assert frozen_fraction(np.zeros((5, 112))) == 1.0


def test_frechet_distance_zero_for_identical_sets_and_growing_with_a_mean_shift():
    a = np.random.default_rng(0).standard_normal((400, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    d = [frechet_distance(a, a + s) for s in (0.1, 0.5, 1.0)]
    assert d[0] < d[1] < d[2]
    assert d[2] == pytest.approx(8.0, rel=1e-3)  # |shift|^2 summed over 8 dims


@pytest.mark.parametrize("call, match", [
    (lambda: speech_energy(np.zeros(0)), "speech_energy"),
    (lambda: lip_sync(np.zeros((10, 100)), np.zeros(9600)), "face must be"),
    (lambda: lip_sync(np.zeros((10, 112)), np.zeros(960 * 30)), "audio covers"),
    (lambda: jerk(np.zeros((10, 112)), np.zeros((10, 262))), "body263"),
    (lambda: frozen_fraction(np.zeros((1, 112))), "frozen_fraction"),
    (lambda: frechet_distance(np.zeros((0, 4)), np.zeros((5, 4))), "a must be"),
    (lambda: frechet_distance(np.zeros((5, 4)), np.zeros((5, 3))), "dimensions"),
])
def test_bad_input_raises_a_value_error_naming_it(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- the behaviour evaluator (torch) ------------------------------------------------------------------

def tiny_conversations(rng: np.random.Generator):
    from anima.e2e.mot.training.evaluator import Conversation

    convs = []
    for i in range(4):
        face = rng.standard_normal((150, 112)).astype(np.float32) * (1 + i)
        body = rng.standard_normal((120, 263)).astype(np.float32) * (1 + i)
        convs.append(Conversation(face, body, rng.integers(0, 3, 150), rng.integers(0, 9, 150), i % 4))
    return convs


def test_evaluator_trains_and_reloads_with_identical_embeddings(tmp_path):
    import torch

    from anima.e2e.mot.training.evaluator import (
        CONFIGS,
        BehaviourEvaluator,
        BehaviourEvaluatorConfig,
        fixed_windows,
        train,
    )

    torch.set_num_threads(1)
    convs = tiny_conversations(np.random.default_rng(0))
    model = train(convs, tmp_path / "ev", steps=3, config=BehaviourEvaluatorConfig(**CONFIGS["tiny"]), batch=8, progress=False)
    face, body, labels = fixed_windows(convs, stride_s=1.0)
    assert face.shape[1:] == (100, 112) and body.shape[1:] == (80, 263) and set(labels) == {"state", "emotion", "character"}
    e = model.embed(face, body)
    loaded = BehaviourEvaluator.from_pretrained(tmp_path / "ev")
    assert e.shape == (len(face), 8)
    np.testing.assert_array_equal(loaded.embed(face, body), e)
    assert torch.equal(loaded.face_std, model.face_std) and not torch.all(loaded.face_std == 1)
    clips = [(c.face, c.body) for c in convs]
    assert loaded.fid(clips, clips) == pytest.approx(0.0, abs=1e-6)
    nudged = loaded.fid(clips, [(f + 1e-3, b) for f, b in clips], stride_s=0.2)
    assert loaded.fid(clips, [(f + 3.0, b) for f, b in clips], stride_s=0.2) > 100 * nudged


def test_evaluator_rejects_bad_windows(tmp_path):
    from anima.e2e.mot.training.evaluator import CONFIGS, BehaviourEvaluator, BehaviourEvaluatorConfig

    model = BehaviourEvaluator(BehaviourEvaluatorConfig(**CONFIGS["tiny"]))
    with pytest.raises(ValueError, match="face windows"):
        model.embed(np.zeros((2, 99, 112)), np.zeros((2, 80, 263)))
    with pytest.raises(ValueError, match="body windows"):
        model.embed(np.zeros((2, 100, 112)), np.zeros((2, 80, 262)))
    with pytest.raises(ValueError, match="empty"):
        model.embed(np.zeros((0, 100, 112)), np.zeros((0, 80, 263)))
    with pytest.raises(ValueError, match="2 face windows but 3"):
        model.embed(np.zeros((2, 100, 112)), np.zeros((3, 80, 263)))
    with pytest.raises(ValueError, match="need at least 2"):
        model.fid([(np.zeros((50, 112)), np.zeros((40, 263)))], [(np.zeros((200, 112)), np.zeros((160, 263)))])
    with pytest.raises(FileNotFoundError, match="config.json"):
        BehaviourEvaluator.from_pretrained(tmp_path)
