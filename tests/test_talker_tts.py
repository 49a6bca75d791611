"""Kodama TTS language model: delay pattern, causality, KV cache, streaming, cancellation, training, checkpoints, bad input."""

from __future__ import annotations

import argparse
import json
import threading

import numpy as np
import pytest
import torch

from anima.checkpoint import CheckpointError, save_checkpoint
from anima.core.plan import EMOTIONS
from anima.talker.model.delay import apply_delay, delays_for, undo_delay
from anima.talker.model.kodama_tts import IGNORE, KodamaTTS, KodamaTTSConfig, Sampling, load_kodama_tts, make_sequence

pytestmark = pytest.mark.unit

SYMBOLS = ("_", "a", "b", "k", "s", "t", "o", "i")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> KodamaTTSConfig:
    return KodamaTTSConfig.preset("tiny", symbols=SYMBOLS, **overrides)


def batch_of(config, text, codes, prompt_text=(), prompt_codes=None, speaker=None, emotion=None):
    seq = make_sequence(config, text, codes, prompt_text, prompt_codes)
    b = {k: v[None] for k, v in seq.items()}
    b["speaker"] = torch.zeros(1, config.d_speaker) if speaker is None else speaker[None]
    b["emotion"] = torch.zeros(1, config.d_emotion) if emotion is None else emotion[None]
    return b


# ---------------------------------------------------------------------------------------------
# Delay pattern


@pytest.mark.parametrize("pattern", ["musicgen", "moshi", "none"])
def test_delay_round_trip_and_reference(pattern):
    delays = delays_for(pattern, 8, 2)
    codes = torch.randint(0, 1024, (3, 8, 11))
    steps = apply_delay(codes, delays, pad=1024)
    assert steps.shape == (3, 8, 11 + max(delays))
    for q, d in enumerate(delays):  # slow reference: step s of codebook q holds frame s - d, else pad
        for s in range(steps.shape[-1]):
            expected = codes[:, q, s - d] if 0 <= s - d < 11 else torch.full((3,), 1024)
            assert torch.equal(steps[:, q, s], expected)
    assert torch.equal(undo_delay(steps, delays), codes)


def test_delay_patterns_and_errors():
    assert delays_for("musicgen") == (0, 1, 2, 3, 4, 5, 6, 7)
    assert delays_for("moshi") == (0, 0, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="unknown delay pattern"):
        delays_for("zigzag")
    with pytest.raises(ValueError, match="one per codebook"):
        apply_delay(torch.zeros(8, 3, dtype=torch.long), (0, 1), 1024)
    with pytest.raises(ValueError, match="codebook 0 at delay 0"):
        apply_delay(torch.zeros(2, 3, dtype=torch.long), (1, 0), 1024)


def test_sequence_targets_cover_target_audio_only():
    config = tiny()
    codes, prompt = torch.randint(0, 1024, (8, 6)), torch.randint(0, 1024, (8, 4))
    seq = make_sequence(config, [1, 2, 3], codes, [4, 5], prompt)
    target = seq["target"]
    assert target.shape[0] == seq["text"].shape[0] + 2
    valid = target != IGNORE
    assert int(valid.sum()) == (6 + 1) * 8  # every target code and the EOA frame; no prompt code, no pad
    assert int((target == config.eoa).sum()) == 8
    assert not (target == config.pad).any()
    # the codes predicted, with the delay undone, are the target frames in order
    boa = 2 + 2 + 3  # speaker, emotion, 5 phonemes -> BOA at index 7
    steps = target[boa:boa + 4 + 6 + 1 + 7].T  # (K, S)
    frames = undo_delay(steps, config.delays)
    assert torch.equal(frames[:, 4:10], codes)
    assert torch.equal(frames[:, 10], torch.full((8,), config.eoa))


