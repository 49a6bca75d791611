"""Preference tuning of the duplex decoder: the judges, pair shards, the reward model (eq. 5), PPO (eq. 7)."""

import argparse
import json

import numpy as np
import pytest
import torch

from anima.checkpoint import save_checkpoint
from anima.e2e.duplex.model import DuplexConfig, DuplexDecoder, config_dict, delayed_rows, load_duplex
from anima.e2e.duplex.motion import MotionCodec, MotionCodecConfig
from anima.e2e.duplex.training import ppo, preference, reward
from anima.e2e.duplex.training.data import CHARACTERS, load_split, save_conversation
from anima.face.params import JAW_OPEN_ANGLE
from anima.talker.model.tokenizer import CONFIGS, SpeechTokenizer, config_to_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SR = 24_000


def _data(root, codebook: int = 64):
    """Four synthetic conversations (three train, one val): random codes, user/agent turns that alternate."""
    (root / "conv").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    splits = {}
    for i, split in enumerate(["train", "train", "train", "val"]):
        n = 60 + 5 * i
        steps = np.arange(n)
        user = (steps // 15) % 2 == 0  # 1.2 s turns
        save_conversation(root / "conv" / f"c{i}.npz", {
            "user_codes": rng.integers(0, codebook, (8, n)).astype(np.int16),
            "agent_codes": rng.integers(0, codebook, (8, n)).astype(np.int16),
            "motion": rng.normal(size=(2 * n, 375)).astype(np.float32),
            "joint_vel": (0.01 * rng.normal(size=(2 * n, 66))).astype(np.float32),
            "prompt_id": np.where(steps > 10, 0, -1).astype(np.int16),
            "prompt_emb": rng.normal(size=(1, 384)).astype(np.float32),
            "identity": np.array(i % len(CHARACTERS)),
            "agent_speaking": ~user & (steps % 15 > 2), "user_speaking": user})
        splits[f"c{i}"] = split
    (root / "splits.json").write_text(json.dumps(splits))
    (root / "SOURCE.json").write_text(json.dumps({"digest": "abc123"}))
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny random G (saved), tokenizer, motion codec and synthetic data."""
    root = tmp_path_factory.mktemp("pref")
    torch.manual_seed(0)
    config = DuplexConfig.preset("tiny", d_prompt=384, n_identity=len(CHARACTERS), identities=tuple(CHARACTERS))
    g = DuplexDecoder(config).eval()
    save_checkpoint(root / "g", g, {**config_dict(config), "tokenizer_digest": "abc123"}, 0)
    tokenizer = SpeechTokenizer(CONFIGS["tiny"]).eval()
    save_checkpoint(root / "tokenizer", tokenizer, {"tokenizer": config_to_dict(CONFIGS["tiny"])}, 0)
    codec = MotionCodec(MotionCodecConfig(latent=8, d_model=32, n_head=2, window=6)).eval()
    codec.save(root / "motion")
    return {"root": root, "g": g, "tokenizer": tokenizer, "codec": codec, "data": _data(root / "data")}


# -- the judges on hand-made timelines -----------------------------------------------------------------

def _voice(seconds: float, spans: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """Noise at speech level inside ``spans`` (s), silence elsewhere."""
    audio = np.zeros(int(seconds * SR), np.float32)
    rng = np.random.default_rng(seed)
    for a, b in spans:
        audio[int(a * SR):int(b * SR)] = 0.1 * rng.normal(size=int(b * SR) - int(a * SR))
    return audio


def _mask(steps: int, spans: list[tuple[int, int]]) -> np.ndarray:
    m = np.zeros(steps, bool)
    for a, b in spans:
        m[a:b] = True
    return m


def test_talking_over_the_user_scores_worse_unless_the_corpus_cut_in_there():
    S, prefix = 100, 20  # 8 s, generated from 1.6 s
    user = _mask(S, [(40, 80)])  # the user speaks 3.2-6.4 s
    recorded = _mask(S, [(82, 95)])
    face = np.zeros((2 * S, 112), np.float32)
    over = preference.judge(_voice(8, [(3.6, 6.0)]), face, user, recorded, prefix)
    after = preference.judge(_voice(8, [(6.6, 7.6)]), face, user, recorded, prefix)
    assert over["overlap"] < -0.5 and after["overlap"] == 0.0
    assert preference.total(over) < preference.total(after)
    cut_in = _mask(S, [(50, 70)])  # the recorded agent cut in 0.8 s into the user's turn: talking there is excused
    assert preference.judge(_voice(8, [(3.6, 6.0)]), face, user, cut_in, prefix)["overlap"] is None


def test_a_reply_half_a_second_after_the_stop_beats_no_reply_and_a_late_one():
    S, prefix = 100, 10
    user = _mask(S, [(20, 50)])  # stops at 4.0 s
    recorded = _mask(S, [(55, 80)])  # the corpus agent replied: a reply is due
    face = np.zeros((2 * S, 112), np.float32)
    on_time = preference.judge(_voice(8, [(4.5, 6.0)]), face, user, recorded, prefix)
    silent = preference.judge(np.zeros(8 * SR, np.float32), face, user, recorded, prefix)
    late = preference.judge(_voice(8, [(6.5, 7.5)]), face, user, recorded, prefix)
    assert on_time["gap"] == 1.0 and silent["gap"] == 0.0 and late["gap"] == 0.0
    assert preference.total(on_time) > preference.total(silent)
    assert preference.judge(_voice(8, [(4.5, 6.0)]), face, user, _mask(S, []), prefix)["gap"] is None  # no reply due


def test_lips_in_sync_with_the_audio_beat_lips_out_of_sync():
    rng = np.random.default_rng(1)
    frames = 150  # 6 s at 25 fps
    env = np.convolve(rng.random(frames), np.ones(3) / 3, mode="same") + 0.2  # a syllable-like loudness per frame
    audio = (np.repeat(env, 960) * 0.1 * rng.normal(size=frames * 960)).astype(np.float32)
    synced, other = np.zeros((frames, 112), np.float32), np.zeros((frames, 112), np.float32)
    synced[:, JAW_OPEN_ANGLE] = env
    other[:, JAW_OPEN_ANGLE] = rng.permutation(env)
    segs = [(0.0, 6.0)]
    assert preference.lips_score(synced, audio, segs) > 0.8 > preference.lips_score(other, audio, segs)
    assert preference.lips_score(synced, np.zeros_like(audio), []) == 0.0  # no speech: nothing to sync


def test_near_ties_are_dropped_and_the_better_total_wins():
    a = {"overlap": -0.1, "gap": 1.0, "lips": 0.5}
    assert preference.order_pair(a, {**a, "lips": 0.45}) is None  # 0.025 apart
    assert preference.order_pair(a, {**a, "overlap": -0.5}) == 0
    assert preference.order_pair({**a, "gap": None}, {**a, "gap": None, "lips": 0.9}) == 1


# -- sampling G and the pair shards ---------------------------------------------------------------------

def test_the_rollout_step_is_the_models_step_and_the_parallel_pass_agrees(world):
    g = world["g"]
    c = g.config
    batch = preference.window_batch(preference.windows(load_split(world["data"], "train"), 20, 2, np.random.default_rng(0)), 20)
    user = batch["user_codes"].long().transpose(1, 2)
    prompt = batch["prompt"][:, 5].float()
    a, b = g.new_state(2), g.new_state(2)
    for i in range(6):
        fa = user[:, i - 1] if i else None
        ga, gb = torch.Generator().manual_seed(i), torch.Generator().manual_seed(i)
        row, motion = preference.sample_step(g, a, fa, prompt, torch.ones(2, dtype=torch.bool), batch["identity"], 0.8, 50,
                                             generator=ga)
        out = g.step(b, fa, prompt=prompt, identity=batch["identity"], temperature=0.8, top_k=50, generator=gb)
        assert torch.equal(row, out.row) and torch.allclose(motion, out.motion.flatten(1))
    greedy = preference.rollout(g, batch, 4, 1e-6, world["codec"])  # temperature ~0: argmax
    _, logp = ppo.token_logprobs(g, greedy)
    gen = greedy.generated(c)
    assert torch.equal(logp.argmax(-1)[gen], greedy.rows[gen])
    assert torch.equal(greedy.rows[:, :4], delayed_rows(batch["agent_codes"].long(), c.delays, c.pad)[:, :4])  # replayed


def test_pairs_are_written_read_and_resumed_and_ties_dropped(world, tmp_path):
    convs = load_split(world["data"], "train")
    args = (world["g"], world["tokenizer"], world["codec"], convs)
    kw = dict(window_s=2.4, prefix_s=0.8, progress=False)
    m = preference.build_pairs(*args, tmp_path / "all", 3, margin=-1.0, **kw)  # every pair clears a negative margin
    assert m["pairs"] == 3 and m["shards"]["pairs-00000.npz"]["ties"] == 0
    pairs = preference.load_pairs(tmp_path / "all")
    assert pairs["rows_w"].shape == (3, 30, 8) and pairs["motion_l"].shape == (3, 30, 16)
    assert (pairs["total_w"] >= pairs["total_l"]).all()
    assert not np.array_equal(pairs["rows_w"][:, 10:], pairs["rows_l"][:, 10:])  # the two temperatures differ
    assert np.array_equal(pairs["rows_w"][:, :10], pairs["rows_l"][:, :10])  # the shared prefix
    before = (tmp_path / "all" / "pairs-00000.npz").read_bytes()
    preference.build_pairs(*args, tmp_path / "all", 3, margin=-1.0, **kw)  # complete: kept as it is
    assert (tmp_path / "all" / "pairs-00000.npz").read_bytes() == before
    with pytest.raises(ValueError, match="other settings"):
        preference.build_pairs(*args, tmp_path / "all", 3, margin=0.5, **kw)
    none = preference.build_pairs(*args, tmp_path / "none", 2, margin=100.0, **kw)  # everything is a tie
    assert none["pairs"] == 0 and none["shards"]["pairs-00000.npz"]["ties"] == none["shards"]["pairs-00000.npz"]["tried"] > 0
    s = preference.pairs_sample(pairs, np.array([0, 2]), "w", 384)
    assert s.rows.shape == (2, 30, 8) and s.prefix == 10 and s.has_prompt.any()


# -- the reward model -----------------------------------------------------------------------------------

def _separable_pairs(directory, config, n: int = 40, S: int = 24, prefix: int = 4):
    """Winners write token 5 on codebook 0 after the prefix, losers random tokens."""
    rng = np.random.default_rng(3)
    records = []
    for _ in range(n):
        user = rng.integers(0, config.codebook_size, (S, 8))
        rows = {s: rng.integers(0, config.codebook_size, (S, 8)) for s in "wl"}
        rows["w"][prefix:, 0] = 5
        rows["w"][:prefix] = rows["l"][:prefix]
        records.append({"user": user.astype(np.int16), "rows_w": rows["w"].astype(np.int16), "rows_l": rows["l"].astype(np.int16),
                        "motion_w": rng.normal(size=(S, config.motion_dim)).astype(np.float32),
                        "motion_l": rng.normal(size=(S, config.motion_dim)).astype(np.float32),
                        "prompt_table": np.zeros((preference.MAX_PROMPTS, 384), np.float16),
                        "prompt_index": np.full(S, -1, np.int8), "identity": np.array(0), "prefix": np.array(prefix),
                        "scores_w": np.zeros(3, np.float32), "scores_l": np.zeros(3, np.float32),
                        "total_w": np.array(1.0, np.float32), "total_l": np.array(0.0, np.float32),
                        "temperature_w": np.array(0.7, np.float32), "temperature_l": np.array(1.2, np.float32),
                        "conv": np.array("x"), "start": np.array(0)})
    directory.mkdir(parents=True)
    preference.write_shard(directory / "pairs-00000.npz", records[:16])
    preference.write_shard(directory / "pairs-00001.npz", records[16:])
    return directory


def _reward_args(*argv):
    parser = argparse.ArgumentParser()
    reward.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_reward_model_starts_as_g_and_learns_separable_pairs(world, tmp_path):
    g = world["g"]
    rm = reward.RewardModel.from_g(g)
    own = rm.g.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in g.state_dict().items())
    assert not rm.head.weight.any() and [n for n, _ in rm.named_parameters() if not n.startswith("g.")] == ["head.weight", "head.bias"]
    pairs = _separable_pairs(tmp_path / "pairs", g.config)
    report = reward.run(_reward_args("--g", str(world["root"] / "g"), "--pairs", str(pairs), "--out", str(tmp_path / "rm"),
                                     "--steps", "40", "--batch", "8", "--lr", "1e-3", "--val-fraction", "0.25", "--quiet"))
    assert report["val_pairs"] == 10 and report["val"]["accuracy"] > 0.9
    lines = [json.loads(x) for x in (tmp_path / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert np.mean([x["loss"] for x in lines[-5:]]) < np.mean([x["loss"] for x in lines[:5]])
    loaded = reward.load_reward(tmp_path / "rm")
    s = preference.pairs_sample(preference.load_pairs(pairs), np.arange(4), "w", 384)
    with torch.no_grad():
        assert loaded(s).shape == (4,)
    with pytest.raises(Exception, match="not a duplex reward model"):
        reward.load_reward(world["root"] / "g")


# -- PPO -------------------------------------------------------------------------------------------------

def _batch(world, B: int, S: int, seed: int):
    convs = load_split(world["data"], "train")
    return preference.window_batch(preference.windows(convs, S, B, np.random.default_rng(seed)), S)


def _prefers(token: int, config):
    """A reward: the share of the generated codebook-0 tokens that are ``token``."""

    def reward_fn(sample):
        gen = sample.generated(config)[..., 0]
        hit = (sample.rows[..., 0] == token) & gen
        return hit.sum(1).float() / gen.sum(1).clamp(min=1)
    return reward_fn


def test_ppo_starts_at_zero_kl_changes_the_policy_and_raises_the_preferred_token(world):
    torch.manual_seed(0)
    policy = load_duplex(world["root"] / "g")
    ref = load_duplex(world["root"] / "g")
    params = ppo.freeze_motion_head(policy)
    opt = torch.optim.Adam(params, lr=3e-3)
    baseline = ppo.Baseline()
    probe = preference.rollout(policy, _batch(world, 4, 24, 99), 4, 1.0, world["codec"])
    gen = probe.generated(policy.config)[..., 0]

    def p_token():
        with torch.no_grad():
            return float(ppo.token_logprobs(policy, probe)[1][..., 0, 7].exp()[gen].mean())

    start = p_token()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    first = ppo.ppo_iteration(policy, ref, _batch(world, 8, 24, 0), 4, _prefers(7, policy.config), opt, baseline, epochs=2,
                              codec=world["codec"])
    assert first["kl"] == pytest.approx(0.0, abs=1e-6) and first["kl_sampled"] == pytest.approx(0.0, abs=1e-4)
    after = policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("diffusion."))  # the motion head is fixed
    for it in range(1, 8):
        m = ppo.ppo_iteration(policy, ref, _batch(world, 8, 24, it), 4, _prefers(7, policy.config), opt, baseline, epochs=2,
                              codec=world["codec"])
        assert np.isfinite(m["kl"]) and m["kl"] >= 0.0
    assert m["kl"] > 0.0
    assert p_token() > 1.5 * start  # measured: 0.012 -> 0.024 in 8 iterations


def _ppo_args(world, tmp_path, *argv):
    parser = argparse.ArgumentParser()
    ppo.add_arguments(parser)
    root = world["root"]
    return parser.parse_args(["--g", str(root / "g"), "--reward", str(tmp_path / "rm"), "--motion", str(root / "motion"),
                              "--tokenizer", str(root / "tokenizer"), "--data", str(world["data"]), "--out",
                              str(tmp_path / "ppo"), "--batch", "2", "--window", "2.4", "--prefix", "0.8", "--quiet",
                              "--save-every", "1", *argv])


def test_ppo_run_logs_the_judges_resumes_and_writes_a_g_checkpoint(world, tmp_path):
    rm = reward.RewardModel.from_g(world["g"])
    torch.nn.init.normal_(rm.head.weight)
    save_checkpoint(tmp_path / "rm", rm, reward.reward_config(rm.config), 0)
    one = ppo.run(_ppo_args(world, tmp_path, "--iterations", "1", "--lr", "1e-3"))
    assert one["step"] == 1
    two = ppo.run(_ppo_args(world, tmp_path, "--iterations", "2", "--lr", "1e-3"))  # resumes at 1
    lines = [json.loads(x) for x in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2] and two["step"] == 2
    for key in ("reward", "kl", "judge_overlap", "judge_gap", "judge_lips", "clip_fraction"):
        assert key in lines[-1]
    assert lines[0]["kl"] == pytest.approx(0.0, abs=1e-6) and np.isfinite(lines[1]["kl"])
    saved = json.loads((tmp_path / "ppo" / "config.json").read_text())
    assert saved["config"]["kind"] == "duplex" and saved["config"]["ppo"]["init"] == str((world["root"] / "g").resolve())
    assert "baseline" in saved["extra"] and saved["extra"]["baseline"]["count"] == 2
    tuned = load_duplex(tmp_path / "ppo")
    assert any(not torch.equal(v, world["g"].state_dict()[k]) for k, v in tuned.state_dict().items())
