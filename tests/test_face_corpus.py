"""Face corpora: the synthetic dialogue builder, the real-data importer, and a tiny end-to-end run
of the training commands (quantiser, stage 1, stage 2, one-stage; resume; export; experiment)."""

from __future__ import annotations

import json
import logging
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from anima.face import motion as motion_space
from anima.face import params
from anima.face.data.corpus import DEFAULT_NOVEL, build_corpus, load_dialogue, load_tracks, read_manifest
from anima.face.data.importer import FaceImportError, face_from_tracking, import_corpus

pytestmark = pytest.mark.integration


def espeak_available() -> bool:
    from anima.talker.espeak import EspeakTTS

    return EspeakTTS.is_available()


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    if not DEFAULT_NOVEL.is_dir():
        pytest.skip(f"no novel text at {DEFAULT_NOVEL}")
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    out = tmp_path_factory.mktemp("face") / "corpus"
    build_corpus(out, minutes=1.6, seed=3, dialogue_s=(18.0, 24.0), splits={"test": 0.2, "val": 0.2, "train": 0.6},
                 progress=False)
    return out


def test_synthetic_corpus_layout_and_content(tiny_corpus):
    manifest = read_manifest(tiny_corpus)
    assert all(manifest["splits"][s] for s in ("train", "val", "test"))
    ident = manifest["splits"]["train"][0]
    d = load_dialogue(tiny_corpus / "train" / f"{ident}.npz")
    T = d["motion"].shape[1]
    assert d["audio"].shape == (2, T * 960) and d["audio"].dtype == np.int16
    assert d["motion"].shape == (2, T, 112) and d["features"].shape == (2, T, 80)
    params.check_ranges(d["motion"])
    for k in range(2):
        speaking = d["speaking"][k]
        assert 0.05 < speaking.mean() < 0.9
        # the own track is loud while speaking and the jaw moves then, not while listening
        assert d["energy_db"][k][speaking].mean() > d["energy_db"][k][~speaking].mean() + 20
        jaw = d["motion"][k][:, 100]
        assert jaw[speaking].std() > 3 * jaw[~speaking].std()
        assert d["motion"][k][~speaking][:, 103:106].std(0).max() > 0.003  # listening is alive
    styles = d["meta"]["speakers"]
    assert styles[0]["voice"] != styles[1]["voice"] and any(t["text"] for t in d["meta"]["turns"])
    tracks = load_tracks(tiny_corpus, "train")
    assert len(tracks) == 2 * len(manifest["splits"]["train"])
    np.testing.assert_array_equal(tracks[0].other, tracks[1].own)  # the tracks swapped


def test_build_is_seeded_and_resumes(tiny_corpus, tmp_path):
    """The same seed gives the same scripts, voices and styles. (espeak-ng itself is not bit-exact
    from one call to the next: samples and event times can differ by a millisecond.)"""
    kw = {"minutes": 1.6, "seed": 3, "dialogue_s": (18.0, 24.0), "splits": {"test": 0.2, "val": 0.2, "train": 0.6}}
    again = build_corpus(tmp_path / "again", progress=False, **kw)
    assert read_manifest(again)["splits"] == read_manifest(tiny_corpus)["splits"]
    a = read_manifest(tiny_corpus)["splits"]["val"][0]
    first, second = load_dialogue(tiny_corpus / "val" / f"{a}.npz"), load_dialogue(again / "val" / f"{a}.npz")
    assert first["meta"]["speakers"] == second["meta"]["speakers"]
    assert [t["text"] for t in first["meta"]["turns"]] == [t["text"] for t in second["meta"]["turns"]]
    assert abs(first["motion"].shape[1] - second["motion"].shape[1]) <= 2
    stamp = (again / "val" / f"{a}.npz").stat().st_mtime_ns
    build_corpus(again, progress=False, **kw)  # everything is there: nothing is rebuilt
    assert (again / "val" / f"{a}.npz").stat().st_mtime_ns == stamp


# -- importer ---------------------------------------------------------------------------------------


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> None:
    data = np.repeat(samples[:, None], channels, axis=1) if channels > 1 else samples[:, None]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(data, -1, 1) * 32767).astype(np.int16).tobytes())


def fake_tracking(T: int, fps: float, rng, flame: bool = False) -> dict:
    t = np.arange(T) / fps
    out = {"fps": np.array(fps), "jaw_pose": np.stack([0.15 + 0.1 * np.sin(8 * t), 0 * t, 0 * t], 1),
           "global_pose": 0.05 * np.stack([np.sin(t), np.cos(0.7 * t), 0 * t], 1), "eye_pose": 0.1 * rng.standard_normal((T, 6))}
    if flame:
        out["expression"] = rng.standard_normal((T, 10))
    else:
        out["arkit"] = rng.uniform(0, 0.5, (T, 52))
    return out


