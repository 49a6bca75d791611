"""Checkpoints: safetensors + JSON round trip, resume continues exactly, no pickle, atomic saves."""

import json

import pytest
import torch

from anima.checkpoint import CheckpointError
from anima.train import load_checkpoint, save_checkpoint, train_loop

pytestmark = pytest.mark.unit


def make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def step_fn_for(model, opt):
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)) for _ in range(50)]

    def step(i):
        x, y = data[i % len(data)]
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return step


def test_round_trip_and_files(tmp_path):
    model, opt = make()
    save_checkpoint(tmp_path / "ck", model, {"width": 8}, step=3, optimizer=opt)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors", "optimizer.safetensors"]
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["config"] == {"width": 8}
    other, opt2 = make()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    meta = load_checkpoint(tmp_path / "ck", other, opt2)
    assert meta["step"] == 3
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_matches_uninterrupted_training(tmp_path):
    model, opt = make()
    train_loop(model, opt, step_fn_for(model, opt), 40, tmp_path / "a", {}, save_every=10, progress=False)
    model2, opt2 = make()
    train_loop(model2, opt2, step_fn_for(model2, opt2), 20, tmp_path / "b", {}, save_every=10, progress=False)
    model3, opt3 = make()  # a fresh process: resumes from step 20
    state = train_loop(model3, opt3, step_fn_for(model3, opt3), 40, tmp_path / "b", {}, save_every=10, progress=False)
    assert state.step == 40
    for a, b in zip(model.parameters(), model3.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_mismatched_weights_are_a_clear_error(tmp_path):
    model, _ = make()
    save_checkpoint(tmp_path / "ck", model, {})
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "ck", torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "missing", model)
