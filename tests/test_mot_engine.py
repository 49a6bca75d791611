"""The ``mot`` engine over tiny weights: speech released with its behaviour, face and body play it, commands, errors."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from anima.checkpoint import CheckpointError, save_checkpoint
from anima.core.frames import SpeechEvent
from anima.e2e.mot.engine import MoTAgent, command_for_prompt
from anima.e2e.mot.model import MixtureOfTransformers, MoTConfig, load_mot
from anima.talker.data.phonemize import phonemize
from anima.talker.model.kodama_tts import KodamaTTS as TTSModel
from anima.talker.model.kodama_tts import KodamaTTSConfig
from anima.talker.model.tokenizer import CONFIGS, SpeechTokenizer, config_to_dict

TEXT = "Hello there, captain. The sea is calm tonight."


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """talker/ (tokenizer, tts, voices.json: random tiny models) and mot/ (a tiny behaviour expert over that tts)."""
    root = tmp_path_factory.mktemp("mot_weights")
    talker = root / "talker"
    torch.manual_seed(0)
    from anima.e2e.mot.commands import HELDOUT_PHRASES, TRAIN_PHRASES

    phrases = " ".join(p for table in (TRAIN_PHRASES, HELDOUT_PHRASES) for ps in table.values() for p in ps)
    symbols = tuple(["_"] + sorted({p for p in phonemize(TEXT + " Aye, sir. " + phrases) if p != "_"}))
    tok_cfg = CONFIGS["tiny"]
    tok_cfg = type(tok_cfg)(**{**config_to_dict(tok_cfg), "teacher_dim": len(symbols)})
    save_checkpoint(talker / "tokenizer", SpeechTokenizer(tok_cfg), {"tokenizer": config_to_dict(tok_cfg)}, 0)
    model = TTSModel(KodamaTTSConfig.preset("tiny", symbols=symbols, codebook_size=tok_cfg.codebook_size, max_frames=40))
    save_checkpoint(talker / "tts", model, model.config_dict(), 0)
    rng = np.random.default_rng(0)
    voices = {name: {"speaker": rng.normal(size=128).tolist(), "prompt_phonemes": phonemize("Aye, sir."),
                     "prompt_codes": rng.integers(0, tok_cfg.codebook_size, (8, 6)).tolist()}
              for name in ("piper:joe", "espeak:en-gb+m3")}
    (talker / "voices.json").write_text(json.dumps({"default": "piper:joe", "voices": voices}))
    mot = MixtureOfTransformers(MoTConfig.preset("tiny"), TTSModel.from_pretrained(talker / "tts"))
    torch.nn.init.normal_(mot.behaviour.out_proj.weight, std=0.1)  # random but not zero behaviour
    save_checkpoint(root / "mot", mot.behaviour, {**mot.config_dict(), "speech_dir": str(talker / "tts")}, 0)
    return root


def agent(weights, seed=0) -> MoTAgent:
    from anima.e2e.mot.sampling import SamplerSettings

    return MoTAgent.load(weights / "mot", weights / "talker", seed=seed, settings=SamplerSettings(steps=3, window=4))


def test_speech_leaves_with_its_behaviour(weights):
    a = agent(weights)
    chunks = list(a.talker.stream(TEXT, voice="en-gb+m3", emotion="happy"))
    assert chunks[0].events[0].kind == "sentence" and chunks[0].events[0].text.startswith("mot:")
    assert chunks[-1].final and chunks[-1].events[-1].kind == "end"
    audio = [c for c in chunks if c.samples.size]
    assert all(c.samples.size == 1920 for c in audio)
    offsets = [c.offset_s for c in audio]
    assert offsets == sorted(offsets) and offsets[0] == 0.0
    words = [e.text for c in chunks for e in c.events if e.kind == "word"]
    assert words == TEXT.split()
    track = a.tracks[chunks[0].events[0].text]
    assert track.done and len(track.face) == 2 * len(audio) == len(track.body)  # two 25 fps frames per 80 ms of audio
    assert all(np.isfinite(f).all() for f in track.face)


def test_face_and_body_play_the_track_on_the_media_clock(weights):
    a = agent(weights)
    chunks = list(a.talker.stream("Aye, sir.", voice="piper:joe"))
    key = chunks[0].events[0].text
    track = a.tracks[key]
    silence = np.zeros(960, np.float32)
    before = a.face.step(0.0, silence, silence)
    a.face.schedule_speech([(1.0, chunks[0].events[0])])  # the playout will play it from media time 1.0
    assert track.start_s == 1.0 and a.track_at(1.0) is track and a.track_at(0.9) is None
    mid = 1.0 + track.duration_s / 2
    assert track.weight(mid) == 1.0 and track.weight(0.5) == 0.0
    np.testing.assert_allclose(a.face.step(mid, silence, silence), track.face_at(mid), atol=1e-6)
    assert before.shape == (112,)
    frames = [a.body.next_frame() for _ in range(round((mid + 0.5) * 20))]
    assert all(f.shape == (22, 3) and np.isfinite(f).all() for f in frames)
    later = a.talker.stream("Aye, sir.")
    key = next(later).events[0].text
    list(later)
    a.face.schedule_speech([(mid + 5.0, SpeechEvent("sentence", 0.0, key))])  # queued behind it
    a.face.cut_speech(mid)  # barge-in: the track ends where the audio went silent, the queued one never plays
    assert track.end_s() == mid and track.weight(mid + 1.0) == 0.0
    assert key not in a.tracks and a.track_at(mid + 6.0) is track


def test_a_silent_command_moves_face_and_body_without_speech(weights):
    a = agent(weights)
    track = a.command("nod", 2.0)
    assert a.track_at(2.5) is track and track.start_s == 2.0 and track.done
    assert abs(track.duration_s - 3.0) < 0.1
    silence = np.zeros(960, np.float32)
    np.testing.assert_allclose(a.face.step(3.0, silence, silence), track.face_at(3.0), atol=1e-6)


def test_the_body_stage_starts_commands_only_for_silent_replies(weights):
    import asyncio

    from anima.core.frames import TextPromptFrame, ThinkerPlanFrame
    from anima.core.plan import ActionPlan
    from anima.core.stage import DOWN
    from anima.e2e.mot.engine import MoTBodyStage

    a = agent(weights)
    stage = MoTBodyStage(a.body)
    stage.push_frame = _Collect()  # the stage's own offline clock stands at media time 0
    asyncio.run(stage.process_frame(ThinkerPlanFrame(ActionPlan("Aye, sir.", gesture="nod"), turn_id=1), DOWN))
    assert a.track_at(0.0) is None  # words: the model moves while it speaks, no command
    asyncio.run(stage.process_frame(ThinkerPlanFrame(ActionPlan("", gesture="nod"), turn_id=2), DOWN))
    first = a.track_at(0.0)
    assert first is not None and first.done
    asyncio.run(stage.process_frame(TextPromptFrame("look to the left"), DOWN))
    assert a.track_at(0.0) is not first


class _Collect:
    def __init__(self):
        self.frames = []

    async def __call__(self, frame, direction=None):
        self.frames.append(frame)


def test_cancel_stops_mid_utterance(weights):
    a = agent(weights)
    cancel = threading.Event()
    got = []
    for chunk in a.talker.stream(TEXT, cancel=cancel):
        got.append(chunk)
        if len(got) == 3:
            cancel.set()
    assert len(got) == 3 and not any(c.final for c in got)


def test_sessions_do_not_share_state(weights):
    a, b = agent(weights), agent(weights)
    list(a.talker.stream("Aye, sir."))
    assert a.tracks and not b.tracks
    assert a.mot is b.mot  # weights are shared, tracks are not


@pytest.mark.parametrize("text, emotion, message", [("", None, "empty"), ("Aye.", "giddy", "unknown emotion"),
                                                    ("x" * 5000, None, "characters")])
def test_bad_input(weights, text, emotion, message):
    with pytest.raises(ValueError, match=message):
        agent(weights).talker.stream(text, emotion=emotion)


def test_missing_or_mismatched_weights(weights, tmp_path):
    with pytest.raises(FileNotFoundError, match="mixture-of-transformers weights"):
        MoTAgent.load(tmp_path, weights / "talker")
    other = TTSModel(TTSModel.from_pretrained(weights / "talker" / "tts").config)  # another speech expert
    with pytest.raises(CheckpointError, match="speech expert"):
        load_mot(weights / "mot", speech=other)
    (tmp_path / "config.json").write_text(json.dumps({"config": {"kind": "kodama_tts"}}))
    with pytest.raises(CheckpointError, match="not a mixture"):
        load_mot(tmp_path)


def test_commands_from_prompts():
    assert command_for_prompt("nod") == "nod"
    assert command_for_prompt("please look to the left") == "look_left"
    assert command_for_prompt("a person waves goodbye") == "wave"
    assert command_for_prompt("bow to the guests") == "bow"
    assert command_for_prompt("walk forward") is None


def test_cli_say_and_command(weights, tmp_path, capsys):
    from anima.cli import main

    common = ["--weights", str(weights / "mot"), "--talker", str(weights / "talker"), "--steps", "2"]
    assert main(["mot", "say", "Aye, sir.", "-o", str(tmp_path / "say.wav"), *common]) == 0
    saved = np.load(tmp_path / "say.npz")
    assert saved["face"].shape[1] == 112 and saved["body263"].shape[1] == 263
    assert main(["mot", "command", "bow", "-o", str(tmp_path / "bow.npz"), *common]) == 0
    assert np.load(tmp_path / "bow.npz")["face"].shape == (76, 112)
    assert main(["mot", "command", "dance", "-o", str(tmp_path / "x.npz"), *common]) == 2
    assert main(["mot", "say", "", "-o", str(tmp_path / "x.wav"), *common]) == 2
    assert "unknown command 'dance'" in capsys.readouterr().err
