"""The backend registry: one set of names for render, demo, serve and the Python API."""

from __future__ import annotations

import numpy as np
import pytest

from anima.body.base import BodyAnimator
from anima.cascade import CascadeOptions, render_conversation
from anima.core.history import ConversationHistory
from anima.core.plan import ActionPlan
from anima.registry import BODIES, ENGINES, FACES, TALKERS, THINKERS, AgentChoice, Registry, ThinkerSpec
from anima.serve.app import ServeConfig

pytestmark = pytest.mark.unit


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown face 'unlis'; valid: procedural, unils"):
        FACES.check("unlis")
    with pytest.raises(ValueError, match=r"unknown body 'fl00d'; valid: procedural, flood"):
        BODIES.create("fl00d", seed=0)
    with pytest.raises(ValueError, match=r"unknown engine 'end2end'; valid: cascade, mot, e2e"):
        AgentChoice(engine="end2end").check()


def test_a_name_registered_twice_is_refused() -> None:
    registry: Registry[int] = Registry("thing", "")
    registry.register("one", "the first", lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("one", "again", lambda: 2)
    assert registry.create("one") == 1 and registry.names() == ("one",)


def test_render_and_serve_use_the_same_names(tmp_path) -> None:
    with pytest.raises(ValueError, match="valid: procedural, unils"):
        render_conversation("anima/assets/conversations/nautilus.yaml", tmp_path / "x.mp4",
                            CascadeOptions(face="unlis"), progress=False)
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(ValueError, match="valid: procedural, unils"):
        ServeConfig(face="unlis").check()  # the server refuses at start-up, not per visitor
    with pytest.raises(ValueError, match="valid: procedural, flood"):
        ServeConfig(body="flod").check()


def test_a_scripted_thinker_is_refused_live() -> None:
    with pytest.raises(ValueError, match="unknown thinker 'scripted' for a live session; valid: story"):
        ServeConfig(thinker="scripted").check()
    assert THINKERS.names() == ("scripted", "story") and THINKERS.names(live_only=True) == ("story",)


def test_cli_choices_come_from_the_registry(capsys) -> None:
    from anima.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["render", "x.yaml", "-o", "x.mp4", "--face", "unlis"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'unlis' (choose from procedural, unils)" in capsys.readouterr().err.replace("'procedural', 'unils'", "procedural, unils")


@pytest.mark.parametrize("name", FACES.names())
def test_every_face_steps(name: str) -> None:
    face = FACES.create(name, seed=1)
    silence = np.zeros(960, dtype=np.float32)
    frame = face.step(0.04, silence, silence)
    assert frame.shape == (112,) and np.isfinite(frame).all()


@pytest.mark.parametrize("name", BODIES.names())
def test_every_body_moves(name: str) -> None:
    body = BODIES.create(name, seed=1)
    assert isinstance(body, BodyAnimator)
    joints = np.stack([body.next_frame() for _ in range(4)])
    assert joints.shape == (4, 22, 3) and np.isfinite(joints).all()


def test_every_talker_speaks() -> None:
    from anima.talker.kodama import DEFAULT_WEIGHTS

    for name in TALKERS.names():
        if name == "kodama" and not (DEFAULT_WEIGHTS / "voices.json").is_file():
            with pytest.raises(FileNotFoundError, match="no talker weights"):  # until weights ship: a clear error
                TALKERS.create(name, voice="en-gb+m3")
            continue
        chunk = TALKERS.create(name, voice="en-gb+m3").synthesize("Hello there.", voice="en-gb+m3")
        assert chunk.samples.size > 0


def test_the_cascade_engine_builds_its_stages() -> None:
    choice = AgentChoice(thinker="scripted", thinker_spec=ThinkerSpec(script=[ActionPlan("Hello.")]))
    stages = ENGINES.create("cascade", choice=choice, history=ConversationHistory())
    assert [s.name for s in stages] == ["echo", "turns", "thinker", "talker", "playout", "face", "body"]
