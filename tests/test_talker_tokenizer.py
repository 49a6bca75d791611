"""The speech tokenizer: shapes, bitrate, streaming == offline, errors, training on a tiny espeak corpus, resume, loading."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anima.checkpoint import CheckpointError, save_checkpoint
from anima.talker.data.manifest import SILENCE, Utterance, append_utterances
from anima.talker.model.tokenizer import CONFIGS, SpeechTokenizer, load_tokenizer
from anima.talker.training.losses import PhonemeTeacher, semantic_loss
from anima.talker.training.pitch import pitch_loss, soft_f0, voiced_mask, yin_f0

TOKEN = 1920
SENTENCES = ["Hello there, my friend.", "The cat sat on the mat today.", "Where are you going now?",
             "I would like a cup of tea.", "Seven green apples fell down."]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions: more threads only contend on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> SpeechTokenizer:
    torch.manual_seed(0)
    return SpeechTokenizer(CONFIGS["tiny"]).eval()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Five espeak sentences (train) + one (val), with phoneme timings from espeak's events."""
    import soundfile as sf

    from anima.talker.espeak import EspeakTTS

    if not EspeakTTS.is_available():
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("corpus")
    (root / "wav").mkdir()
    tts, inventory, utts = EspeakTTS(voice="en-us"), [SILENCE], []
    for n, text in enumerate(SENTENCES + ["Good morning to you all."]):
        chunk = tts.synthesize(text)
        events = [e for e in chunk.events if e.kind == "phoneme"]
        duration = len(chunk.samples) / 24000
        phonemes = tuple((e.text, e.time_s, nxt.time_s if nxt else duration)
                         for e, nxt in zip(events, events[1:] + [None], strict=True))
        inventory += [p for p, _, _ in phonemes if p not in inventory]
        u = Utterance(id=f"u{n}", text=text, voice="espeak:en-us", emotion="neutral",
                      split="train" if n < len(SENTENCES) else "val", sentence_id=n, duration_s=duration,
                      phonemes=phonemes, timing="espeak-events")
        sf.write(root / u.wav, chunk.samples, 24000, subtype="PCM_16")
        utts.append(u)
    append_utterances(root, utts)
    (root / "phonemes.json").write_text(json.dumps(inventory))
    return root


# -- model ------------------------------------------------------------------------------------------


def test_shapes_bitrate_and_code_range(tiny):
    assert tiny.num_codebooks == 8 and tiny.frame_rate == 12.5
    assert tiny.bitrate == 8 * np.log2(tiny.codebook_size) * 12.5
    assert SpeechTokenizer(CONFIGS["small"]).bitrate == 1000.0  # 8 x 10 bit x 12.5 Hz
    wav = torch.randn(2, 5 * TOKEN + 100) * 0.1  # not a whole number of tokens: padded up
    codes = tiny.encode(wav)
    assert codes.shape == (2, 8, 6) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < tiny.codebook_size
    assert tiny.decode(codes).shape == (2, 6 * TOKEN)


def test_ablation_has_eight_acoustic_codebooks():
    model = SpeechTokenizer(dataclasses.replace(CONFIGS["tiny"], semantic=False)).eval()
    assert model.ac_rvq.num_codebooks == 8 and not hasattr(model, "sem_rvq")
    assert model.encode(torch.randn(1, 2 * TOKEN)).shape == (1, 8, 2)


@pytest.mark.parametrize("chunks", [[TOKEN] * 7, [1, 100, 3000, 17, 5000, 4000, 1322], [7 * TOKEN]])
def test_streaming_equals_offline(tiny, chunks):
    torch.manual_seed(1)
    wav = torch.randn(2, 7 * TOKEN) * 0.2
    codes, audio = tiny.encode(wav), tiny.decode(tiny.encode(wav))
    enc, dec = tiny.new_encoder_state(), tiny.new_decoder_state()
    got_codes, got_audio, pos = [], [], 0
    for n in chunks:
        c = tiny.encode_step(enc, wav[:, pos:pos + n])
        pos += n
        assert c.shape[:2] == (2, 8)
        got_codes.append(c)
        got_audio.append(tiny.decode_step(dec, c))
    assert torch.equal(torch.cat(got_codes, -1), codes)
    torch.testing.assert_close(torch.cat(got_audio, -1), audio, atol=1e-5, rtol=1e-4)


