"""The talker's judges: the anima phoneme judge (CTC) and the anima speaker encoder (GE2E).

A tiny espeak-ng corpus (5 voices, a few sentences) is made once per module in a temp directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anima.checkpoint import CheckpointError
from anima.talker.data.manifest import SAMPLE_RATE, Utterance, append_utterances, load_wav, read_manifest
from anima.talker.model.features import judge_features
from anima.talker.model.phoneme_judge import (
    CONFIGS,
    PhonemeJudge,
    PhonemeJudgeConfig,
    ctc_collapse,
)
from anima.talker.model.speaker_encoder import SpeakerEncoder, SpeakerEncoderConfig, equal_error_rate, ge2e_loss

torch.set_num_threads(1)

SENTENCES = ["The cat sat on the mat.", "She sells sea shells by the shore.", "Open the door, please.",
             "It is raining again today.", "We walked home slowly.", "Bring me the red book.", "How old is your dog?"]
TRAIN_VOICES = ("en-us", "en-gb", "en-us+f3")
HELDOUT_VOICES = ("en-gb-scotland", "en-us+m3")
SPLIT_OF_SENTENCE = ["train", "train", "train", "train", "val", "test", "test"]


def _speak(tts, text: str, voice: str) -> tuple[np.ndarray, tuple[tuple[str, float, float], ...]]:
    chunks = list(tts.stream(text, voice=voice))
    samples = np.concatenate([c.samples for c in chunks]).astype(np.float32)
    events = [e for c in chunks for e in c.events if e.kind == "phoneme"]
    end = samples.size / SAMPLE_RATE
    phonemes = tuple(("_" if e.text.startswith("_") else e.text, e.time_s, events[k + 1].time_s if k + 1 < len(events) else end)
                     for k, e in enumerate(events))
    return samples, phonemes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    import soundfile as sf

    from anima.talker.espeak import EspeakTTS

    root = tmp_path_factory.mktemp("corpus")
    (root / "wav").mkdir()
    tts = EspeakTTS()
    inventory, utts = ["_"], []
    for voice in TRAIN_VOICES + HELDOUT_VOICES:
        for s, text in enumerate(SENTENCES):
            split = SPLIT_OF_SENTENCE[s]
            if voice in HELDOUT_VOICES:
                if split != "test":
                    continue
                split = "heldout"
            samples, phonemes = _speak(tts, text, voice)
            inventory += [p for p, _, _ in phonemes if p not in inventory]
            uid = f"{voice.replace('+', '_')}-{s:03d}"
            sf.write(root / "wav" / f"{uid}.wav", (samples * 32767).astype(np.int16), SAMPLE_RATE, subtype="PCM_16")
            utts.append(Utterance(id=uid, text=text, voice=f"espeak:{voice}", emotion="neutral", split=split,
                                  sentence_id=s, duration_s=samples.size / SAMPLE_RATE, phonemes=phonemes,
                                  timing="espeak-events"))
    append_utterances(root, utts)
    (root / "phonemes.json").write_text(json.dumps(inventory))
    return root


def _tiny_judge(corpus: Path) -> PhonemeJudge:
    inventory = tuple(json.loads((corpus / "phonemes.json").read_text()))
    return PhonemeJudge(PhonemeJudgeConfig(inventory=inventory, **CONFIGS["tiny"]))


# ---------------------------------------------------------------------------------------------
# Features and metrics


def test_features_shape_and_bad_input() -> None:
    assert judge_features(np.zeros(24000, dtype=np.float32)).shape == (100, 80)
    assert judge_features(np.zeros(241, dtype=np.float64)).shape == (2, 80)
    with pytest.raises(TypeError, match="numpy array"):
        judge_features([0.0] * 100)
    with pytest.raises(ValueError, match="empty"):
        judge_features(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        judge_features(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(TypeError, match="int16"):
        judge_features(np.zeros(100, dtype=np.int16))


def test_ctc_collapse_merges_repeats_and_drops_blanks() -> None:
    assert ctc_collapse([5, 1, 1, 5, 1, 2, 2, 5, 5, 3], blank=5) == [1, 1, 2, 3]
    assert ctc_collapse([0, 0, 0], blank=0) == []
    assert ctc_collapse([2, 2, 2], blank=0) == [2]
    assert ctc_collapse([], blank=0) == []


def test_equal_error_rate() -> None:
    same = np.array([True, True, False, False])
    assert equal_error_rate(np.array([0.9, 0.8, 0.1, 0.2]), same) == pytest.approx(0.0)
    assert equal_error_rate(np.array([0.1, 0.2, 0.9, 0.8]), same) == pytest.approx(1.0)
    assert equal_error_rate(np.array([0.9, 0.3, 0.5, 0.1]), same) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both"):
        equal_error_rate(np.array([0.1, 0.2]), np.array([True, True]))


# ---------------------------------------------------------------------------------------------
# Phoneme judge


def test_judge_shapes_and_padding_does_not_leak(corpus: Path) -> None:
    judge = _tiny_judge(corpus).eval()
    feats = torch.randn(2, 37, 80)
    logp, out_len = judge(feats, torch.tensor([37, 20]))
    assert logp.shape == (2, 19, judge.config.n_outputs) and out_len.tolist() == [19, 10]
    alone, _ = judge(feats[1:, :20], torch.tensor([20]))
    torch.testing.assert_close(logp[1, :10], alone[0], atol=1e-5, rtol=1e-5)


def test_judge_loss_falls_in_a_few_steps(corpus: Path) -> None:
    from anima.talker.training.train_judge import CtcBatcher, load_features

    torch.manual_seed(0)
    judge = _tiny_judge(corpus)
    batcher = CtcBatcher(load_features(corpus, "train"), judge.config.inventory, crop_frames=150, augment=False)
    b = batcher.sample(6)
    assert b["feats"].shape[0] == 6 and b["targets"].shape[0] == 6 and int(b["target_lengths"].min()) > 0
    opt = torch.optim.Adam(judge.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = judge.loss(b["feats"], b["lengths"], b["targets"], b["target_lengths"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0]


def test_train_judge_checkpoint_round_trip(corpus: Path, tmp_path: Path) -> None:
    from anima.talker.training.train_judge import train_judge

    out = tmp_path / "judge"
    report = train_judge(corpus, out, steps=4, config_name="tiny", batch=4, crop_s=1.0, eval_every=2, progress=False)
    assert {"val", "test", "heldout"} <= set(report) and report["heldout"]["utterances"] == 4
    assert report["test"]["per"] >= 0 and set(report["heldout"]["per_by_voice"]) == {f"espeak:{v}" for v in HELDOUT_VOICES}
    assert (out / "report.json").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) == 4
    judge = PhonemeJudge.from_pretrained(out)
    utt = read_manifest(corpus, "test")[0]
    heard = judge.recognize(load_wav(corpus, utt))
    assert isinstance(heard, list) and all(p in judge.config.inventory and p != "_" for p in heard)
    again = PhonemeJudge.from_pretrained(out)
    for (k, a), (_, b) in zip(judge.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_judge_bad_input_and_bad_checkpoints(corpus: Path, tmp_path: Path) -> None:
    from anima.checkpoint import save_checkpoint

    judge = _tiny_judge(corpus)
    with pytest.raises(ValueError, match="empty"):
        judge.recognize(np.zeros(0, dtype=np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        judge.recognize("hello")
    with pytest.raises(CheckpointError, match="no config.json"):
        PhonemeJudge.from_pretrained(tmp_path / "missing")
    save_checkpoint(tmp_path / "j", judge, judge.checkpoint_config())
    (tmp_path / "j" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        PhonemeJudge.from_pretrained(tmp_path / "j")
    encoder = SpeakerEncoder(SpeakerEncoderConfig(channels=8, n_blocks=1, dim=4))
    save_checkpoint(tmp_path / "s", encoder, encoder.checkpoint_config())
    with pytest.raises(CheckpointError, match="not an anima phoneme judge"):
        PhonemeJudge.from_pretrained(tmp_path / "s")
    with pytest.raises(CheckpointError, match="not an anima speaker encoder"):
        SpeakerEncoder.from_pretrained(tmp_path / "j")


# ---------------------------------------------------------------------------------------------
# Speaker encoder


def test_ge2e_loss_prefers_separated_voices() -> None:
    torch.manual_seed(0)
    w, b = torch.tensor(10.0), torch.tensor(-5.0)
    centres = torch.nn.functional.normalize(torch.randn(3, 1, 16), dim=-1)
    clustered = centres + 0.05 * torch.randn(3, 4, 16)
    mixed = torch.randn(3, 4, 16)
    assert ge2e_loss(clustered, w, b) < 0.1 < ge2e_loss(mixed, w, b)
    with pytest.raises(ValueError, match="2 utterances"):
        ge2e_loss(torch.randn(3, 1, 16), w, b)


def test_speaker_encoder_shapes_and_ge2e_training(corpus: Path) -> None:
    from anima.talker.training.train_judge import load_features
    from anima.talker.training.train_speaker import Ge2eBatcher

    torch.manual_seed(0)
    encoder = SpeakerEncoder(SpeakerEncoderConfig(channels=32, n_blocks=2, dim=16, segment_frames=60))
    batcher = Ge2eBatcher(load_features(corpus, "train"), voices=3, utterances=3, segment=60)
    x = batcher.sample()
    assert x.shape == (3, 3, 60, 80)
    emb = encoder(x.reshape(9, 60, 80))
    assert emb.shape == (9, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(9))
    opt = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = encoder.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_train_speaker_checkpoint_round_trip(corpus: Path, tmp_path: Path) -> None:
    from anima.talker.training.train_speaker import train_speaker

    out = tmp_path / "speaker"
    report = train_speaker(corpus, out, steps=3, config_name="tiny", voices=3, utterances=3, eval_every=2, progress=False)
    assert report["train_voices"] == sorted(f"espeak:{v}" for v in TRAIN_VOICES)
    assert report["heldout"]["voices"] == 2 and 0.0 <= report["heldout"]["eer"] <= 1.0
    assert -1.0 <= report["test"]["cos_other"] <= 1.0
    encoder = SpeakerEncoder.from_pretrained(out)
    samples = load_wav(corpus, read_manifest(corpus, "heldout")[0])
    e = encoder.embed(samples)
    assert e.shape == (encoder.config.dim,) and e.dtype == np.float32
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(SpeakerEncoder.from_pretrained(out).embed(samples), e, atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        encoder.embed(np.zeros(0, dtype=np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        encoder.embed(samples.tolist())


def test_inventory_of_a_corpus_still_being_built(corpus: Path, tmp_path: Path) -> None:
    import shutil

    from anima.talker.training.train_judge import corpus_inventory

    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(corpus / "manifest.jsonl", partial / "manifest.jsonl")  # no phonemes.json yet
    inventory = corpus_inventory(partial)
    assert inventory[0] == "_" and list(inventory[1:]) == sorted(inventory[1:])
    assert set(inventory) == set(corpus_inventory(corpus))
