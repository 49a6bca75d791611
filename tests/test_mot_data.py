"""MoT training data and trainer pieces: sentence cuts, the item files, noise levels, loss weights, batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anima.e2e.mot.training.data import Item, load_items, save_items, sentences_of
from anima.e2e.mot.training.train import Batcher, group_weights, training_levels
from anima.talker.model.kodama_tts import KodamaTTS, KodamaTTSConfig


def test_sentences_follow_the_word_timings():
    turn = {"text": "By thunder, I know nothing. I'm a harpooner!", "start": 1.0, "end": 4.0,
            "words": [[1.0, "By"], [1.2, "thunder"], [1.8, "I"], [1.9, "know"], [2.1, "nothing"],
                      [2.9, "I'm"], [3.0, "a"], [3.1, "harpooner"]]}
    assert sentences_of(turn) == [("By thunder, I know nothing.", 1.0, 2.9), ("I'm a harpooner!", 2.9, 4.0)]
    turn["words"] = turn["words"][:-1]  # timings that do not match the text: the whole turn as one item
    assert sentences_of(turn) == [(turn["text"], 1.0, 4.0)]


def test_items_round_trip_through_their_file(tmp_path):
    rng = np.random.default_rng(0)
    items = [Item("c1", "Aye.", ["eI"], rng.integers(0, 1024, (8, 5)).astype(np.int16), rng.normal(size=128).astype(np.float32),
                  "happy", rng.normal(size=(15, 750)).astype(np.float32)),
             Item("nod:3", "nod", ["n", "0", "d"], np.zeros((8, 0), np.int16), np.zeros(128, np.float32), "neutral",
                  rng.normal(size=(47, 750)).astype(np.float32), silent=True)]
    save_items(tmp_path / "c1.npz", items)
    back = load_items(tmp_path / "c1.npz")
    assert [(b.conv, b.text, b.phonemes, b.emotion, b.silent) for b in back] == \
        [(i.conv, i.text, i.phonemes, i.emotion, i.silent) for i in items]
    for a, b in zip(items, back, strict=True):
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.speaker, b.speaker)
        assert np.allclose(a.behaviour, b.behaviour, atol=1e-2)  # stored as float16
    assert not list(tmp_path.glob("*.part*"))  # written to a temporary name, then renamed


def test_training_levels_cover_the_schedules():
    rng = np.random.default_rng(0)
    valid = np.ones((400, 30), bool)
    valid[:, 25:] = False
    levels = training_levels(rng, valid, history=10)
    assert levels.shape == (400, 30) and (levels >= 0).all() and (levels <= 1).all()
    assert (levels[:, 25:] == 0).all()  # padding stays clean (and is masked out of the loss)
    clean_history = (levels[:, :10] == 0).all(1).mean()
    assert 0.6 < clean_history < 0.9  # the history is clean 70 % of the time
    shared = np.mean([np.unique(row[10:25]).size == 1 for row in levels])
    assert shared > 0.15  # one level for all (the uniform schedule) about a quarter of the time


def test_group_weights_give_each_group_a_third():
    w = group_weights()
    assert w.shape == (750,) and abs(float(w.mean()) - 1.0) < 1e-5
    pose = torch.zeros(750, dtype=torch.bool)
    pose[100:112] = pose[212:224] = True
    face = torch.arange(750) < 224
    for group in (pose, face & ~pose, ~face):
        assert abs(float(w[group].sum()) / 750 - 1 / 3) < 1e-5


def test_batches_of_speech_and_commands():
    torch.manual_seed(0)
    tts = KodamaTTS(KodamaTTSConfig.preset("tiny", symbols=("_", "n", "0", "d", "eI"), codebook_size=16))
    rng = np.random.default_rng(0)
    speech = Item("c1", "Aye.", ["eI", "_"], rng.integers(0, 16, (8, 6)).astype(np.int16), np.zeros(128, np.float32),
                  "calm", rng.normal(size=(10 + 6, 750)).astype(np.float32))
    command = Item("nod:1", "nod", ["n", "0", "d"], np.zeros((8, 0), np.int16), np.zeros(128, np.float32), "neutral",
                   rng.normal(size=(10 + 8, 750)).astype(np.float32), silent=True)
    unknown = Item("c2", "?", ["Q"], speech.codes, speech.speaker, "calm", speech.behaviour)  # a symbol the TTS lacks: left out
    b = Batcher([speech, unknown], [command], tts, np.zeros(750, np.float32), np.ones(750, np.float32), history=2,
                command_p=0.5, seed=0, data_history=10)
    assert b.items == [speech]
    batch = b.sample(8)
    silent = batch["silent"]
    assert silent.any() and (~silent).any()
    assert batch["x"].shape == (8, 2 + 8, 750)  # the model's 2 history tokens of the data's 10
    assert (batch["valid"].sum(1) == torch.where(silent, 2 + 8, 2 + 6)).all()
    assert (batch["boa"] == torch.where(silent, 2 + 3, 2 + 2)).all()
    with pytest.raises(ValueError, match="history"):
        Batcher([speech], [], tts, np.zeros(750), np.ones(750), history=12, command_p=0.0, seed=0, data_history=10)
