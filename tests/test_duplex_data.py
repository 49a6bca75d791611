"""Duplex training data: chunked codes equal whole-file codes, the build's files, resume, refusals, and
windows that agree with the corpus loader and the tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anima.checkpoint import save_checkpoint
from anima.e2e.data.format import SAMPLES_PER_FRAME, load_window, write_conversation
from anima.e2e.duplex.training.data import (
    CHARACTERS,
    Conversation,
    WindowSampler,
    build,
    character_index,
    encode_stream,
    load_split,
)
from anima.e2e.mot.behaviour import resample
from anima.embed import get_embedder
from anima.talker.model.tokenizer import CONFIGS, SpeechTokenizer, config_to_dict, load_tokenizer
from anima.thinker.persona import all_personas

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEP = 1920
PROMPTS = ["a person stands still and listens", "a person waves while speaking calmly"]


def _tokenizer_dir(path, seed: int):
    torch.manual_seed(seed)
    save_checkpoint(path, SpeechTokenizer(CONFIGS["tiny"]), {"tokenizer": config_to_dict(CONFIGS["tiny"])}, 0)
    return path


def _conversation(root, index: int, frames: int, character: str, split: str, rng: np.random.Generator) -> None:
    t = np.arange(frames * SAMPLES_PER_FRAME) / 24_000
    agent = (0.3 * np.sin(2 * np.pi * 180 * t) * (t > 0.5) + 0.01 * rng.normal(size=t.size)).astype(np.float32)
    user = (0.3 * np.sin(2 * np.pi * 310 * t) * (t < 1.2) + 0.01 * rng.normal(size=t.size)).astype(np.float32)
    prompt_id = np.full(frames, -1, np.int16)
    prompt_id[11:] = 0  # starts on an odd frame: the step's first frame decides
    prompt_id[frames // 2:] = 1
    motion = {"face": rng.normal(size=(frames, 112)).astype(np.float32),
              "joints": rng.normal(size=(frames, 22, 3)).astype(np.float32),
              "joint_vel": rng.normal(size=(frames, 22, 3)).astype(np.float32),
              "root": rng.normal(size=(frames, 3)).astype(np.float32), "prompt_id": prompt_id,
              "body263": rng.normal(size=(round(frames * 20 / 25), 263)).astype(np.float32)}
    meta = {"conv_id": f"c{index:06d}", "seed": index, "split": split, "identity": {"character": character},
            "prompts": PROMPTS, "events": [],
            "segments": {"agent": [[0.52, 1.9, 1, "reply"], [2.3, 3.0, 2, "reply"]], "user": [[0.0, 1.2, 0, "greeting"]]}}
    write_conversation(root / meta["conv_id"], agent, user, motion, meta)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three short conversations (one with an odd frame count) and one of an unknown character."""
    root = tmp_path_factory.mktemp("dialogues")
    rng = np.random.default_rng(0)
    _conversation(root, 0, 101, "ned", "train", rng)
    _conversation(root, 1, 80, "Captain Nemo", "train", rng)
    _conversation(root, 2, 60, "conseil", "val", rng)
    _conversation(root, 3, 60, "bob", "train", rng)
    return root


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("duplex")
    tok = _tokenizer_dir(tmp / "tokenizer", 0)
    out = tmp / "data"
    counts = build(corpus, out, tok, progress=False, embedder="hash", chunk_s=0.37)  # chunks not on token bounds
    return out, tok, counts


def test_chunked_codes_equal_the_whole_file_encode(tmp_path):
    tok = load_tokenizer(_tokenizer_dir(tmp_path / "tok", 1))
    t = np.arange(7 * STEP + 500) / 24_000
    wave = np.stack([0.4 * np.sin(2 * np.pi * 220 * t), np.random.default_rng(0).normal(0, 0.2, t.size)]).astype(np.float32)
    whole = tok.encode(torch.from_numpy(wave)).numpy()[:, :, :7]  # the last partial token is not a step
    for chunk in (STEP, 1000, 3 * STEP + 7, 100 * STEP):
        codes = encode_stream(tok, wave, chunk)
        assert codes.dtype == np.int16 and codes.shape == (2, 8, 7)
        assert np.array_equal(codes, whole), chunk
    assert len(np.unique(whole)) > 4  # not a degenerate tokenizer that gives one code everywhere


