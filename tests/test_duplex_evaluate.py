"""The duplex evaluation (anima/e2e/duplex/training/evaluate.py): the speech-activity rule, the four
turn-taking measures on hand-made timelines with known answers, G's timeline alignment, and a smoke
run of the whole evaluation (CLI included) on a tiny synthetic conversation with tiny random models."""

from __future__ import annotations

import json
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from anima.e2e.duplex.training import evaluate as ev
from anima.e2e.duplex.training.evaluate import Timeline

torch.set_num_threads(1)
SR = 24_000


def tone(ticks: list[tuple[int, int]], total_ticks: int, amp: float = 0.1) -> np.ndarray:
    """A 200 Hz tone in the 40 ms ticks [a, b) of each pair, silence elsewhere."""
    audio = np.zeros(total_ticks * 960, np.float32)
    t = np.arange(audio.size) / SR
    for a, b in ticks:
        audio[a * 960:b * 960] = amp * np.sin(2 * np.pi * 200 * t[a * 960:b * 960])
    return audio


def tl(user, turn_ends=(), cut_ins=(), user_starts=None) -> Timeline:
    user = [(a, b, k) for a, b, k in user]
    return Timeline(user, list(turn_ends), sorted(user_starts if user_starts is not None else [u[0] for u in user]),
                    list(cut_ins), 100.0)


# -- the rule ----------------------------------------------------------------------------------------

def test_the_rule_uses_the_engine_constants_and_bridges_short_pauses():
    from anima.e2e.duplex.engine import SPEAKING_HANGOVER_S, SPEAKING_RMS

    assert ev.SPEAKING_RMS == SPEAKING_RMS and ev.HANGOVER_TICKS * ev.TICK_S == pytest.approx(SPEAKING_HANGOVER_S)
    # loud 5..9, 9 quiet ticks (bridged), loud 19..20, 10 quiet ticks (ends it), loud 31
    audio = tone([(5, 10), (19, 21), (31, 32)], 40)
    np.testing.assert_allclose(ev.speech_segments(audio), [(0.2, 0.84), (1.24, 1.28)])
    # the threshold: RMS 0.009 is quiet, 0.011 is speech (a sine's RMS is amp / sqrt 2)
    assert ev.speech_segments(tone([(0, 5)], 10, amp=0.009 * 2 ** 0.5)) == []
    np.testing.assert_allclose(ev.speech_segments(tone([(0, 5)], 10, amp=0.011 * 2 ** 0.5)), [(0.0, 0.2)])
    assert ev.speech_segments(np.zeros(1000, np.float32)) == []
    with pytest.raises(ValueError, match="samples"):
        ev.tick_rms(np.zeros((2, 960)))
    mask = ev.activity_mask([(0.2, 0.84)], 25)
    assert mask.sum() == 16 and mask[5] and mask[20] and not mask[21] and not mask[4]


def test_the_online_rule_is_the_offline_one():
    audio = tone([(5, 10), (19, 21), (31, 32)], 50)
    rule = ev.SpeakingRule()
    states = np.array([rule.push(audio[k * 960:(k + 1) * 960]) for k in range(50)])
    on = np.flatnonzero(states)
    assert on[0] == 5 and not states[4]
    assert states[19:30].all() and not states[30]  # last loud tick 20, silent for 10 ticks: speech over at tick 30
    assert states[31:41].all() and not states[41]


# -- the four measures -------------------------------------------------------------------------------

def test_reply_onset_within_one_second_counts_and_later_does_not():
    t = tl([(0.0, 2.0, "question"), (5.0, 7.0, "question")], turn_ends=[2.0, 7.0])
    r = ev.reply_onsets([(2.5, 4.0), (8.5, 9.0)], t)  # 0.5 s after the first stop, 1.5 s after the second
    assert (r["reply_turns"], r["reply_hits"]) == (2, 1)
    assert r["reply_delays"] == pytest.approx([0.5, 1.5])
    assert ev.reply_onsets([(1.85, 3.0)], tl([(0.0, 2.0, "q")], [2.0]))["reply_hits"] == 1  # 0.15 s early: allowed
    late = ev.reply_onsets([(1.7, 3.0)], tl([(0.0, 2.0, "q")], [2.0]))  # 0.3 s early: already speaking, no reply
    assert late["reply_hits"] == 0 and late["reply_delays"] == [None]
    # no onset before the next user turn: no delay at all (not the onset of a later reply)
    r = ev.reply_onsets([(6.0, 7.0)], tl([(0.0, 2.0, "q"), (4.0, 5.0, "q")], [2.0]))
    assert r["reply_delays"] == [None]


