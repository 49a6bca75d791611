"""The command line as a user meets it: help, clear errors (never a traceback), a real render."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from anima.render.mp4 import probe

pytestmark = pytest.mark.integration


def anima(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "anima.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args", [["--help"], ["render", "--help"], ["demo", "--help"]])
def test_help(args):
    result = anima(*args)
    assert result.returncode == 0
    assert "usage: anima" in result.stdout


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        (None, "conversation file not found"),
        ("turns: [", "not valid YAML"),
        ("turns:\n  - user: hi\n    volume: 11", "unknown key(s) 'volume'"),
        ("turns:\n  - user: ''", "text is empty"),
        ("turns:\n  - user: hi\n  - agent: hello\n    emotion: smug", "unknown emotion 'smug'"),
    ],
)
def test_bad_conversation_is_a_clear_error(tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    if yaml_text is not None:
        path.write_text(yaml_text)
    result = anima("render", str(path), "-o", str(tmp_path / "o.mp4"), "--quiet")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_bad_options(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("turns:\n  - user: hi\n  - agent: hello\n")
    r = anima("render", str(path), "-o", str(tmp_path / "o.avi"), "--quiet")
    assert r.returncode == 2 and "must be an .mp4" in r.stderr
    r = anima("render", str(path), "-o", str(tmp_path / "o.mp4"), "--face", "photoreal", "--quiet")
    assert r.returncode == 2 and "unknown face 'photoreal'; valid: procedural" in r.stderr
    assert "Traceback" not in r.stderr


def test_render_wav_at_another_rate_and_non_ascii_text(tmp_path):
    """A 16 kHz stereo WAV user turn is resampled; non-ASCII text is spoken; the MP4 is complete."""
    from anima.talker.espeak import EspeakTTS

    speech = EspeakTTS().synthesize("Hello Captain, are you there?", voice="en-us+f3").samples
    from anima.core.audio import resample

    wav16 = resample(speech, 24000, 16000)
    sf.write(tmp_path / "q.wav", np.stack([wav16, wav16], axis=1), 16000)
    (tmp_path / "c.yaml").write_text(
        "turns:\n"
        "  - user: {wav: q.wav, text: 'Hello Captain, are you there?'}\n"
        "  - agent: Oui, je suis là. Café, naïve, señor!\n"
        "    gesture: bow\n",
        encoding="utf-8",
    )
    out = tmp_path / "o.mp4"
    r = anima("render", str(tmp_path / "c.yaml"), "-o", str(out), "--width", "480", "--height", "270", "--quiet",
              "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "1 agent turns" in r.stdout
    info = probe(out)
    assert info.width == 480 and info.audio_sample_rate == 24000 and info.duration_s > 3
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert [t["speaker"] for t in report["history"]] == ["user", "agent"]
    assert report["history"][1]["text"] == "Oui, je suis là. Café, naïve, señor!"


def test_render_with_the_story_thinker_is_in_character(tmp_path):
    """The acceptance command of the story Thinker, progress bar on (generated replies run longer
    than the script's estimate: the bar must grow, not crash)."""
    conv = tmp_path / "story.yaml"
    conv.write_text("agent: {name: Captain Nemo, voice: en-gb+m3}\nuser: {name: Visitor, voice: en-us+f3}\n"
                    "pause_s: 0.3\nturns:\n  - user: Are you an AI?\n  - user: How does your voyage end?\n")
    out, report = tmp_path / "story.mp4", tmp_path / "story.json"
    result = anima("render", str(conv), "-o", str(out), "--thinker", "story", "--character", "nemo",
                   "--story-time", "12", "--report", str(report), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    info = probe(out)
    assert info.video_frames > 0 and info.audio_duration_s > 2.0
    import json  # noqa: PLC0415

    said = [h["text"] for h in json.loads(report.read_text())["history"] if h["speaker"] == "agent"]
    assert len(said) == 2 and not any("AI" in s or "language model" in s for s in said)
    assert "Maelstrom" not in " ".join(said)  # chapter 46: no spoiler at chapter 12
