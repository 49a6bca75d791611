"""The ``e2e`` engine: DuplexAgent steps, the safety cap, weights checks, and a render through the runtime."""

from pathlib import Path

import numpy as np
import pytest
import torch

from anima.checkpoint import CheckpointError, save_checkpoint
from anima.e2e.duplex.engine import STEP_SAMPLES, DuplexAgent
from anima.e2e.duplex.model import DuplexConfig, DuplexDecoder, config_dict
from anima.e2e.duplex.motion import MotionCodec, MotionCodecConfig
from anima.talker.model.tokenizer import CONFIGS, SpeechTokenizer, config_to_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny random decoder + motion codec (``weights/g``, ``weights/motion``) and a tiny talker tokenizer."""
    root = tmp_path_factory.mktemp("duplex")
    torch.manual_seed(0)
    tokenizer = SpeechTokenizer(CONFIGS["tiny"]).eval()
    save_checkpoint(root / "talker" / "tokenizer", tokenizer, {"tokenizer": config_to_dict(CONFIGS["tiny"])}, 0)
    codec = MotionCodec(MotionCodecConfig(latent=8, d_model=32, n_head=2, window=6)).eval()
    codec.save(root / "weights" / "motion")
    config = DuplexConfig.preset("tiny", identities=("nemo", "ned"), n_identity=2, d_prompt=384)
    model = DuplexDecoder(config)
    save_checkpoint(root / "weights" / "g", model, {**config_dict(config), "tokenizer_digest": tokenizer.code_digest()}, 0)
    return root / "weights", root / "talker"


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * 24_000)) / 24_000
    rng = np.random.default_rng(seed)
    return (0.2 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def test_steps_write_audio_face_and_body_and_sessions_do_not_share_state(weights):
    a = DuplexAgent.load(*weights, character="ned", seed=3)
    b = DuplexAgent.load(*weights, character="ned", seed=3)
    user = _speech(0.8)
    outs = [a.step(user[i * STEP_SAMPLES:(i + 1) * STEP_SAMPLES]) for i in range(10)]
    for r in outs:
        assert r.audio.shape == (STEP_SAMPLES,) and r.face.shape == (2, 112) and r.joints.shape == (2, 22, 3)
        assert np.isfinite(r.audio).all() and np.isfinite(r.face).all() and np.isfinite(r.joints).all()
    assert not outs[0].audio.any()  # the first step only starts frame 0: nothing is playable yet (the delay)
    again = [b.step(user[i * STEP_SAMPLES:(i + 1) * STEP_SAMPLES]) for i in range(10)]
    assert all(np.array_equal(x.audio, y.audio) and np.array_equal(x.face, y.face) for x, y in zip(outs, again, strict=True))
    a.reset()
    assert a.state.steps == 0 and b.state.steps == 10


def test_the_safety_cap_silences_an_agent_talking_over_the_user(weights):
    agent = DuplexAgent.load(*weights, overlap_cap_s=0.4)
    agent.agent_speaking = agent.user_speaking = True
    user = _speech(1.6)
    capped = [agent.step(user[i * STEP_SAMPLES:(i + 1) * STEP_SAMPLES]) for i in range(20)]
    assert not capped[0].capped and all(r.capped for r in capped[5:])
    assert all(not r.audio.any() for r in capped[5:])
    agent.user_speaking = False
    assert not agent.step(user[:STEP_SAMPLES]).capped
    agent.prompt = np.zeros(16, np.float32)
    with pytest.raises(ValueError, match="prompt"):
        agent.step(user[:STEP_SAMPLES])


def test_bad_input_and_weights(weights, tmp_path):
    directory, talker = weights
    agent = DuplexAgent.load(directory, talker)
    with pytest.raises(ValueError, match="1920"):
        agent.step(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="character 'conseil'"):
        DuplexAgent.load(directory, talker, character="conseil")
    with pytest.raises(CheckpointError, match="no duplex decoder weights"):
        DuplexAgent.load(tmp_path / "nothing", talker)
    torch.manual_seed(1)
    other = SpeechTokenizer(CONFIGS["tiny"]).eval()
    save_checkpoint(tmp_path / "talker" / "tokenizer", other, {"tokenizer": config_to_dict(CONFIGS["tiny"])}, 0)
    with pytest.raises(CheckpointError, match="trained on the codes of tokenizer"):
        DuplexAgent.load(directory, tmp_path / "talker")


@pytest.mark.integration
def test_render_a_conversation_with_the_e2e_engine(weights, tmp_path, monkeypatch):
    import anima.e2e.duplex.engine as engine
    import anima.talker.kodama as kodama
    from anima.cascade import CascadeOptions, render_conversation

    monkeypatch.setattr(engine, "DEFAULT_WEIGHTS", weights[0])
    monkeypatch.setattr(kodama, "DEFAULT_WEIGHTS", weights[1])
    conv = tmp_path / "c.yaml"
    conv.write_text("title: e2e\nagent: {name: Ned Land, voice: en-us+m3}\nuser: {name: Tom, voice: en-us}\n"
                    "turns:\n  - user: Hello there.\n  - user: Are you a harpooner?\n")
    out = tmp_path / "e2e.mp4"
    result = render_conversation(conv, out, CascadeOptions(engine="e2e", character="ned", width=320, height=180), progress=False)
    assert out.is_file() and out.stat().st_size > 10_000
    assert not result.failed and not result.errors and result.media_s > 3.0


def test_cli_listen_writes_the_answer_beside_the_user(weights, tmp_path, capsys):
    import soundfile as sf

    from anima.cli import main

    user = tmp_path / "user.wav"
    sf.write(str(user), _speech(1.0), 16_000)  # 1.5 s at another rate: resampled on the way in
    out = tmp_path / "answer.wav"
    assert main(["duplex", "listen", str(user), "-o", str(out), "--weights", str(weights[0]), "--talker", str(weights[1]),
                 "--character", "nemo"]) == 0
    audio, rate = sf.read(str(out))
    assert rate == 24_000 and audio.ndim == 2 and audio.shape[1] == 2 and abs(audio.shape[0] - 1.5 * 24_000) <= 1920
    shown = np.load(out.with_suffix(".npz"))
    assert shown["face"].shape[1:] == (112,) and shown["joints"].shape[1:] == (22, 3)
    assert main(["duplex", "listen", str(tmp_path / "missing.wav"), "-o", str(out), "--weights", str(weights[0]),
                 "--talker", str(weights[1])]) == 2
    assert "missing.wav" in capsys.readouterr().err


def test_the_stage_plays_a_tick_at_a_time_and_the_planner_sets_the_prompt(weights):
    import asyncio

    from anima.core.frames import (
        NS_PER_S,
        BodyPoseFrame,
        FaceParamsFrame,
        PlayedAudioFrame,
        TickFrame,
        UserAudioFrame,
        UserTranscriptFrame,
    )
    from anima.core.plan import ActionPlan
    from anima.e2e.duplex.engine import DuplexStage
    from anima.e2e.duplex.planner import StoryPlanner
    from anima.testing.harness import run_frames

    class Thinker:  # a fake story thinker: always the same plan
        def respond(self, utterance, context):
            return ActionPlan(speech="Aye.", emotion="proud", gesture="bow")

    agent = DuplexAgent.load(*weights, character="ned")
    planner = StoryPlanner(Thinker())
    stage = DuplexStage(agent, planner=planner, character="ned")
    stage._embed("warm up")  # the sentence embedder loads once per process (seconds): not inside the timed run
    from anima.talker.espeak import EspeakTTS

    speech = EspeakTTS(voice="en-us").synthesize("Are you a harpooner, my friend?", voice="en-us").samples  # ~1.6 s
    tick_ns = NS_PER_S // 25
    frames = []
    for i in range(100):  # 4 s: the user says a sentence, then silence
        pts = i * tick_ns
        chunk = speech[i * 960:(i + 1) * 960]
        frames.append(UserAudioFrame(np.pad(chunk, (0, 960 - chunk.size)), pts_ns=pts))
        if i == 50:
            frames.append(UserTranscriptFrame("Are you a harpooner?", final=True, pts_ns=pts))
        frames.append(TickFrame(index=i, duration_ns=tick_ns, pts_ns=pts))
    recorder = asyncio.run(run_frames([stage], frames))
    played = recorder.of_type(PlayedAudioFrame)
    assert len(played) == 100 and all(f.samples.shape == (960,) for f in played)
    assert len(recorder.of_type(FaceParamsFrame)) == 100 and len(recorder.of_type(BodyPoseFrame)) == 100
    assert planner.thinker_calls == 1  # planned once for the finished sentence
    assert stage._prompt_text is not None and "proud" in stage._prompt_text
    assert agent.prompt is not None and agent.prompt.shape == (384,)