def test_barge_in_stop_within_300_ms_counts_and_500_ms_does_not():
    t = tl([(3.0, 4.0, "barge_in"), (6.0, 7.0, "backchannel"), (9.0, 10.0, "question")])
    r = ev.barge_ins([(0.0, 3.2), (5.0, 6.5)], t)["barge_ins"]  # the agent goes on 0.2 s, then 0.5 s; silent at 9 s
    assert [b["stopped"] for b in r] == [True, False]
    assert [b["stop_s"] for b in r] == pytest.approx([0.2, 0.5])
    s = ev.summarise([ev.turn_taking([(0.0, 3.2), (5.0, 6.5)], t)])
    assert s["barge_ins"] == 2 and s["barge_in_stop_rate"] == 0.5
    assert s["barge_in_by_kind"] == {"backchannel": {"count": 1, "stopped": 0, "rate": 0.0},
                                     "barge_in": {"count": 1, "stopped": 1, "rate": 1.0}}


def test_interruptions_precision_and_recall():
    t = tl([(0.0, 3.0, "monologue"), (5.0, 8.0, "monologue"), (10.0, 12.0, "question")], cut_ins=[1.4, 11.0])
    agent = [(0.2, 0.5), (1.0, 1.5), (6.0, 6.5), (8.5, 9.0)]  # 0.2 s in: too early; 1.0 and 6.0: cut-ins; 8.5: after
    assert ev.interruptions(agent, t) == [1.0, 6.0]
    s = ev.summarise([ev.turn_taking(agent, t)])
    assert (s["interrupts_detected"], s["interrupts_reference"], s["interrupts_matched"]) == (2, 2, 1)
    assert s["interrupt_precision"] == 0.5 and s["interrupt_recall"] == 0.5
    assert ev.match_events([1.0, 1.2], [1.1]) == 1  # one to one
    assert ev.match_events([1.0, 3.0], [0.5, 2.5]) == 2
    assert ev.match_events([1.0], [2.5]) == 0  # 1.5 s apart
    empty = ev.summarise([ev.turn_taking([], tl([(0.0, 1.0, "q")]))])
    assert empty["interrupt_precision"] is None and empty["interrupt_recall"] is None


def test_overlap_excludes_interruptions_to_the_end_of_their_user_segment():
    t = tl([(0.0, 4.0, "question"), (10.0, 14.0, "monologue")])
    # 0.1 s into the first segment: not an interruption (0.5 s of overlap); started before the second
    # (0.5 s); cuts in at 12 s: from there to 14 s is the interruption's, not overlap
    agent = [(0.1, 0.6), (9.0, 10.5), (12.0, 16.0)]
    r = ev.overlap(agent, t, ev.interruptions(agent, t))
    assert r["overlap_s"] == pytest.approx(1.0) and r["user_speech_s"] == pytest.approx(8.0)
    assert ev.overlap(agent, t, [])["overlap_s"] == pytest.approx(3.0)  # without the exclusion
    s = ev.summarise([ev.turn_taking(agent, t), ev.turn_taking([], tl([(0.0, 2.0, "q")]))])  # pooled over conversations
    assert s["overlap_rate"] == pytest.approx(1.0 / 10.0)


def test_timeline_from_meta_drops_cut_turns_and_backchannels():
    meta = {"duration_s": 20.0, "segments": {"user": [[0.5, 2.0, 0, "question"], [3.0, 3.4, 1, "backchannel"]]},
            "events": [{"t": 0.4, "type": "user_start"}, {"t": 2.0, "type": "user_stop", "kind": "question", "cut_by_agent": False},
                       {"t": 3.5, "type": "user_stop", "kind": "backchannel", "cut_by_agent": False},
                       {"t": 6.0, "type": "user_stop", "kind": "monologue", "cut_by_agent": True},
                       {"t": 5.8, "type": "agent_cut_in", "by": "agent", "reason": "patience"}]}
    t = ev.timeline(meta)
    assert t.turn_ends == [2.0] and t.cut_ins == [5.8] and t.user_starts == [0.4]
    assert t.user == [(0.5, 2.0, "question"), (3.0, 3.4, "backchannel")] and t.duration_s == 20.0


# -- driving G ---------------------------------------------------------------------------------------

