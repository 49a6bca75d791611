"""Data-parallel training: 2 gloo processes train the same weights as 1, and checkpoints resume across world sizes.

The workers run on localhost only (torch.multiprocessing spawn, gloo backend, one thread each).
"""

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from anima.train import distributed, load_weights, train_loop

pytestmark = pytest.mark.unit

BATCH = 8  # the global batch
STEPS = 6


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def mse(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(x), y)


def train(out, steps: int, save_every: int = 3) -> torch.nn.Module:
    """The trainer every test runs, in one process or as one rank of several (same code)."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    net = distributed.wrap(model, mse)

    def step(i: int) -> dict[str, float]:
        x = rng.standard_normal((BATCH, 4)).astype(np.float32)  # every rank draws the whole global batch
        y = np.sin(x.sum(1, keepdims=True))
        loss = net(*distributed.shard((torch.from_numpy(x), torch.from_numpy(y))))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    train_loop(model, opt, step, steps, out, {"width": 16}, save_every=save_every, progress=False, rngs=[rng])
    return model


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = distributed.init("cpu")
    try:
        assert (info.rank, info.world_size, distributed.world_size()) == (rank, world, world)
        half = distributed.shard({"x": torch.arange(8)})["x"]  # rank r keeps the r-th half of the global batch
        assert half.tolist() == list(range(4 * rank, 4 * rank + 4))
        with pytest.raises(ValueError, match="does not divide"):
            distributed.shard(torch.zeros(5, 2))
        train(os.path.join(root, "full"), STEPS)
        train(os.path.join(root, "half"), STEPS // 2)  # stopped halfway: resumed at world size 1 below
    finally:
        distributed.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(root)), nprocs=2, join=True)
    return root


def weights(directory) -> list[torch.Tensor]:
    model = make_model()
    load_weights(directory, model)
    return [p.detach() for p in model.parameters()]


def losses(directory) -> list[float]:
    return [json.loads(line)["loss"] for line in (directory / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_the_same_weights_as_one(two_ranks, tmp_path):
    one = train(tmp_path / "one", STEPS)
    for a, b in zip(one.parameters(), weights(two_ranks / "full"), strict=True):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    assert json.loads((two_ranks / "full" / "config.json").read_text())["step"] == STEPS
    # The logged loss is the mean over ranks of the slices' losses: the global batch's loss, written once.
    assert len(losses(two_ranks / "full")) == STEPS
    assert np.allclose(losses(two_ranks / "full"), losses(tmp_path / "one"), atol=1e-6)
    # A different model at world size 2 would not match: the comparison can fail.
    assert not torch.allclose(next(one.parameters()), next(make_model().parameters()))


def test_checkpoint_from_two_processes_resumes_in_one(two_ranks, tmp_path):
    assert json.loads((two_ranks / "half" / "config.json").read_text())["step"] == STEPS // 2
    resumed = train(two_ranks / "half", STEPS)  # world size 1 picks up the world-size-2 checkpoint
    one = train(tmp_path / "one", STEPS)
    for a, b in zip(one.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    assert [json.loads(x)["step"] for x in (two_ranks / "half" / "metrics.jsonl").read_text().splitlines()] == \
        list(range(1, STEPS + 1))