def test_characters_follow_the_personas():
    assert CHARACTERS == tuple(p.key for p in all_personas())
    assert character_index("ned") == CHARACTERS.index("ned") == character_index("Ned Land")
    with pytest.raises(ValueError, match="unknown character 'bob'.*nemo"):
        character_index("bob")


def test_build_writes_aligned_arrays(built, corpus):
    out, tok, counts = built
    assert counts["conversations"] == 3 and counts["failed"] == 1 and counts["kept"] == 0  # "bob": reported, skipped
    assert sorted(p.name for p in (out / "conv").iterdir()) == ["c000000.npz", "c000001.npz", "c000002.npz"]
    source = json.loads((out / "SOURCE.json").read_text())
    assert source["digest"] == load_tokenizer(tok).code_digest() and source["embedder"] == "hash"
    assert json.loads((out / "splits.json").read_text()) == {"c000000": "train", "c000001": "train", "c000002": "val",
                                                             "c000003": "train"}
    with np.load(out / "conv" / "c000000.npz") as z:
        n = 50  # 101 frames: 50 whole steps
        assert z["user_codes"].shape == z["agent_codes"].shape == (8, n) and z["agent_codes"].dtype == np.int16
        assert z["motion"].shape == (2 * n, 375) and z["motion"].dtype == np.float32
        assert z["joint_vel"].shape == (2 * n, 66) and z["prompt_id"].dtype == np.int16
        assert z["prompt_emb"].shape == (2, 384)
        assert np.allclose(z["prompt_emb"], get_embedder("hash").encode(PROMPTS))
        assert int(z["identity"]) == CHARACTERS.index("ned")
        assert z["prompt_id"][5] == -1 and z["prompt_id"][6] == 0  # frame 11 is step 5's second frame
        assert z["agent_speaking"].dtype == bool and z["agent_speaking"].shape == (n,)
    convs = load_split(out, "train")
    assert [c.conv_id for c in convs] == ["c000000", "c000001"]
    assert convs[1].identity == CHARACTERS.index("nemo") and convs[1].steps == 40
    assert [c.conv_id for c in load_split(out, "val")] == ["c000002"]


def test_rerun_keeps_finished_files_and_refuses_another_tokenizer(built, corpus, tmp_path, caplog):
    out, tok, _ = built
    before = {p.name: p.stat().st_mtime_ns for p in (out / "conv").iterdir()}
    again = build(corpus, out, tok, progress=False, embedder="hash")
    assert again["kept"] == 3 and again["conversations"] == 0 and again["failed"] == 1
    assert "c000003" in caplog.text and "unknown character 'bob'" in caplog.text  # reported, not raised
    assert {p.name: p.stat().st_mtime_ns for p in (out / "conv").iterdir()} == before
    other = _tokenizer_dir(tmp_path / "other", 5)
    with pytest.raises(ValueError, match="another tokenizer"):
        build(corpus, out, other, progress=False, embedder="hash")
    with pytest.raises(ValueError, match="another embedder"):
        build(corpus, out, tok, progress=False, embedder="minilm")