def test_frame_alignment_and_sequence_align():
    from anima.talker.training.tts_data import frame_alignment
    # "a _: _: b" at 0-0.1, 0.1-0.2, 0.2-0.3, 0.3-0.5: the repeated pause collapses to one symbol (index 1)
    phonemes = (("a", 0.0, 0.1), ("_:", 0.1, 0.2), ("_:", 0.2, 0.3), ("b", 0.3, 0.5))
    assert frame_alignment(phonemes, 7).tolist() == [0, 1, 1, 1, 2, 2, 2]  # centres 0.04 .. 0.52 s
    config = tiny()
    codes, prompt = torch.randint(0, 1024, (8, 6)), torch.randint(0, 1024, (8, 4))
    seq = make_sequence(config, [1, 2, 3], codes, [4, 5], prompt, text_align=[0, 0, 1, 1, 2, 2], prompt_align=[0, 0, 1, 1])
    align = seq["align"]
    assert align.shape == seq["target"].shape[:1]
    boa = 2 + 2 + 3
    assert (align[:boa] == -1).all()  # conditioning and phoneme positions are not audio queries
    spoken = align[boa:boa + 4 + 6 + 1].tolist()  # steps 0.. write frames 0..: prompt (4), target (6), EOA
    assert spoken == [2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 6]  # sequence positions of the phonemes (after the 2 conditions)
    assert all(a == -1 or 2 <= a < boa for a in align.tolist())
    with pytest.raises(ValueError, match="alignment"):
        make_sequence(config, [1, 2, 3], codes, text_align=[0, 1])


