"""Visitors of the live server with the real story thinker: private memories, forgetting, warm start."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time

import pytest
import websockets

from anima.serve.app import ServeConfig, warm_up
from anima.testing.server import running_server

pytestmark = pytest.mark.integration

ZEBULON = "My name is Zebulon Quaritch, I am a nurse, and I am afraid of octopuses."


@pytest.fixture(scope="module")
def story_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("anima-home")
    old = os.environ.get("ANIMA_HOME")
    os.environ["ANIMA_HOME"] = str(home)  # visitors' memories go to this copy of the world
    try:
        config = ServeConfig(port=0)  # the story thinker, as `anima serve` runs it
        seconds = warm_up(config)
        with running_server(config) as (address, app):
            yield address, app, seconds
    finally:
        gc.unfreeze()
        if old is None:
            os.environ.pop("ANIMA_HOME", None)
        else:
            os.environ["ANIMA_HOME"] = old


async def _session(address: str, texts: list[str], visitor: str | None = None, forget: bool = False) -> tuple[dict, list[str], dict | None]:
    """Say each text, wait for the agent's whole reply; returns (welcome, replies heard, forgotten)."""
    replies, forgotten = [], None
    async with websockets.connect(f"ws://{address}/ws", max_size=2**20) as ws:
        hello = {"type": "hello", "version": 1, "character": "nemo", "story_time": 12}
        await ws.send(json.dumps({**hello, **({"visitor": visitor} if visitor else {})}))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        for text in texts:
            await ws.send(json.dumps({"type": "text", "text": text}))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                msg = await asyncio.wait_for(ws.recv(), timeout=60)
                if isinstance(msg, str) and json.loads(msg)["type"] == "agent_stopped":
                    replies.append(json.loads(msg)["heard"])
                    break
            await asyncio.sleep(1.1)  # typed text is limited to one message a second
        if forget:
            await ws.send(json.dumps({"type": "forget"}))
            while forgotten is None:
                msg = await asyncio.wait_for(ws.recv(), timeout=30)
                if isinstance(msg, str) and json.loads(msg)["type"] == "forgotten":
                    forgotten = json.loads(msg)
    return welcome, replies, forgotten


def test_warm_start_freezes_what_was_loaded(story_server) -> None:
    _, _, seconds = story_server
    assert seconds > 0 and gc.get_freeze_count() > 10_000  # the world, embedder and modules


def test_a_second_visitor_cannot_hear_the_first_ones_memories(story_server) -> None:
    address, _, _ = story_server
    welcome_a, _, _ = asyncio.run(_session(address, [ZEBULON]))
    visitor_a = welcome_a["visitor"]
    assert len(visitor_a) >= 16  # a new visitor is given a random id to keep

    welcome_b, replies_b, _ = asyncio.run(_session(address, ["What is my name?"]))
    assert welcome_b["visitor"] != visitor_a
    assert not any("zebulon" in r.lower() or "quaritch" in r.lower() or "octopus" in r.lower() for r in replies_b)

    _, replies_a, _ = asyncio.run(_session(address, ["What is my name?"], visitor=visitor_a))
    assert any("zebulon" in r.lower() for r in replies_a), replies_a  # the same visitor is remembered


def test_forget_me_deletes_the_visitors_memory(story_server) -> None:
    address, _, _ = story_server
    welcome, _, forgotten = asyncio.run(_session(address, [ZEBULON], forget=True))
    assert forgotten is not None and forgotten["turns"] >= 2 and forgotten["facts"] >= 1
    _, replies, _ = asyncio.run(_session(address, ["What is my name?"], visitor=welcome["visitor"]))
    assert not any("zebulon" in r.lower() for r in replies), replies


def test_a_bad_visitor_id_is_refused(story_server) -> None:
    address, _, _ = story_server

    async def run() -> dict:
        async with websockets.connect(f"ws://{address}/ws") as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1, "visitor": "../../etc"}))
            return json.loads(await ws.recv())

    answer = asyncio.run(run())
    assert answer["type"] == "error" and "visitor" in answer["message"]
