"""The web client in a real browser: Debian's Chromium driven by Playwright, a fake microphone.

Types a question, hears the reply (audio chunks played on the page's AudioContext), sees the
canvas change, then barges in through the fake microphone and checks, in the page, that the agent
fell silent within 150 ms of the user's speech onset with no further audio from that turn.
"""

import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from anima.core.audio import resample
from anima.serve.app import ServeConfig
from anima.talker.espeak import EspeakTTS
from anima.testing.server import RepeatingThinker, running_server

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")

LONG = ("Beneath the waves the Nautilus glides in silence, and I have watched the forests of the deep sway "
        "in currents no sailor has ever charted, season after season, far from every shore and every harbour.")


@pytest.fixture(scope="module")
def fake_mic(tmp_path_factory):
    speech = EspeakTTS().synthesize("Wait! Stop, please, stop.", voice="en-us+f3").samples
    audio = np.concatenate([np.zeros(24000, np.float32), speech, np.zeros(3 * 24000, np.float32)])
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(path, resample(audio, 24000, 48000), 48000, subtype="PCM_16")
    return path


def canvas_png(page) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(page.locator("#avatar").screenshot())).convert("RGB")).astype(np.int16)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_type_listen_and_barge_in_in_chromium(fake_mic, tmp_path):
    config = ServeConfig(port=0, thinker_factory=lambda hello: RepeatingThinker(LONG, gesture="respond"))
    with running_server(config) as (address, _), playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={fake_mic}", "--autoplay-policy=no-user-gesture-required",
            "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
        ])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://{address}/")
        page.click("#connect")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('connected')", timeout=20000)
        page.wait_for_function("window.anima.metrics.motionFrames > 10", timeout=10000)
        time.sleep(0.3)
        idle = canvas_png(page)

        page.fill("#text", "Captain, what do you see out there?")
        page.press("#text", "Enter")
        page.wait_for_function("window.anima.metrics.turnsStarted >= 1 && window.anima.metrics.audioChunks > 25", timeout=20000)
        speaking = canvas_png(page)
        assert np.abs(speaking - idle).mean() > 0.5, "the avatar canvas changes while it speaks"
        page.screenshot(path=str(tmp_path / "web_client.png"))
        if os.environ.get("ANIMA_SCREENSHOT"):
            page.screenshot(path=os.environ["ANIMA_SCREENSHOT"])

        page.click("#mic")  # the fake microphone plays 1 s of silence, then the user cuts in
        page.wait_for_function("window.anima.metrics.bargeIns.length >= 1", timeout=10000)
        barge = page.evaluate("window.anima.metrics.bargeIns[0]")
        print(f"page-measured barge-in: {barge['latencyMs']:.1f} ms")
        assert barge["source"] == "local" and 0 <= barge["latencyMs"] <= 150, barge
        page.wait_for_function("window.anima.metrics.serverInterrupts.length >= 1", timeout=10000)
        time.sleep(1.5)
        m = page.evaluate("window.anima.metrics")
        active = page.evaluate("window.anima.state.sources.filter(x => x.end > window.anima.state.ctx.currentTime).map(x => x.turn)")
        assert barge["turn"] not in active, "nothing of the interrupted turn is still scheduled"
        assert m["receivedAfterServerInterrupt"] == 0, "the server sent no audio of the turn after its interruption"
        assert m["lateChunks"] <= 0.01 * m["audioChunks"] + 1
        assert "listening" in m["states"]
        assert errors == []
        browser.close()