def test_harmonic_branch_streams_like_offline_and_is_periodic():
    """The harmonic-plus-noise decoder: streaming (uneven code chunks) equals offline, causal, and its
    sines sit on multiples of the F0 it predicts."""
    torch.manual_seed(2)
    tok = SpeechTokenizer(dataclasses.replace(CONFIGS["tiny"], harmonics=8)).eval()
    codes = torch.randint(0, tok.codebook_size, (2, 8, 7))
    audio = tok.decode(codes)
    dec, got, pos = tok.new_decoder_state(), [], 0
    for n in (1, 3, 2, 1):
        got.append(tok.decode_step(dec, codes[:, :, pos:pos + n]))
        pos += n
    torch.testing.assert_close(torch.cat(got, -1), audio, atol=1e-4, rtol=1e-4)
    other = codes.clone()
    other[:, :, 5:] = (other[:, :, 5:] + 1) % tok.codebook_size
    torch.testing.assert_close(tok.decode(other)[:, : 5 * TOKEN], audio[:, : 5 * TOKEN])
    # A constant F0 makes a periodic signal: the harmonic part alone, read back at that period.
    out: dict = {}
    with torch.no_grad():
        hn = tok._features(tok._embed(codes))
        tok.harm_head.weight.zero_()
        tok.harm_head.bias[0] = 0.0  # sigmoid 0.5: F0 = sqrt(f0_min * f0_max)
        wave = tok._harmonic(hn, None, out)[0][0]
    f0 = float(out["f0_pred"][0, 0])
    assert abs(f0 - (tok.config.f0_min * tok.config.f0_max) ** 0.5) < 1e-3
    spectrum = torch.fft.rfft(wave[:TOKEN * 4]).abs()
    peak_hz = float(spectrum.argmax()) * tok.config.sample_rate / (TOKEN * 4)
    assert min(abs(peak_hz - k * f0) for k in range(1, 9)) < 10.0


def test_decoding_is_causal(tiny):
    """Changing token k never changes the samples before token k (no look-ahead in the decoder)."""
    codes = torch.randint(0, tiny.codebook_size, (1, 8, 6))
    other = codes.clone()
    other[:, :, 4:] = (other[:, :, 4:] + 1) % tiny.codebook_size
    a, b = tiny.decode(codes), tiny.decode(other)
    torch.testing.assert_close(a[:, : 4 * TOKEN], b[:, : 4 * TOKEN])
    assert not torch.allclose(a[:, 4 * TOKEN:], b[:, 4 * TOKEN:])