def test_guided_attention_learns_the_alignment():
    """The guided term pulls the alignment head onto the spoken phoneme; without it the NLL alone is trained."""
    torch.manual_seed(0)
    config = tiny(codebook_size=32)
    model = KodamaTTS(config)
    from anima.talker.training.tts_data import collate
    text, codes = [1, 2, 3, 4, 5], torch.randint(0, 32, (8, 10))
    seq = make_sequence(config, text, codes, text_align=[0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    batch = collate([seq], torch.zeros(1, config.d_speaker), torch.zeros(1, config.d_emotion))
    assert "align" in batch
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    first = None
    for _ in range(60):
        loss, stats = model.loss(batch, align_weight=1.0)
        first = first if first is not None else stats["align"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert stats["align"] < 0.3 * first, (first, stats["align"])
    assert "align" not in model.loss(batch)[1]  # off by default: L_TTS alone
    with pytest.raises(ValueError, match="align_layers"):
        KodamaTTS(tiny(align_layers=(5,)))


# ---------------------------------------------------------------------------------------------
# Forward: causality and the KV cache


def _forward(model, b, state=None):
    return model(b["speaker"], b["emotion"], b["text"], b["audio"], b["is_audio"], state)


def test_causality():
    torch.manual_seed(0)
    config = tiny()
    model = KodamaTTS(config).eval()
    b = batch_of(config, [1, 2, 3, 4], torch.randint(0, 1024, (8, 9)))
    with torch.no_grad():
        ref = _forward(model, b)
        cut = 9  # change one audio step after position cut (in the 2 + L sequence)
        b2 = {k: v.clone() for k, v in b.items()}
        b2["audio"][0, cut - 2 + 3] = torch.randint(0, 1024, (8,))
        out = _forward(model, b2)
    assert torch.equal(ref[:, :cut + 1], out[:, :cut + 1])  # earlier positions are untouched
    assert not torch.allclose(ref[:, cut + 1:], out[:, cut + 1:])  # the change is seen afterwards


def test_kv_cache_matches_full_forward():
    torch.manual_seed(1)
    config = tiny(delay="moshi")
    model = KodamaTTS(config).eval()
    spk, emo = torch.randn(config.d_speaker), torch.eye(config.d_emotion)[2]
    b = batch_of(config, [1, 2, 3], torch.randint(0, 1024, (8, 7)), speaker=spk, emotion=emo)
    with torch.no_grad():
        full = _forward(model, b)
        state = model.new_state()
        n0 = 5  # prefill: conditioning + the first 5 positions, then a 3-position chunk, then one at a time
        parts = [model(b["speaker"], b["emotion"], b["text"][:, :n0], b["audio"][:, :n0], b["is_audio"][:, :n0], state)]
        parts.append(model(None, None, b["text"][:, n0:n0 + 3], b["audio"][:, n0:n0 + 3], b["is_audio"][:, n0:n0 + 3], state))
        for i in range(n0 + 3, b["text"].shape[1]):
            parts.append(model(None, None, b["text"][:, i:i + 1], b["audio"][:, i:i + 1], b["is_audio"][:, i:i + 1], state))
    inc = torch.cat(parts, dim=1)
    assert state.length == full.shape[1]
    torch.testing.assert_close(inc, full, rtol=1e-5, atol=1e-5)
    state.reset()
    assert state.length == 0


# ---------------------------------------------------------------------------------------------
# A tiny model that overfits a deterministic text -> codes mapping


def synthetic_set(codebook_size: int, n: int = 4, seed: int = 0):
    """Phoneme strings and their codes: each phoneme writes two frames that depend on it and its position."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        text = rng.integers(1, len(SYMBOLS), size=int(rng.integers(3, 6))).tolist()
        frames = [[(7 * p + 3 * q + 5 * j + k) % codebook_size for q in range(8)]
                  for j, p in enumerate(text) for k in range(2)]
        out.append((text, torch.tensor(frames).T.contiguous()))  # (8, 2 * len(text))
    return out


@pytest.fixture(scope="module")
def overfit():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = tiny(codebook_size=32)
    model = KodamaTTS(config)
    data = synthetic_set(config.codebook_size)
    from anima.talker.training.tts_data import collate
    seqs = [make_sequence(config, t, c) for t, c in data]  # alone, and with the previous one as voice prompt
    seqs += [make_sequence(config, t, c, *data[i - 1]) for i, (t, c) in enumerate(data)]
    batch = collate(seqs, torch.zeros(len(seqs), config.d_speaker), torch.zeros(len(seqs), config.d_emotion))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(160):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), data, losses


def test_training_reduces_loss_and_overfits(overfit):
    model, data, losses = overfit
    assert losses[-1] < 0.5 * losses[0]
    assert losses[-1] < 0.05, losses[-1]
    for text, codes in data:  # greedy generation writes exactly the codes and stops at EOA
        symbols = [SYMBOLS[i] for i in text]
        out = model.generate(symbols, speaker=torch.zeros(128), emotion=torch.zeros(len(EMOTIONS)),
                             sampling=Sampling(temperature=0.0), seed=0)
        assert torch.equal(out, codes)


def test_stream_yields_each_frame_as_soon_as_complete(overfit):
    model, data, _ = overfit
    text, codes = data[0]
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        seen = []
        for k, frame in enumerate(model.stream([SYMBOLS[i] for i in text], emotion=torch.zeros(len(EMOTIONS)),
                                               sampling=Sampling(temperature=0.0))):
            # frame k needs steps 0..k+7: the prefill predicts step 0, each later call one more step
            assert len(calls) == 1 + k + max(model.config.delays)
            seen.append(frame)
    finally:
        hook.remove()
    assert torch.equal(torch.stack(seen, dim=1), codes)  # in order, then stops at EOA
    assert len(calls) == 1 + codes.shape[1] + max(model.config.delays) - 1  # no step past the last frame


def test_max_frames_and_cancellation():
    torch.manual_seed(0)
    model = KodamaTTS(tiny()).eval()
    kwargs = dict(sampling=Sampling(temperature=1.0, top_k=(50,) * 8), seed=3)
    full = model.generate(["a", "b"], max_frames=20, **kwargs)
    assert full.shape == (8, 20)  # an untrained model does not stop by itself: the cap ends it
    again = model.generate(["a", "b"], max_frames=20, **kwargs)
    assert torch.equal(full, again)  # seeded
    cancel = threading.Event()
    got = []
    for frame in model.stream(["a", "b"], max_frames=20, cancel=cancel, **kwargs):
        got.append(frame)
        if len(got) == 3:
            cancel.set()  # e.g. barge-in: the next step never runs
    assert len(got) == 3
    assert torch.equal(torch.stack(got, dim=1), full[:, :3])


def test_voice_prompt_is_continued_not_repeated(overfit):
    model, data, _ = overfit
    (pt, pc), (t, c) = data[0], data[1]
    out = model.generate([SYMBOLS[i] for i in t], prompt_phonemes=[SYMBOLS[i] for i in pt], prompt_codes=pc,
                         sampling=Sampling(temperature=0.0), max_frames=30)
    assert torch.equal(out, c)  # the target's frames only: the prompt is context, not output


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_inputs_are_named():
    model = KodamaTTS(tiny(max_phonemes=10)).eval()
    with pytest.raises(ValueError, match="empty"):
        list(model.stream([]))
    with pytest.raises(ValueError, match="at most 10"):
        list(model.stream(["a"] * 11))
    with pytest.raises(ValueError, match=r"unknown phoneme symbol\(s\) \['Q', 'zz'\]"):
        list(model.stream(["a", "zz", "Q"]))
    with pytest.raises(TypeError, match="phonemize"):
        list(model.stream("hello"))
    with pytest.raises(ValueError, match=r"speaker vector: expected shape \(128,\), got \(64,\)"):
        list(model.stream(["a"], speaker=torch.zeros(64)))
    with pytest.raises(ValueError, match=r"emotion vector: expected shape \(9,\)"):
        list(model.stream(["a"], emotion=torch.zeros(4)))
    with pytest.raises(ValueError, match="unknown emotion 'giddy'"):
        list(model.stream(["a"], emotion="giddy"))
    with pytest.raises(ValueError, match="transcript"):
        list(model.stream(["a"], prompt_codes=torch.zeros(8, 3, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"prompt codes: expected \(8, frames\)"):
        list(model.stream(["a"], prompt_phonemes=["a"], prompt_codes=torch.zeros(4, 3, dtype=torch.long)))
    with pytest.raises(ValueError, match="top_k: one value or one per codebook"):
        list(model.stream(["a"], sampling=Sampling(top_k=(1, 2))))
    state = model.new_state()
    next(iter(model.stream(["a"], state=state, max_frames=2)))
    with pytest.raises(RuntimeError, match="state.reset"):
        list(model.stream(["a"], state=state))


# ---------------------------------------------------------------------------------------------
# Checkpoints


def test_checkpoint_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = KodamaTTS(tiny(delay="moshi")).eval()
    save_checkpoint(tmp_path / "ckpt", model, model.config_dict())
    loaded = KodamaTTS.from_pretrained(tmp_path / "ckpt")
    assert loaded is KodamaTTS.from_pretrained(tmp_path / "ckpt")  # cached
    assert loaded.config == model.config
    b = batch_of(model.config, [1, 2], torch.randint(0, 1024, (8, 4)))
    with torch.no_grad():
        torch.testing.assert_close(_forward(loaded, b), _forward(model, b))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_kodama_tts(tmp_path / "nothing")
    # corrupt weights
    bad = tmp_path / "corrupt"
    save_checkpoint(bad, model, model.config_dict())
    (bad / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="unreadable weights"):
        load_kodama_tts(bad)
    # weights of another size than the config says
    other = tmp_path / "mismatch"
    save_checkpoint(other, model, {**model.config_dict(), "model": {**model.config_dict()["model"], "d_model": 32}})
    with pytest.raises(CheckpointError, match="do not match"):
        load_kodama_tts(other)
    # another model's checkpoint
    foreign = tmp_path / "foreign"
    save_checkpoint(foreign, model, {"quantizer": {}})
    with pytest.raises(CheckpointError, match="not a Kodama TTS checkpoint"):
        load_kodama_tts(foreign)
    cfg = json.loads((foreign / "config.json").read_text())
    cfg["config"] = {"kind": "kodama_tts", "model": {"n_layers": 3}}
    (foreign / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not know"):
        load_kodama_tts(foreign)


# ---------------------------------------------------------------------------------------------
# Training data and the training script


def make_corpus(root, codebook_size=1024):
    from anima.talker.data.manifest import Utterance, append_utterances

    root.mkdir(parents=True, exist_ok=True)
    (root / "phonemes.json").write_text(json.dumps(list(SYMBOLS)))
    (root / "tokens").mkdir()
    (root / "speakers").mkdir()
    rng = np.random.default_rng(0)
    utts = []
    for i in range(12):
        voice, split = f"espeak:v{i % 2}", "val" if i >= 10 else "train"
        text = [SYMBOLS[j] for j in rng.integers(0, len(SYMBOLS), size=5)]
        phonemes = tuple((s, 0.1 * k, 0.1 * (k + 1)) for k, s in enumerate(["_", "_"] + text))
        utts.append(Utterance(f"u{i}", "text", voice, EMOTIONS[i % len(EMOTIONS)], split, i, 1.0, phonemes))
        if i != 3:  # one utterance without tokens: skipped
            np.save(root / "tokens" / f"u{i}.npy", rng.integers(0, codebook_size, size=(8, 6 + i)).astype(np.int16))
        if i % 2:
            np.save(root / "speakers" / f"u{i}.npy", rng.standard_normal(128).astype(np.float32))
    append_utterances(root, utts)
    return root


def test_tts_data_batches(tmp_path):
    from anima.talker.model.kodama_tts import normalize_phonemes
    from anima.talker.training.tts_data import TTSBatcher, load_items

    corpus = make_corpus(tmp_path / "corpus")
    config = tiny()
    items = load_items(corpus, "train", config)
    assert [it.id for it in items] == [f"u{i}" for i in range(10) if i != 3]
    assert normalize_phonemes(["_", "_", "a", "_:", "_:", "_", "b"]) == ["_", "a", "_:", "_", "b"]
    assert not items[0].speaker.any() and items[1].speaker.any()  # missing speaker vector = zeros
    batcher = TTSBatcher(items, config, prompt_p=1.0, speaker_drop_p=0.0, seed=0)
    b = batcher.sample(4)
    assert b["audio"].shape[:2] == b["text"].shape and b["target"].shape[1] == b["text"].shape[1] + 2
    assert b["speaker"].shape == (4, 128) and b["emotion"].shape == (4, len(EMOTIONS))
    # with a prompt, the sequence holds more audio than the target, but only target frames (+ EOA) are predicted
    seq, _ = batcher.example(0)
    n_audio, n_target = int(seq["is_audio"].sum()), int((seq["target"] != IGNORE).sum()) // 8
    assert n_target == items[0].codes.shape[1] + 1 and n_audio > n_target + max(config.delays)
    loss, stats = KodamaTTS(config).loss(b)
    assert torch.isfinite(loss) and set(stats) == {"loss", "semantic_nll", "acoustic_nll"}
    with pytest.raises(ValueError, match="tokenize step"):
        load_items(corpus, "test", config)


def test_train_script_runs_and_resumes(tmp_path):
    from anima.talker.training import train_tts

    corpus = make_corpus(tmp_path / "corpus")
    parser = argparse.ArgumentParser()
    train_tts.add_arguments(parser)
    out = tmp_path / "run"
    args = parser.parse_args(["--corpus", str(corpus), "--out", str(out), "--config", "tiny", "--steps", "3",
                              "--batch", "2", "--save-every", "2", "--val-every", "2", "--quiet",
                              "--set", "n_layer=1", "--set", "align_layers=0"])
    report = train_tts.run(args)
    assert report["step"] == 3 and report["config"]["n_layer"] == 1
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
    assert "val_loss" in json.loads(lines[-1])
    args.steps = 5
    assert train_tts.run(args)["step"] == 5  # resumed from step 3
    model = KodamaTTS.from_pretrained(out)
    assert model.config.symbols == SYMBOLS and model.config.n_layer == 1


def test_small_config_generation_speed_is_printed():
    """Per-frame and first-frame times of the small config on one thread (printed, not asserted: see -s)."""
    import time

    symbols = ("_",) + tuple(f"p{i}" for i in range(60))
    model = KodamaTTS(KodamaTTSConfig.preset("small", symbols=symbols)).eval()
    text = [symbols[1 + i % 60] for i in range(80)]  # a long sentence
    start, stamps = time.perf_counter(), []
    for _ in model.stream(text, max_frames=16, seed=0):
        stamps.append(time.perf_counter())
    assert len(stamps) == 16
    per_frame = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    print(f"\nkodama small (6 x 256, delay {model.config.delay}): first frame {1e3 * (stamps[0] - start):.0f} ms "
          f"after 80 phonemes, {1e3 * per_frame:.1f} ms per 80 ms frame (1 thread)")
