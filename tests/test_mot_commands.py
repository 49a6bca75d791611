"""Silent command clips (anima.e2e.mot.commands) and the rule-based detector that scores them."""

from __future__ import annotations

import numpy as np
import pytest

from anima.e2e.mot import detectors
from anima.e2e.mot.commands import (
    COMMANDS,
    HELDOUT_PHRASES,
    TRAIN_PHRASES,
    command_clip,
    idle_clip,
    phrase_for,
)
from anima.face import params


def test_clip_shapes_dtypes_and_determinism():
    clip = command_clip("nod", seed=5)
    assert clip.face.shape == (75, 112) and clip.face.dtype == np.float32
    assert clip.body263.shape == (60, 263) and clip.body263.dtype == np.float32
    assert 0.2 <= clip.onset_s <= 0.8 and clip.onset_s < clip.end_s <= 3.0
    assert clip.phrase in TRAIN_PHRASES["nod"]
    params.check_ranges(clip.face)
    again = command_clip("nod", seed=5)
    np.testing.assert_array_equal(clip.face, again.face)
    np.testing.assert_array_equal(clip.body263, again.body263)
    other = command_clip("nod", seed=6)
    assert not np.array_equal(clip.face, other.face)
    longer = command_clip("wave", seed=5, duration_s=4.0)
    assert longer.face.shape == (100, 112) and longer.body263.shape == (80, 263)


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="dance"):
        command_clip("dance", seed=0)
    with pytest.raises(ValueError, match="duration_s"):
        command_clip("nod", seed=0, duration_s=1.0)
    with pytest.raises(ValueError, match="duration_s"):
        idle_clip(0, duration_s=float("nan"))
    with pytest.raises(ValueError, match="dance"):
        phrase_for("dance", 0)
    with pytest.raises(ValueError, match="face"):
        detectors.scores(np.zeros((75, 100)), np.zeros((60, 263)))
    with pytest.raises(ValueError, match="body263"):
        detectors.scores(np.zeros((75, 112)), np.zeros((60, 200)))


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_is_detected_as_itself(command):
    for seed in (3, 11):
        clip = command_clip(command, seed)
        assert detectors.detect(clip.face, clip.body263) == command, (seed, detectors.scores(clip.face, clip.body263))


def test_idle_clip_is_detected_as_nothing():
    for seed in (3, 11):
        clip = idle_clip(seed)
        assert clip.command == "idle" and clip.phrase == ""
        assert detectors.detect(clip.face, clip.body263) is None, detectors.scores(clip.face, clip.body263)


def test_look_directions_follow_the_face_conventions():
    left, up = command_clip("look_left", 2), command_clip("look_up", 2)
    end = slice(int(up.onset_s * 25) + 20, int(up.onset_s * 25) + 30)  # held, well after the turn
    assert left.face[end, params.HEAD_YAW].mean() > 0.1 and left.face[end][:, params.EYE_YAW].mean() > 0.1
    assert up.face[end, params.HEAD_PITCH].mean() < -0.1 and up.face[end][:, params.EYE_PITCH].mean() < -0.1


def test_phrases_train_and_heldout_are_disjoint():
    assert set(TRAIN_PHRASES) == set(HELDOUT_PHRASES) == set(COMMANDS)
    train = {p for ps in TRAIN_PHRASES.values() for p in ps}
    heldout = {p for ps in HELDOUT_PHRASES.values() for p in ps}
    assert not train & heldout
    assert all(len(TRAIN_PHRASES[c]) >= 3 and len(HELDOUT_PHRASES[c]) >= 2 for c in COMMANDS)
    assert phrase_for("bow", 4, heldout=True) in HELDOUT_PHRASES["bow"]
    assert phrase_for("bow", 4) == phrase_for("bow", 4)