@pytest.mark.parametrize("start", [0, 7, 30])  # from the start, inside, across the end (padded)
def test_windows_agree_with_the_corpus_loader_and_the_tokenizer(built, corpus, start):
    out, tok, _ = built
    conv = next(c for c in load_split(out, "train") if c.conv_id == "c000000")
    S = 24
    win = WindowSampler([conv], S, np.random.default_rng(0)).window(conv, start)
    ref = load_window(corpus / "c000000", start * 0.08, S * 0.08)
    valid = win["valid"]
    assert np.array_equal(valid, ref["valid"].reshape(S, 2).all(1)) and valid.sum() == min(S, conv.steps - start)
    step = {k: ref[k].reshape(S, 2, *ref[k].shape[1:]) * valid.reshape(S, 1, *[1] * (ref[k].ndim - 1))  # half a step at the end: not a step
            for k in ("face", "joint_vel", "agent_speaking", "user_speaking")}
    assert np.array_equal(win["motion"][..., :112], step["face"])
    body = resample(np.load(corpus / "c000000" / "motion.npz")["body263"], 20, 25, frames=101)
    expect = np.zeros((S * 2, 263), np.float32)
    expect[: 2 * valid.sum()] = body[2 * start: 2 * start + 2 * valid.sum()]
    assert np.array_equal(win["motion"][..., 112:], expect.reshape(S, 2, 263))
    assert np.array_equal(win["joint_vel"], step["joint_vel"].reshape(S, 2, 66))
    for who in ("agent", "user"):
        assert np.array_equal(win[f"{who}_speaking"], step[f"{who}_speaking"].any(1))
    assert start == 30 or (win["agent_speaking"].any() and not win["agent_speaking"].all())
    pid = np.where(valid, ref["prompt_id"][::2], -1)
    assert np.array_equal(win["has_prompt"], pid >= 0)
    emb = get_embedder("hash").encode(PROMPTS)
    assert np.allclose(win["prompt"][pid >= 0], emb[pid[pid >= 0]]) and not win["prompt"][pid < 0].any()
    # codes: those of the whole file's encode (the same as the window's own encode when it starts at 0)
    model = load_tokenizer(tok)
    for who in ("agent", "user"):
        whole = model.encode(torch.from_numpy(load_window(corpus / "c000000", 0, 4.04)[f"{who}_audio"])[None])[0].numpy()
        expect = np.zeros((8, S), np.int64)
        expect[:, : valid.sum()] = whole[:, start: start + valid.sum()]
        assert np.array_equal(win[f"{who}_codes"], expect)
        if start == 0:
            own = model.encode(torch.from_numpy(ref[f"{who}_audio"])[None])[0].numpy()
            assert np.array_equal(win[f"{who}_codes"], own)


def test_sampler_batches(built):
    out, _, _ = built
    convs = load_split(out, "train")
    sampler = WindowSampler(convs, 45, np.random.default_rng(0), start_p=0.3)  # longer than c000001 (40 steps)
    b = sampler.sample(32)
    assert b["user_codes"].shape == b["agent_codes"].shape == (32, 8, 45) and b["agent_codes"].dtype == torch.long
    assert b["motion"].shape == (32, 45, 2, 375) and b["joint_vel"].shape == (32, 45, 2, 66)
    assert b["prompt"].shape == (32, 45, 384) and b["identity"].shape == (32,) and b["identity"].dtype == torch.long
    for key in ("has_prompt", "agent_speaking", "user_speaking", "valid"):
        assert b[key].shape == (32, 45) and b[key].dtype == torch.bool
    short = b["identity"] == CHARACTERS.index("nemo")
    assert short.any() and (~short).any()
    assert (b["valid"][short].sum(1) == 40).all() and (b["valid"][~short].sum(1) == 45).all()
    pad = ~b["valid"]
    assert not b["motion"][pad].any() and not b["agent_codes"].transpose(1, 2)[pad].any() and not b["has_prompt"][pad].any()
    long = convs[0]  # 50 steps: windows start at 0..5, at 0 more often (start_p); the short one always at 0
    firsts = b["motion"][~short, 0].numpy()  # (n, 2, 375)
    starts = [next(s for s in range(6) if np.array_equal(f, long.motion[2 * s: 2 * s + 2])) for f in firsts]
    assert 0 in starts and len(set(starts)) > 1
    with pytest.raises(ValueError, match="no conversations"):
        WindowSampler([], 8, np.random.default_rng(0))


def test_conversation_is_a_plain_record():
    c = Conversation("c9", "train", np.zeros((8, 3), np.int16), np.zeros((8, 3), np.int16), np.zeros((6, 375), np.float32),
                     np.zeros((6, 66), np.float32), np.full(3, -1, np.int16), np.zeros((0, 384), np.float32), 0,
                     np.zeros(3, bool), np.zeros(3, bool))
    w = WindowSampler([c], 4, np.random.default_rng(0)).window(c, 0)
    assert c.steps == 3 and w["valid"].tolist() == [True, True, True, False] and not w["prompt"].any()