def test_bad_inputs_raise_clear_errors(tiny):
    with pytest.raises(ValueError, match="16000 Hz"):
        tiny.encode(torch.zeros(1, TOKEN), sample_rate=16000)
    with pytest.raises(ValueError, match="empty audio"):
        tiny.encode(torch.zeros(1, 0))
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        tiny.encode(torch.zeros(TOKEN))
    with pytest.raises(ValueError, match="out of range"):
        tiny.decode(torch.full((1, 8, 2), tiny.codebook_size))
    with pytest.raises(ValueError, match="out of range"):
        tiny.decode(torch.full((1, 8, 2), -1))
    with pytest.raises(ValueError, match=r"\(B, 8, T\)"):
        tiny.decode(torch.zeros(1, 7, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integers"):
        tiny.decode(torch.zeros(1, 8, 2))


# -- losses -----------------------------------------------------------------------------------------


def test_soft_f0_follows_yin_on_a_glide():
    sr = 24000
    t = np.arange(sr) / sr
    f = 120 + 80 * t  # 120 -> 200 Hz
    x = (0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr) + 0.1 * np.sin(4 * np.pi * np.cumsum(f) / sr)).astype(np.float32)
    f0 = yin_f0(x)
    soft, periodicity = soft_f0(torch.from_numpy(x)[None])
    assert f0.shape == (50,) and soft.shape == (1, 50)
    mid = slice(5, 45)
    assert np.all(np.abs(np.log2(soft[0, mid].numpy() / f0[mid])) < 1 / 24)
    assert voiced_mask(x, f0)[mid].all() and (periodicity[0, mid] > 0.8).all()
    ref = torch.from_numpy(x)[None]
    same = pitch_loss(ref, ref, torch.from_numpy(f0)[None], torch.ones(1, 50, dtype=torch.bool))
    octave_down = pitch_loss(torch.from_numpy(np.sin(np.pi * np.cumsum(f) / sr).astype(np.float32))[None], ref,
                             torch.from_numpy(f0)[None], torch.ones(1, 50, dtype=torch.bool))
    assert float(same) < 1e-3 < 0.5 < float(octave_down)


def test_phoneme_teacher_targets(corpus):
    from anima.talker.data.manifest import read_manifest, read_phonemes

    utts, inventory = read_manifest(corpus, "train"), read_phonemes(corpus)
    teacher = PhonemeTeacher(inventory)
    targets = teacher.targets(utts[:2], [0, 10_000], 20)
    assert targets.shape == (2, 20) and targets[0].max() > 0 and (targets[1] == 0).all()  # past the end: silence
    logits = torch.nn.functional.one_hot(targets, len(inventory)).float() * 20
    loss, acc = semantic_loss(logits, targets, "classes")
    assert acc == 1.0 and float(loss) < 1e-3


# -- training -------------------------------------------------------------------------------------


def _args(corpus: Path, out: Path, steps: int, **kw) -> argparse.Namespace:
    from anima.talker.training import train_tokenizer

    parser = argparse.ArgumentParser()
    train_tokenizer.add_arguments(parser)
    argv = ["--corpus", str(corpus), "--out", str(out), "--config", "tiny", "--steps", str(steps), "--batch", "4",
            "--lr", "3e-3", "--warmup", "2", "--quiet", "--save-every", "5", "--val-every", "5", "--set", "min_seconds=0.5",
            "--set", "max_seconds=0.6"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


def _losses(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_reduces_the_loss_resumes_and_loads(corpus, tmp_path):
    from anima.talker.training import train_tokenizer

    out = tmp_path / "run"
    train_tokenizer.run(_args(corpus, out, 20))
    rows = _losses(out)
    assert len(rows) == 20 and {"mel", "pitch", "commitment", "codebook", "semantic", "val_mel"} <= set(rows[-1])
    first, last = np.mean([r["mel"] for r in rows[:5]]), np.mean([r["mel"] for r in rows[-5:]])
    assert last < 0.9 * first
    assert (out / "f0_cache.npz").is_file()
    # resume: continues from step 20 to 25, metrics continue
    train_tokenizer.run(_args(corpus, out, 25))
    rows = _losses(out)
    assert [r["step"] for r in rows] == list(range(1, 26))
    assert json.loads((out / "config.json").read_text())["step"] == 25
    # from_pretrained: the trained tokenizer, shared per process
    tok = SpeechTokenizer.from_pretrained(out)
    assert tok is SpeechTokenizer.from_pretrained(out) and tok.config.teacher_dim > 0
    codes = tok.encode(torch.randn(1, 3 * TOKEN) * 0.1)
    assert codes.shape == (1, 8, 3) and tok.decode(codes).shape == (1, 3 * TOKEN)


def test_gan_and_ablation_steps_run(corpus, tmp_path):
    from anima.talker.training import train_tokenizer

    out = tmp_path / "gan"
    train_tokenizer.run(_args(corpus, out, 3, gan_start=2, no_semantic=True))
    rows = _losses(out)
    assert "disc" not in rows[0] and {"disc", "adv", "fm"} <= set(rows[2]) and "semantic" not in rows[2]
    # a harmonic branch added to a trained tokenizer: the decoder learns it, every code stays the same
    harm = tmp_path / "harm"
    train_tokenizer.run(_args(corpus, harm, 3, init=out, freeze_encoder=True, no_semantic=True, set="model.harmonics=4"))
    assert {"f0", "voicing"} <= set(_losses(harm)[-1])
    wav = torch.randn(1, 3 * TOKEN) * 0.1
    assert torch.equal(SpeechTokenizer.from_pretrained(harm).encode(wav), SpeechTokenizer.from_pretrained(out).encode(wav))
    tok = SpeechTokenizer.from_pretrained(out)
    assert not tok.config.semantic and tok.encode(torch.zeros(1, TOKEN)).shape == (1, 8, 1)


def test_a_grown_phoneme_inventory_keeps_the_phoneme_head(corpus, tmp_path):
    """The corpus gains a phoneme after a run was trained: resuming it (or starting from it) keeps its
    phoneme head as it was instead of failing on the head's new size."""
    import shutil

    from anima.talker.training import train_tokenizer

    grown = tmp_path / "corpus"
    shutil.copytree(corpus, grown)
    out = tmp_path / "run"
    train_tokenizer.run(_args(grown, out, 2))
    head = SpeechTokenizer.from_pretrained(out).semantic_head.weight.clone()
    inventory = json.loads((grown / "phonemes.json").read_text())
    (grown / "phonemes.json").write_text(json.dumps([SILENCE, *sorted(inventory[1:] + ["A~"])]))  # ids move
    train_tokenizer.run(_args(grown, out, 4, freeze_encoder=True, init=out))  # resumed
    train_tokenizer.run(_args(grown, tmp_path / "next", 2, freeze_encoder=True, init=out))  # a new run from it
    for run in (out, tmp_path / "next"):
        tok = load_tokenizer(run)
        assert tok.semantic_head.weight.shape == head.shape
        assert torch.equal(tok.semantic_head.weight, head)  # not trained: its class ids no longer match the corpus
        assert "semantic" not in _losses(run)[-1]


def test_bad_checkpoints_raise(tmp_path, tiny):
    with pytest.raises(CheckpointError, match="no config.json"):
        SpeechTokenizer.from_pretrained(tmp_path / "missing")
    d = tmp_path / "ckpt"
    save_checkpoint(d, tiny, {"tokenizer": dataclasses.asdict(tiny.config)})  # a bare tokenizer checkpoint
    loaded = SpeechTokenizer.from_pretrained(d)
    codes = torch.randint(0, tiny.codebook_size, (1, 8, 2))
    torch.testing.assert_close(loaded.decode(codes), tiny.decode(codes))
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_tokenizer(d)  # (from_pretrained would return the cached copy)
    small = tmp_path / "mismatch"
    save_checkpoint(small, tiny, {"tokenizer": dataclasses.asdict(CONFIGS["small"])})
    with pytest.raises(CheckpointError, match="do not match"):
        SpeechTokenizer.from_pretrained(small)
    (tmp_path / "notok").mkdir()
    (tmp_path / "notok" / "config.json").write_text(json.dumps({"config": {"n_layer": 2}}))
    with pytest.raises(CheckpointError, match="no speech tokenizer config"):
        SpeechTokenizer.from_pretrained(tmp_path / "notok")


def test_freeze_encoder_keeps_every_code_and_trains_the_decoder(corpus, tmp_path):
    from anima.talker.model.tokenizer import load_tokenizer
    from anima.talker.training import train_tokenizer

    train_tokenizer.run(_args(corpus, tmp_path / "base", 4))
    train_tokenizer.run(_args(corpus, tmp_path / "tuned", 4, init=tmp_path / "base", freeze_encoder=True, gan_start=2))
    base, tuned = load_tokenizer(tmp_path / "base"), load_tokenizer(tmp_path / "tuned")
    assert base.code_digest() == tuned.code_digest()
    wav = torch.randn(1, 4 * TOKEN) * 0.1
    assert torch.equal(base.encode(wav), tuned.encode(wav))
    assert not torch.equal(base.head.weight, tuned.head.weight)  # the decoder did learn
    with pytest.raises(ValueError, match="needs --init"):
        train_tokenizer.run(_args(corpus, tmp_path / "x", 1, freeze_encoder=True))