def test_importer_layout_rates_and_errors(tmp_path, caplog):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for i in range(3):
        s = src / f"session{i}"
        s.mkdir(parents=True)
        np.savez(s / "a.npz", **fake_tracking(90, 30.0, rng))  # 3 s at 30 fps
        np.savez(s / "b.npz", **fake_tracking(75, 25.0, rng))  # 3 s at 25 fps
        tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(int(2.5 * 16000)) / 16000)
        write_wav(s / "a.wav", tone.astype(np.float32), 16000, channels=2)  # 16 kHz stereo, shorter
        write_wav(s / "b.wav", np.zeros(3 * 44100, np.float32), 44100)
    solo = src / "solo"  # one person, no audio at all: stage-1 data
    solo.mkdir()
    np.savez(solo / "a.npz", **fake_tracking(100, 25.0, rng))
    with caplog.at_level(logging.WARNING):
        manifest = import_corpus(src, tmp_path / "out", test_fraction=0.25, val_fraction=0.25)
    assert sum(len(v) for v in manifest["splits"].values()) == 4
    assert any("padding" in r.message for r in caplog.records)  # the short wav was noticed
    tracks = [t for split in ("train", "val", "test") for t in load_tracks(tmp_path / "out", split)]
    assert len(tracks) == 7
    for t in tracks:
        params.check_ranges(motion_space.from_motion(t.motion))
        assert t.motion.shape[0] == t.own.shape[0] == t.other.shape[0] == t.speaking.shape[0]
    solo_track = [t for t in tracks if t.ident.startswith("solo")][0]
    assert not solo_track.has_audio and not solo_track.speaking.any()
    talking = [t for t in tracks if t.ident.endswith(":0") and t.has_audio]
    assert talking and all(t.speaking[:50].mean() > 0.8 for t in talking)


def test_importer_flame_expressions_need_a_map(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "a.npz"
    np.savez(path, **fake_tracking(50, 25.0, rng, flame=True))
    with pytest.raises(FaceImportError, match="expression-map"):
        face_from_tracking(path)
    face = face_from_tracking(path, np.full((10, 52), 0.01))
    assert face.shape == (50, 112)
    params.check_ranges(face)
    with pytest.raises(FaceImportError, match="does not fit"):
        face_from_tracking(path, np.zeros((7, 52)))
    np.savez(path, arkit=np.zeros((50, 52)), jaw_pose=np.zeros((49, 3)))
    with pytest.raises(FaceImportError, match="jaw must be"):
        face_from_tracking(path)
    with pytest.raises(FaceImportError, match="no session"):
        import_corpus(tmp_path, tmp_path / "x")


# -- the training commands end to end, tiny --------------------------------------------------------


TINY = ["n_layer=1", "n_embd=32", "n_head=2"]


def test_training_commands_resume_export_and_experiment(tiny_corpus, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_export_and_score(tiny_corpus, tmp_path / "face")
    finally:
        torch.set_num_threads(before)


def _train_export_and_score(tiny_corpus: Path, out: Path) -> None:
    from anima.checkpoint import read_config
    from anima.face.training.experiment import markdown_tables, run_experiment
    from anima.face.training.export import export_weights
    from anima.face.training.train import train_onestage, train_quantizer, train_stage1, train_stage2
    from anima.face.unils import UniLSFace

    report = train_quantizer(tiny_corpus, out / "q", steps=20, batch=4, overrides=["hidden=32"], progress=False)
    assert report["frames"] > 0 and np.isfinite(report["jaw_open_rmse_deg"])
    train_stage1(tiny_corpus, out / "q", out / "s1", steps=6, batch=2, overrides=TINY, progress=False)
    train_stage1(tiny_corpus, out / "q", out / "s1", steps=10, batch=2, overrides=TINY, progress=False)  # resumes
    meta = read_config(out / "s1")
    assert meta["step"] == 10 and meta["config"]["stage"] == "stage1"
    assert [h["step"] for h in meta["extra"]["history"]] == [6, 10]  # the second run continued the first
    train_stage2(tiny_corpus, out / "s1", out / "s2", steps=4, batch=2, lora_rank=2, progress=False)
    train_onestage(tiny_corpus, out / "q", out / "one", steps=4, batch=2, overrides=TINY, progress=False)
    assert read_config(out / "s2")["config"]["generator"]["lora_rank"] == 2
    with pytest.raises(ValueError, match="audio-free"):
        export_weights(out / "s1", out / "bad", tiny_corpus)
    shipped = export_weights(out / "s2", out / "export", tiny_corpus, n_styles=2)
    assert sorted(p.name for p in shipped.iterdir()) == ["config.json", "model.safetensors", "styles.safetensors"]
    face = UniLSFace.load(shipped, seed=0)
    frames = np.stack([face.step(i * 0.04, np.zeros(960), np.zeros(960)) for i in range(30)])
    params.check_ranges(frames)
    result = run_experiment(tiny_corpus, {"two-stage": out / "s2", "one-stage": out / "one"}, seeds=(0,), limit=1)
    assert set(result["results"]) == {"ground-truth", "static", "two-stage", "one-stage"}
    assert result["results"]["ground-truth"]["listen_std_ratio_head"] == pytest.approx(1.0)
    table = markdown_tables(result)
    assert "| two-stage |" in table and "LVE-p" in table
    json.dumps(result)