class EchoAgent:
    """Plays the user's previous step back (as G's delay would: step i returns frame i-1); records its flags."""

    def reset(self):
        self.prev, self.steps, self.seen = np.zeros(1920, np.float32), 0, []
        self.user_speaking = self.agent_speaking = False

    def step(self, chunk):
        self.seen.append((self.user_speaking, self.agent_speaking))
        out, self.prev = self.prev, np.array(chunk, np.float32)
        frame = 2 * (self.steps - 1) + np.arange(2.0)
        self.steps += 1
        return SimpleNamespace(audio=out, face=np.repeat(frame[:, None], 112, 1), joints=np.zeros((2, 22, 3)), capped=False)


def test_drive_aligns_frame_i_minus_1_and_sets_the_flags_like_the_stage():
    user = tone([(10, 30)], 70)  # speech 0.4 .. 1.2 s; 2.8 s = 35 steps (+1 to flush)
    agent = EchoAgent()
    rec = ev.drive(agent, user, [(0.4, 1.2, "question")])
    np.testing.assert_array_equal(rec.audio, user)  # G's frame j at the user's frame j
    np.testing.assert_array_equal(rec.face[:, 0], np.arange(70))
    assert rec.joints.shape == (70, 22, 3) and rec.step_s.shape == (36,)
    users = [u for u, _ in agent.seen]
    assert [i for i, u in enumerate(users) if u] == list(range(5, 15))  # steps overlapping 0.4 .. 1.2 s
    agents = [a for _, a in agent.seen]
    # the loud chunks 5..14 come back at steps 6..15; speaking from the step after the first, until
    # 10 quiet ticks (5 steps) were played after the last
    assert [i for i, a in enumerate(agents) if a] == list(range(7, 21))
    with pytest.raises(ValueError, match="user audio"):
        ev.drive(agent, np.zeros(0, np.float32), [])


# -- the whole evaluation, tiny --------------------------------------------------------------------------

CASCADE_TICKS = [(30, 60), (100, 130)]  # the synthetic cascade speaks 1.2 .. 2.4 s and 4.0 .. 5.2 s
USER_TICKS = [(5, 36), (70, 90), (120, 140)]  # 0.2 .. 1.44, 2.8 .. 3.6, 4.8 .. 5.6 s


