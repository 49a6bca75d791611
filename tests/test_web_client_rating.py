"""The rating widget in a real browser (Debian's Chromium through Playwright): after a typed turn,
"End session" shows the 1-5 widget; a click sends the rating and the page gets the turn rewards."""

import os
import shutil

import pytest

from anima.serve.app import ServeConfig
from anima.testing.server import RepeatingThinker, running_server

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_end_the_session_and_click_a_rating():
    config = ServeConfig(port=0, asr="none", thinker_factory=lambda hello: RepeatingThinker("Aye, the sea is everything."))
    with running_server(config) as (address, _), playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
            "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://{address}/")
        assert not page.is_visible("#rating")
        page.click("#connect")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('connected')", timeout=20000)
        page.fill("#text", "Thank you, that is fascinating!")
        page.press("#text", "Enter")
        page.wait_for_function("window.anima.metrics.turnsStarted >= 1", timeout=20000)
        page.click("#end")
        assert page.is_visible("#rating") and page.is_disabled("#end")
        page.click("#rating [data-rating='4']")
        page.wait_for_function("window.anima.metrics.rated !== undefined", timeout=20000)
        rated = page.evaluate("window.anima.metrics.rated")
        assert rated["rating"] == 4 and len(rated["rewards"]) == 1 and abs(sum(rated["rewards"]) - 4) < 1e-3
        page.wait_for_function("document.getElementById('status').textContent.startsWith('disconnected')", timeout=10000)
        assert not page.is_visible("#rating")
        assert "rated this conversation 4 of 5" in page.inner_text("#log")
        assert errors == [] and page.evaluate("window.anima.metrics.errors") == []
        browser.close()
