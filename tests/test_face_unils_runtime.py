"""``--face unils`` in the runtime: a short conversation through all five modules with the shipped
UniLS weights; every tick gets a valid face, the mouth follows the agent's voice, the listener moves."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from anima.cascade import CascadeOptions, build_stages, scripted_user
from anima.core.clock import MediaClock
from anima.core.conversation import load_conversation
from anima.core.frames import FaceParamsFrame, PlayedAudioFrame
from anima.core.history import ConversationHistory
from anima.core.session import Session
from anima.face import params
from anima.face.stage import FaceStage
from anima.testing import FrameRecorder

pytestmark = pytest.mark.integration

CONVERSATION = """\
title: UniLS check
agent: {name: Captain Nemo, voice: en-gb+m3}
user: {name: Visitor, voice: en-us+f3}
turns:
  - user: Good evening, Captain. What is this place, and where are we going tonight?
  - agent: Welcome aboard the Nautilus. We are forty metres below the surface, moving east.
    emotion: happy
"""


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from anima.face.unils import DEFAULT_WEIGHTS
    from anima.talker.espeak import EspeakTTS

    if not (DEFAULT_WEIGHTS / "config.json").is_file():
        pytest.skip("no shipped UniLS weights")
    if not EspeakTTS.is_available():
        pytest.skip("espeak-ng is not installed")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI does at start-up (the model runs fastest on one thread)
    tmp = tmp_path_factory.mktemp("unils")
    (tmp / "c.yaml").write_text(CONVERSATION)
    conversation = load_conversation(tmp / "c.yaml")
    history = ConversationHistory()
    stages = build_stages(conversation, tmp / "out.mp4", CascadeOptions(face="unils", width=640, height=360), history)
    tap = FrameRecorder("tap")
    stages.insert(next(i for i, s in enumerate(stages) if isinstance(s, FaceStage)) + 1, tap)
    try:
        result = asyncio.run(Session(stages, scripted_user(conversation, conversation.seed), MediaClock(), history).run())
    finally:
        torch.set_num_threads(threads)
    return result, tap


def test_every_tick_has_a_valid_unils_face(session):
    result, tap = session
    assert result.errors == []
    faces = tap.of_type(FaceParamsFrame)
    assert len(faces) == result.ticks
    params.check_ranges(np.stack([f.params for f in faces]))


def test_mouth_follows_the_agent_voice_and_the_listener_moves(session):
    _, tap = session
    faces = {f.pts_ns: f.params for f in tap.of_type(FaceParamsFrame)}
    level = {p.pts_ns: float(np.sqrt(np.mean(p.samples.astype(np.float64) ** 2))) if p.samples.size else 0.0
             for p in tap.of_type(PlayedAudioFrame)}
    common = sorted(set(faces) & set(level))
    jaw = np.array([faces[t][100] for t in common])
    loud = np.array([level[t] > 0.02 for t in common])
    assert loud.sum() > 25 and (~loud).sum() > 25
    assert jaw[loud].mean() > jaw[~loud].mean() + 0.02  # open while speaking (rad)
    listening = np.stack([faces[t] for t, on in zip(common, loud, strict=True) if not on])
    assert listening[:, 103:106].std(0).max() > 2e-3  # the head is not frozen while listening