def write_conversation(root, name, seed, split):
    """A 6 s synthetic conversation in the corpus format: the agent cuts in on a monologue, answers a
    question 0.4 s after it, and goes on 0.4 s into a barge-in, which then gets no reply."""
    from anima.e2e.data.format import write_conversation as write

    T = 150
    rng = np.random.default_rng(seed)
    motion = {"face": (0.05 * rng.standard_normal((T, 112))).astype(np.float32),
              "joints": (0.1 * rng.standard_normal((T, 22, 3))).astype(np.float32),
              "joint_vel": np.zeros((T, 22, 3), np.float32), "root": np.zeros((T, 3), np.float32),
              "prompt_id": np.zeros(T, np.int64), "body263": (0.1 * rng.standard_normal((120, 263))).astype(np.float32)}
    meta = {"split": split, "segments": {
        "user": [[0.2, 1.44, 0, "monologue"], [2.8, 3.6, 1, "question"], [4.8, 5.6, 2, "barge_in"]],
        "agent": [[1.2, 2.4, 1, "reply"], [4.0, 5.2, 2, "interrupted"]]},
        "events": [{"t": 0.2, "type": "user_start", "turn": 0, "kind": "monologue"},
                   {"t": 1.2, "type": "agent_cut_in", "by": "agent", "reason": "scripted"},
                   {"t": 1.44, "type": "user_stop", "turn": 0, "kind": "monologue", "cut_by_agent": True},
                   {"t": 2.8, "type": "user_start", "turn": 1, "kind": "question"},
                   {"t": 3.6, "type": "user_stop", "turn": 1, "kind": "question", "cut_by_agent": False},
                   {"t": 4.8, "type": "user_start", "turn": 2, "kind": "barge_in"},
                   {"t": 5.6, "type": "user_stop", "turn": 2, "kind": "barge_in", "cut_by_agent": False}],
        "transcript": [{"speaker": "agent", "start": 1.2, "end": 2.4, "text": "Aye, sir."},
                       {"speaker": "agent", "start": 4.0, "end": 5.2, "text": "The sea is calm."}]}
    write(root / name, tone(CASCADE_TICKS, T), tone(USER_TICKS, T, amp=0.05), motion, meta)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A corpus (one test, one train conversation), a weights folder (g/, motion/), a talker folder
    (tokenizer/, judge/) and a behaviour evaluator, all tiny and random."""
    from anima.checkpoint import save_checkpoint
    from anima.e2e.duplex.model import DuplexConfig, DuplexDecoder, config_dict
    from anima.e2e.duplex.motion import MotionCodec, MotionCodecConfig
    from anima.e2e.mot.training.evaluator import CONFIGS as EVAL_CONFIGS
    from anima.e2e.mot.training.evaluator import BehaviourEvaluator, BehaviourEvaluatorConfig
    from anima.talker.data.phonemize import phonemize
    from anima.talker.model.phoneme_judge import CONFIGS as JUDGE_CONFIGS
    from anima.talker.model.phoneme_judge import PhonemeJudge, PhonemeJudgeConfig
    from anima.talker.model.tokenizer import CONFIGS as TOK_CONFIGS
    from anima.talker.model.tokenizer import SpeechTokenizer, config_to_dict

    root = tmp_path_factory.mktemp("duplex_eval")
    corpus = root / "dialogues"
    write_conversation(corpus, "c000000", 0, "test")
    write_conversation(corpus, "c000001", 1, "train")
    torch.manual_seed(0)
    model = DuplexDecoder(DuplexConfig.preset("tiny"))
    save_checkpoint(root / "weights" / "g", model, config_dict(model.config), 0)
    MotionCodec(MotionCodecConfig(latent=8, d_model=32, n_head=2, window=6)).save(root / "weights" / "motion")
    tok_cfg = TOK_CONFIGS["tiny"]
    save_checkpoint(root / "talker" / "tokenizer", SpeechTokenizer(tok_cfg), {"tokenizer": config_to_dict(tok_cfg)}, 0)
    inventory = tuple(["_"] + sorted({p for p in phonemize("Aye, sir. The sea is calm.") if not p.startswith("_")}))
    judge = PhonemeJudge(PhonemeJudgeConfig(inventory=inventory, **JUDGE_CONFIGS["tiny"]))
    save_checkpoint(root / "talker" / "judge", judge, judge.checkpoint_config(), 0)
    config = BehaviourEvaluatorConfig(**EVAL_CONFIGS["tiny"])
    save_checkpoint(root / "evaluator", BehaviourEvaluator(config), {"evaluator": asdict(config)}, 0)
    return root


def test_the_whole_evaluation_runs_from_the_command_line(tiny_setup, capsys):
    root = tiny_setup
    out = root / "eval.json"
    ev.main(["--weights", str(root / "weights"), "--talker", str(root / "talker"), "--dialogues", str(root / "dialogues"),
             "--evaluator", str(root / "evaluator"), "--fid-stride", "1.0", "--train-conversations", "5",
             "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["conversations"] == 1 and result["split"] == "test"
    c = result["cascade"]  # the synthetic cascade's known answers
    assert (c["reply_turns"], c["reply_onset_rate"], c["reply_missing"]) == (2, 0.5, 1)
    assert c["reply_delay_median_s"] == pytest.approx(0.4)
    assert (c["barge_ins"], c["barge_in_stop_rate"]) == (1, 0.0)  # went on 0.4 s after the barge-in
    assert c["barge_in_stop_median_s"] == pytest.approx(0.4)
    assert (c["interrupts_detected"], c["interrupts_reference"], c["interrupt_precision"], c["interrupt_recall"]) == (1, 1, 1.0, 1.0)
    assert c["user_speech_s"] == pytest.approx(1.24 + 0.8 + 0.8)
    assert c["overlap_s"] == pytest.approx(0.4)  # 4.8 .. 5.2 s; the cut-in's 1.2 .. 1.44 s is excluded
    assert c["speech_s"] == pytest.approx(2.4)
    g = result["g"]  # random weights: only that every number is there and sane
    for key in ("reply_turns", "barge_ins", "interrupts_reference", "user_speech_s"):
        assert g[key] == c[key] or key == "barge_ins"
    assert g["overlap_rate"] is not None and 0.0 <= g["overlap_rate"] <= 1.0
    assert g["capped_steps"] >= 0
    m = result["motion"]
    assert m["fid_g_vs_corpus"] >= 0 and m["fid_corpus_test_vs_train"] >= 0 and m["train_conversations"] == 1
    sp = result["speech"]
    assert sp["per_windows"] == 2 and sp["cascade"]["segments"] == 2 and sp["g"]["per"] >= 0
    assert 0.0 <= sp["cascade"]["speech_like_rate"] <= 1.0
    s = result["speed"]
    assert s["steps"] == 76 and s["step_ms_p95"] >= s["step_ms_median"] > 0  # 6 s = 75 steps + 1 to flush
    assert result["per_conversation"][0]["conv"] == "c000000"
    assert '"reply_onset_rate"' in capsys.readouterr().out
