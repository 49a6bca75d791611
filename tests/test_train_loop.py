"""The shared loop: a run killed mid-way resumes to exactly the uninterrupted result; metrics.jsonl stays consistent."""

import json

import numpy as np
import pytest
import torch

from anima.train import train_loop
from anima.train.loop import METRICS_FILE

pytestmark = pytest.mark.unit

STEPS = 12


class Killed(RuntimeError):
    pass


def make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.GELU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 1))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def run(out, kill_at: int | None = None):
    """A trainer whose batches (numpy) and dropout (torch) both draw random numbers every step."""
    model, opt = make()
    rng = np.random.default_rng(0)

    def step(i: int) -> dict[str, float]:
        if i == kill_at:
            raise Killed(f"killed before step {i}")
        x = torch.from_numpy(rng.standard_normal((16, 4)).astype(np.float32))
        loss = torch.nn.functional.mse_loss(model(x), x[:, :1] * x[:, 1:2])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    train_loop(model, opt, step, STEPS, out, {}, save_every=4, progress=False, rngs=[rng])
    return model


def metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]


def test_killed_run_resumes_identically(tmp_path):
    full = run(tmp_path / "full")
    with pytest.raises(Killed):
        run(tmp_path / "cut", kill_at=6)  # checkpoint at step 4; steps 5 and 6 are lost
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["step"] == 4
    assert [m["step"] for m in metrics(tmp_path / "cut")] == [1, 2, 3, 4, 5, 6]
    resumed = run(tmp_path / "cut")
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    got, want = metrics(tmp_path / "cut"), metrics(tmp_path / "full")
    assert [m["step"] for m in got] == list(range(1, STEPS + 1))  # the lost steps' lines were dropped, then redone
    assert [m["loss"] for m in got] == [m["loss"] for m in want]
    assert all(m["lr"] == 1e-2 for m in got)


def test_resume_without_the_random_state_would_differ(tmp_path):
    """The check above can fail: restarting the samplers from their seed gives other weights."""
    full = run(tmp_path / "full")
    with pytest.raises(Killed):
        run(tmp_path / "cut", kill_at=6)
    meta_path = tmp_path / "cut" / "config.json"
    meta = json.loads(meta_path.read_text())
    del meta["extra"]["rng"]
    meta_path.write_text(json.dumps(meta))
    resumed = run(tmp_path / "cut")
    assert not all(torch.equal(a, b) for a, b in zip(full.parameters(), resumed.parameters(), strict=True))


def test_metrics_survive_checkpoint_saves_and_other_files_are_kept(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "feature_stats.npz").write_bytes(b"stats")
    run(out)
    assert (out / "feature_stats.npz").read_bytes() == b"stats"
    assert len(metrics(out)) == STEPS
    assert not (tmp_path / "run.old").exists()
