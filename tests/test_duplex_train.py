"""The duplex trainer: inputs/targets from a window, both stages run and resume, stage (b) starts from (a)."""

import argparse
import json

import numpy as np
import pytest
import torch

from anima.e2e.duplex.model import DuplexConfig, delayed_rows
from anima.e2e.duplex.motion import MotionCodec, MotionCodecConfig
from anima.e2e.duplex.training.data import CHARACTERS, WindowSampler, load_split, save_conversation
from anima.e2e.duplex.training.train import add_arguments, make_inputs, run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(root, codebook: int = 64):
    rng = np.random.default_rng(0)
    splits = {}
    for i, split in enumerate(["train", "train", "train", "val"]):
        n = 40 + 7 * i
        save_conversation(root / "conv" / f"c{i}.npz", {
            "user_codes": rng.integers(0, codebook, (8, n)).astype(np.int16),
            "agent_codes": rng.integers(0, codebook, (8, n)).astype(np.int16),
            "motion": rng.normal(size=(2 * n, 375)).astype(np.float32),
            "joint_vel": (0.01 * rng.normal(size=(2 * n, 66))).astype(np.float32),
            "prompt_id": np.where(np.arange(n) > 10, 0, -1).astype(np.int16),
            "prompt_emb": rng.normal(size=(1, 384)).astype(np.float32),
            "identity": np.array(i % len(CHARACTERS)),
            "agent_speaking": rng.random(n) > 0.5, "user_speaking": rng.random(n) > 0.5})
        splits[f"c{i}"] = split
    (root / "splits.json").write_text(json.dumps(splits))
    (root / "SOURCE.json").write_text(json.dumps({"digest": "abc123"}))
    return root


def test_inputs_are_the_previous_step_and_targets_the_delayed_row(tmp_path):
    (tmp_path / "conv").mkdir()
    data = _data(tmp_path)
    config = DuplexConfig.preset("tiny", latent=8, d_prompt=384, n_identity=len(CHARACTERS))
    sampler = WindowSampler(load_split(data, "train"), 30, np.random.default_rng(1))
    batch = sampler.sample(3)
    codec = MotionCodec(MotionCodecConfig(latent=8, d_model=32, n_head=2, window=6)).eval()
    inputs, targets, motion_target, mask = make_inputs(batch, config, codec, "av", np.random.default_rng(2))
    rows = delayed_rows(batch["agent_codes"].long(), config.delays, config.pad)
    valid = batch["valid"]
    assert torch.equal(inputs["agent_rows"][:, 0], torch.full((3, 8), config.start))
    assert torch.equal(inputs["agent_rows"][:, 1:][valid[:, :-1]], rows[:, :-1][valid[:, :-1]])
    assert torch.equal(inputs["user_frames"][:, 1:][valid[:, :-1]], batch["user_codes"].long().transpose(1, 2)[:, :-1][valid[:, :-1]])
    assert (targets[:, 0, 2:] == -100).all()  # the acoustic codebooks' first slot is the delay's: nothing to learn
    assert (targets[~valid] == -100).all()
    assert motion_target.shape == (3, 30, config.motion_dim) and torch.equal(mask, valid)
    assert torch.allclose(inputs["motion"][:, 1:], motion_target[:, :-1]) and not inputs["has_motion"][:, 0].any()
    audio_only = make_inputs(batch, config, codec, "audio", np.random.default_rng(2))
    assert audio_only[0]["motion"] is None and audio_only[2] is None


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_both_stages_train_and_resume(tmp_path):
    (tmp_path / "data" / "conv").mkdir(parents=True)
    data = _data(tmp_path / "data")
    codec = MotionCodec(MotionCodecConfig(latent=8, d_model=32, n_head=2, window=6)).eval()
    codec.save(tmp_path / "motion")
    common = ["--data", str(data), "--config", "tiny", "--batch", "2", "--window", "24", "--val-every", "2", "--quiet",
              "--set", "d_prompt=384"]
    a = run(_args("--stage", "audio", "--out", str(tmp_path / "a"), "--steps", "4", "--stop-at", "2", *common))
    assert a["step"] == 2 and a["diffusion"] is None
    a = run(_args("--stage", "audio", "--out", str(tmp_path / "a"), "--steps", "4", *common))  # resumes at 2
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    b = run(_args("--stage", "av", "--init", str(tmp_path / "a"), "--motion", str(tmp_path / "motion"),
                  "--out", str(tmp_path / "b"), "--steps", "3", *common))
    assert b["step"] == 3 and b["diffusion"] is not None and b["config"]["latent"] == 8
    saved = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    assert saved["kind"] == "duplex" and saved["tokenizer_digest"] == "abc123" and saved["model"]["identities"] == list(CHARACTERS)
    with pytest.raises(SystemExit, match="--motion"):
        run(_args("--stage", "av", "--out", str(tmp_path / "c"), "--steps", "1", *common))
