"""The dialogue corpus: alignment of every timeline, the loader's windows, bad conversations, idempotence, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from anima.e2e.data import dialogues
from anima.e2e.data.dialogues import DialogueScript, UserTurn, make_script, render_dialogue
from anima.e2e.data.format import FPS, SAMPLES_PER_FRAME, CorpusError, load_window, open_corpus, read_meta
from anima.e2e.data.stats import corpus_stats, histogram_png

torch.set_num_threads(1)


def short_script(index: int, seed: int = 0) -> DialogueScript:
    """Two user turns to Ned Land: a greeting, then a ramble the agent cuts off 2.5 s in (scripted).

    The ramble is one unpunctuated sentence, so the cut lands mid-speech (a cut in a pause between
    sentences lets the user's next words barge in on the cut-in reply; see docs/dialogues.md)."""
    return DialogueScript(f"c{index:06d}", seed * 1_000_000 + index, "ned", 12, "en-us+m3", "en-gb+f2", "Anna", [
        UserTurn("greeting", "Hello there!", 0.0),
        UserTurn("monologue", "Well let me tell you how I came here because I left Paris in the spring with two trunks", 0.3,
                 agent_interrupts_s=2.5),
    ])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A one-conversation corpus made by the generator (short script)."""
    root = tmp_path_factory.mktemp("dialogues")
    mp = pytest.MonkeyPatch()
    mp.setattr(dialogues, "make_script", short_script)
    report = dialogues.generate(1, root, workers=1, progress=False)
    mp.undo()
    assert report["done"] == 1 and not report["failed"], report
    return root


def _voiced_onsets(audio: np.ndarray) -> np.ndarray:
    """10 ms windows whose peak passes 0.01 (speech, not the room noise floor)."""
    win = SAMPLE_RATE_10MS = 240
    n = audio.size // SAMPLE_RATE_10MS
    return np.abs(audio[: n * win]).reshape(n, win).max(axis=1) > 0.01


def test_timelines_agree_within_one_frame(corpus):
    conv = corpus / "c000000"
    meta = read_meta(conv)
    w = load_window(conv, 0.0, meta["duration_s"])
    frames = meta["frames"]
    assert w["face"].shape == (frames, 112) and w["joints"].shape == (frames, 22, 3)
    assert w["agent_audio"].shape == w["user_audio"].shape == (frames * SAMPLES_PER_FRAME,)
    assert abs(meta["body_frames"] - frames * 20 / 25) <= 1
    agent, user = _voiced_onsets(w["agent_audio"]), _voiced_onsets(w["user_audio"])
    frame_s = 1 / FPS
    events = meta["events"]
    starts = [e for e in events if e["type"] == "agent_start"]
    stops = [e for e in events if e["type"] == "agent_stop"]
    assert len(starts) == len(stops) >= 2
    for start, stop in zip(starts, stops, strict=True):  # the agent track speaks exactly between its events
        loud = np.flatnonzero(agent[int(start["t"] * 100) : int(stop["t"] * 100) + 4])
        assert loud.size
        assert loud[0] / 100 <= frame_s + 0.01  # speech within a frame of agent_start
        assert (int(stop["t"] * 100) + 4) - (int(start["t"] * 100) + loud[-1]) >= 0
        assert start["t"] + (loud[-1] + 1) / 100 <= stop["t"] + frame_s  # silent within a frame of agent_stop
    for row in meta["transcript"]:
        if row["speaker"] == "user":  # the user track speaks from its start event, and never after its stop event
            a, b = int(row["start"] * 100), int(row["end"] * 100)
            assert np.flatnonzero(user[a : a + 10]).size and np.flatnonzero(user[a:b])[0] / 100 <= frame_s
            assert not user[b + 4 : b + 20].any()
    # the agent cut the rambling user off: the event, the shortened user turn, the agent speaking over it
    cut = [e for e in events if e["type"] == "agent_cut_in"]
    assert len(cut) == 1 and cut[0]["reason"] == "scripted"
    ramble = next(r for r in meta["transcript"] if r["speaker"] == "user" and r["kind"] == "monologue")
    assert ramble["cut_by_agent"] and ramble["end"] - ramble["start"] < 4.0
    reply = next(e for e in starts if e["t"] > ramble["start"])
    assert reply["t"] < ramble["end"]  # overlap: the agent started before the user stopped
    # face: the jaw moves while the agent speaks and is shut a few frames after it stops
    jaw = w["face"][:, 100]
    speaking = w["agent_speaking"]
    assert (jaw[speaking] > 0.05).mean() > 0.3
    after = np.zeros(frames, bool)
    for stop in stops:
        k = int(round(stop["t"] * FPS))
        after[k + 3 : k + 20] = True
    after &= ~speaking
    assert after.any() and (jaw[after] > 0.05).mean() < 0.1
    # body: HumanML3D-263 velocities are the 20 fps resampling of the stored 25 fps joints
    from anima.body.skeleton import resample_joints

    j20 = resample_joints(meta_joints := np.load(conv / "motion.npz")["joints"].astype(np.float64), 25, 20)
    assert meta_joints.shape[0] == frames and j20.shape[0] == meta["body_frames"]
    body = np.load(conv / "motion.npz")["body263"]
    vel = np.linalg.norm(body[:-1, 193:259].reshape(-1, 22, 3), axis=-1)
    np.testing.assert_allclose(vel, np.linalg.norm(np.diff(j20, axis=0), axis=-1), atol=1e-4)


def test_window_any_length_and_across_the_end(corpus):
    conv = corpus / "c000000"
    meta = read_meta(conv)
    full = load_window(conv, 0.0, meta["duration_s"])
    for start, dur in ((0.0, 0.04), (1.3, 2.7), (meta["duration_s"] - 1.0, 3.0), (-0.5, 1.0)):
        w = load_window(conv, start, dur, as_torch=True)
        f0, nf = int(round(start * 25)), int(round(dur * 25))
        assert w["face"].shape == (nf, 112) and w["agent_audio"].shape == (nf * SAMPLES_PER_FRAME,)
        assert w["body263"].shape == (int(round(dur * 20)), 263)
        valid = w["valid"].numpy()
        k = np.flatnonzero(valid)
        assert k.size == min(f0 + nf, meta["frames"]) - max(f0, 0)
        np.testing.assert_array_equal(w["face"].numpy()[k], full["face"][f0 + k])
        audio = w["user_audio"].numpy().reshape(nf, SAMPLES_PER_FRAME)
        np.testing.assert_array_equal(audio[k].ravel(), full["user_audio"].reshape(-1, SAMPLES_PER_FRAME)[f0 + k].ravel())
        assert not audio[~valid].any() and not w["face"].numpy()[~valid].any()
        assert (w["prompt_id"].numpy()[~valid] == -1).all() and (w["prompt_id"].numpy()[valid] >= 0).all()
    with pytest.raises(ValueError, match="positive duration"):
        load_window(conv, 0.0, 0.0)


def test_corrupt_and_truncated_conversations_are_reported_and_skipped(corpus, tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    for name in ("c000000", "c000001", "c000002", "c000003"):
        shutil.copytree(corpus / "c000000", root / name)
    flac = root / "c000001" / "user.flac"
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])  # truncated audio
    (root / "c000002" / "meta.json").write_text("{not json")
    npz = root / "c000003" / "motion.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    (root / "c000004.tmp").mkdir()  # a conversation the generator was writing when it stopped
    corpus_ = open_corpus(root)
    assert [c["dir"] for c in corpus_.conversations] == [str(root / "c000000")]
    reasons = dict(corpus_.skipped)
    assert "user.flac" in reasons[str(root / "c000001")]
    assert "not valid JSON" in reasons[str(root / "c000002")]
    assert "motion.npz" in reasons[str(root / "c000003")]
    assert "unfinished" in reasons[str(root / "c000004.tmp")]
    # a file that breaks after the corpus was opened: the window is None, reported, no exception
    corpus_.conversations.append(dict(corpus_.conversations[0], dir=str(root / "c000001")))
    assert corpus_.window(1, 0.0, 2.0) is None and corpus_.skipped[-1][0] == str(root / "c000001")
    with pytest.raises(CorpusError, match="c000002"):
        load_window(root / "c000002", 0.0, 1.0)
    stats = corpus_stats(root)  # statistics skip them too
    assert stats["conversations"] == 1 and len(stats["skipped"]) == 4


def test_stats_and_histogram(corpus, tmp_path):
    stats = corpus_stats(corpus)
    assert stats["conversations"] == 1 and stats["counts"]["agent_cut_ins"] == 1
    assert stats["fto"]["user_to_agent"]["n"] >= 1 and stats["fto"]["agent_to_user"]["n"] >= 1
    assert stats["fto"]["all"]["overlap_share"] > 0  # the cut-in overlaps the user
    png = histogram_png(stats, tmp_path / "h.png")
    assert png.stat().st_size > 1000


def test_scripts_are_seeded_and_varied():
    assert make_script(5, 0) == make_script(5, 0)
    assert make_script(5, 0) != make_script(5, 1)
    scripts = [make_script(i, 0) for i in range(60)]
    kinds = {t.kind for s in scripts for t in s.turns}
    assert kinds >= {"greeting", "question", "everyday", "monologue", "barge_in", "backchannel", "idle"}
    assert {s.character for s in scripts} == {"nemo", "aronnax", "conseil", "ned"}
    assert len({s.user_voice for s in scripts}) >= 5 and len({s.story_time for s in scripts}) >= 10
    assert any(t.agent_interrupts_s for s in scripts for t in s.turns)
    for s in scripts:
        assert s.turns[-1].kind != "backchannel"


def test_regenerating_is_idempotent_and_resume_skips_finished(corpus, tmp_path, monkeypatch):
    # The same script gives the same conversation. Not the same bytes: espeak-ng's output differs
    # slightly from call to call (same length, different samples), so the voice detector's times
    # move by a frame or so; the script, the turns, the texts and the event sequence do not.
    again = tmp_path / "c000000"
    render_dialogue(short_script(0), again)
    first = json.loads((corpus / "c000000" / "meta.json").read_text())
    second = json.loads((again / "meta.json").read_text())
    assert second["script"] == first["script"] and second["script_digest"] == first["script_digest"]
    assert [r["text"] for r in second["transcript"]] == [r["text"] for r in first["transcript"]]
    def labels(meta):  # ground-truth events (not the detector's), in a stable order
        return sorted(((e["type"], e.get("turn", -1), e.get("agent_turn", -1), e.get("reason", "")), e["t"])
                      for e in meta["events"] if not e["type"].startswith("vad_"))

    assert [k for k, _ in labels(second)] == [k for k, _ in labels(first)]
    np.testing.assert_allclose([t for _, t in labels(second)], [t for _, t in labels(first)], atol=0.1)
    assert abs(second["frames"] - first["frames"]) <= 2
    # resume: the finished conversation is skipped, the half-written one redone
    monkeypatch.setattr(dialogues, "make_script", short_script)
    root = tmp_path / "corpus"
    shutil.copytree(corpus, root)
    stamp = (root / "c000000" / "meta.json").stat().st_mtime_ns
    (root / "c000001.tmp").mkdir()
    (root / "c000001.tmp" / "agent.flac").write_bytes(b"half")
    report = dialogues.generate(2, root, workers=1, progress=False)
    assert report["skipped"] == 1 and report["done"] == 1
    assert (root / "c000000" / "meta.json").stat().st_mtime_ns == stamp
    assert not (root / "c000001.tmp").exists() and read_meta(root / "c000001")["conv_id"] == "c000001"
    manifest = json.loads((root / "manifest.json").read_text())
    assert [r["dir"] for r in manifest["conversations"]] == ["c000000", "c000001"]
