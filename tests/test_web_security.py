"""The live server's browser-facing defences in Debian's Chromium (Playwright).

- Token mode works end to end in a browser: the page opened with ?token=... loads every asset,
  connects and is welcomed, with the token carried by the cookie the page set.
- A page from another origin (another local port) cannot open the WebSocket (cross-site WebSocket
  hijacking), while the same page script from the server's own origin can.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading

import pytest

from anima.serve.app import ServeConfig
from anima.testing.server import RepeatingThinker, free_port, running_server

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")

PROBE = """() => {
  window.result = "pending";
  const ws = window.probe = new WebSocket("ws://%s/ws");
  ws.onopen = () => ws.send(JSON.stringify({type: "hello", version: 1, character: "nemo"}));
  ws.onmessage = (ev) => { if (window.result === "pending") window.result = "message: " + ev.data; };
  ws.onerror = () => { if (window.result === "pending") window.result = "refused"; };
}"""
ATTACKER_PAGE = "<!doctype html><html><body><script>(" + PROBE + ")();</script></body></html>"


@contextlib.contextmanager
def _static_site(directory) -> str:
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--autoplay-policy=no-user-gesture-required"])


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_token_mode_in_a_browser() -> None:
    config = ServeConfig(port=0, token="t0ken-for-test", thinker_factory=lambda hello: RepeatingThinker("Aye."))
    with running_server(config) as (address, _), playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        failed = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        page.goto(f"http://{address}/?token=t0ken-for-test")
        assert page.evaluate("getComputedStyle(document.body).fontFamily") != ""  # style.css loaded
        page.click("#connect")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('connected')", timeout=20000)
        assert failed == []
        visitor = page.evaluate("localStorage.getItem('anima.visitor')")
        assert visitor and len(visitor) >= 16  # the browser keeps its visitor id for next time
        # Without the token (a fresh context: no cookie) the page itself is refused.
        other = browser.new_context().new_page()
        assert other.goto(f"http://{address}/").status == 401
        browser.close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_a_page_from_another_origin_cannot_open_the_websocket(tmp_path) -> None:
    config = ServeConfig(port=0, thinker_factory=lambda hello: RepeatingThinker("Aye."))
    with running_server(config) as (address, _), playwright.sync_playwright() as p:
        (tmp_path / "attack.html").write_text(ATTACKER_PAGE % address)
        with _static_site(tmp_path) as attacker:
            browser = _browser(p)
            page = browser.new_page()
            page.goto(f"http://{attacker}/attack.html")
            page.wait_for_function("window.result !== 'pending'", timeout=15000)
            assert page.evaluate("window.result") == "refused"
            # The same script from the server's own origin is welcomed (the check is the origin, not the script).
            own = browser.new_page()
            own.goto(f"http://{address}/")
            own.evaluate(PROBE % address)
            own.wait_for_function("window.result !== 'pending'", timeout=15000)
            assert own.evaluate("window.result").startswith('message: {"type": "welcome"')
            browser.close()
