"""The command line as a user meets it: help, clear errors (never a traceback), a real render.

Most tests call ``anima.cli.main`` in-process; the installed ``anima`` entry point runs in a
subprocess where the exit status a shell sees is the point, and so do the two full renders: espeak-ng
keeps synthesis state across utterances within a process (its voices' flutter phase), so a render's
audio depends on what the process spoke before, and renders in the test process would change the
audio (and the turn timings) of every later render test.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from anima import cascade
from anima.cli import main
from anima.core.frames import ErrorFrame, TickFrame
from anima.core.stage import UP, Stage
from anima.render.mp4 import probe

pytestmark = pytest.mark.integration

ENTRY_POINT = shutil.which("anima", path=str(Path(sys.executable).parent))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # main() sets it; keep it from leaking into other tests


def anima(capsys, *args) -> tuple[int, str, str]:
    """Run ``anima ARGS`` in this process: (exit code, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse: --help, bad arguments
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def anima_process(*args) -> tuple[int, str, str]:
    """Run ``anima ARGS`` in a fresh Python process: (exit code, stdout, stderr)."""
    r = subprocess.run([sys.executable, "-m", "anima.cli", *args], capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.skipif(ENTRY_POINT is None, reason="the anima entry point is not installed next to this Python")
def test_installed_entry_point_runs_and_fails_cleanly(tmp_path):
    r = subprocess.run([ENTRY_POINT, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage: anima" in r.stdout
    r = subprocess.run([ENTRY_POINT, "render", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "o.mp4"), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "conversation file not found" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [["--help"], ["render", "--help"], ["demo", "--help"]])
def test_help(capsys, args):
    code, out, _ = anima(capsys, *args)
    assert code == 0
    assert "usage: anima" in out


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
def test_bad_conversation_is_a_clear_error(capsys, tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    if yaml_text is not None:
        path.write_text(yaml_text)
    code, _, err = anima(capsys, "render", str(path), "-o", str(tmp_path / "o.mp4"), "--quiet")
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "o.mp4").exists()


def test_bad_options(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("turns:\n  - user: hi\n  - agent: hello\n")
    code, _, err = anima(capsys, "render", str(path), "-o", str(tmp_path / "o.avi"), "--quiet")
    assert code == 2 and "must be an .mp4" in err
    code, _, err = anima(capsys, "render", str(path), "-o", str(tmp_path / "o.mp4"), "--face", "photoreal", "--quiet")
    assert code == 2 and "'photoreal'" in err and "procedural" in err  # names the valid choices
    assert "Traceback" not in err


class _Unplugged(Stage):
    """A stage whose device goes away on tick 10: a permanent error."""

    async def process_frame(self, frame, direction):
        if isinstance(frame, TickFrame) and frame.index == 10:
            await self.push_frame(ErrorFrame(message="camera unplugged", stage="camera", permanent=True), UP)
        await self.push_frame(frame, direction)


def test_a_permanent_error_stops_the_render_with_a_clear_message(capsys, tmp_path, monkeypatch):
    build = cascade.build_stages

    def with_failing_stage(*args, **kwargs):
        stages = build(*args, **kwargs)
        return [stages[0], _Unplugged("camera"), *stages[1:]]

    monkeypatch.setattr(cascade, "build_stages", with_failing_stage)
    path = tmp_path / "c.yaml"
    path.write_text("turns:\n  - user: hello there\n  - agent: hello, how are you today?\n")
    code, out, err = anima(capsys, "render", str(path), "-o", str(tmp_path / "o.mp4"), "--body", "procedural",
                           "--width", "320", "--height", "240", "--quiet")
    assert code == 1
    assert "error: session ended by a permanent error in camera: camera unplugged (after 0.4 s of media)" in err
    assert "Traceback" not in err and "wrote" not in out


def test_render_wav_at_another_rate_and_non_ascii_text(capsys, tmp_path):
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
    code, stdout, stderr = anima_process("render", str(tmp_path / "c.yaml"), "-o", str(out), "--width", "480",
                                         "--height", "270", "--quiet", "--report", str(tmp_path / "r.json"))
    assert code == 0, stderr
    assert "wrote" in stdout and "1 agent turns" in stdout
    info = probe(out)
    assert info.width == 480 and info.audio_sample_rate == 24000 and info.duration_s > 3
    report = json.loads((tmp_path / "r.json").read_text())
    assert [t["speaker"] for t in report["history"]] == ["user", "agent"]
    assert report["history"][1]["text"] == "Oui, je suis là. Café, naïve, señor!"


def test_render_with_the_story_thinker_is_in_character(capsys, tmp_path, monkeypatch):
    """The acceptance command of the story Thinker, progress bar on (generated replies run longer
    than the script's estimate: the bar must grow, not crash)."""
    conv = tmp_path / "story.yaml"
    conv.write_text("agent: {name: Captain Nemo, voice: en-gb+m3}\nuser: {name: Visitor, voice: en-us+f3}\n"
                    "pause_s: 0.3\nturns:\n  - user: Are you an AI?\n  - user: How does your voyage end?\n")
    out, report = tmp_path / "story.mp4", tmp_path / "story.json"
    monkeypatch.chdir(tmp_path)
    code, _, stderr = anima_process("render", str(conv), "-o", str(out), "--thinker", "story", "--character", "nemo",
                                    "--story-time", "12", "--report", str(report))
    assert code == 0, stderr[-2000:]
    info = probe(out)
    assert info.video_frames > 0 and info.audio_duration_s > 2.0
    said = [h["text"] for h in json.loads(report.read_text())["history"] if h["speaker"] == "agent"]
    assert len(said) == 2 and not any("AI" in s or "language model" in s for s in said)
    assert "Maelstrom" not in " ".join(said)  # chapter 46: no spoiler at chapter 12
