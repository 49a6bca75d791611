"""Conversation files: every kind of bad input gets a clear error naming what was wrong."""

import numpy as np
import pytest
import soundfile as sf

from anima.core.conversation import MAX_TURN_CHARS, ConversationError, load_conversation

pytestmark = pytest.mark.unit


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
title: t
agent: {name: Nemo, voice: en-gb}
turns:
  - user: Hello there.
  - agent: Welcome aboard.
    gesture: bow
    emotion: happy
  - user: Stop!
    barge_in_s: 1.5
  - agent: Very well.
"""


def test_good_file(tmp_path):
    conv = load_conversation(write(tmp_path, GOOD))
    assert [t.text for t in conv.user_turns] == ["Hello there.", "Stop!"]
    assert conv.user_turns[1].barge_in_s == 1.5
    assert conv.agent_turns[0].gesture == "bow" and conv.agent.name == "Nemo"


@pytest.mark.parametrize(
    "body, message",
    [
        ("turns: [", "not valid YAML (line"),
        ("- just a list", "expected a mapping at the top level"),
        ("title: x", "missing 'turns'"),
        ("turns: []", "non-empty list"),
        ("turns:\n  - user: hi\n    colour: red", "unknown key(s) 'colour'"),
        ("speed: 3\nturns:\n  - user: hi", "unknown key(s) 'speed'"),
        ("turns:\n  - user: '   '", "turn 1: user: text is empty"),
        ("turns:\n  - agent: hello", "expected a user turn (the conversation starts with the user)"),
        ("turns:\n  - user: a\n  - user: b", "turn 2: expected a agent turn"),
        ("turns:\n  - user: a\n  - agent: b\n    gesture: juggle", "unknown gesture 'juggle'"),
        ("turns:\n  - user: a\n    barge_in_s: 2", "needs an agent turn before it"),
        ("turns:\n  - user: a\n  - agent: b\n  - user: c\n    barge_in_s: -1", "outside [0.0, 600.0]"),
        ("turns:\n  - user: a\n  - agent: b\n  - user: c\n    barge_in_s: soon", "expected a number"),
        ("turns:\n  - user: {wav: nothing.wav}", "file not found"),
        ("turns:\n  - user: 42", "expected text or {wav, text}"),
        ("turns:\n  - user: a\n    agent: b", "either 'user' or 'agent'"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, body, message):
    with pytest.raises(ConversationError) as err:
        load_conversation(write(tmp_path, body))
    assert message in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConversationError, match="conversation file not found"):
        load_conversation(tmp_path / "nope.yaml")


def test_not_utf8(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"turns:\n  - user: \xff\xfe\n")
    with pytest.raises(ConversationError, match="not UTF-8"):
        load_conversation(path)


def test_very_long_text_is_a_clear_error(tmp_path):
    long = "word " * (MAX_TURN_CHARS // 4)
    with pytest.raises(ConversationError, match=f"the limit is {MAX_TURN_CHARS}"):
        load_conversation(write(tmp_path, f"turns:\n  - user: {long}\n"))


def test_yaml_booleans_get_a_hint(tmp_path):
    with pytest.raises(ConversationError, match="quote it"):
        load_conversation(write(tmp_path, "turns:\n  - user: hi\n  - agent: yes\n"))


def test_non_ascii_text_is_kept(tmp_path):
    conv = load_conversation(write(tmp_path, "turns:\n  - user: Café naïve — 日本\n  - agent: Très bien, señor.\n"))
    assert conv.user_turns[0].text == "Café naïve — 日本"
    assert conv.agent_turns[0].speech == "Très bien, señor."


def test_wav_paths_are_relative_to_the_file(tmp_path):
    sub = tmp_path / "audio"
    sub.mkdir()
    sf.write(sub / "q.wav", np.zeros(1600, np.float32), 16000)
    conv = load_conversation(write(tmp_path, "turns:\n  - user: {wav: audio/q.wav, text: hi}\n  - agent: sure\n"))
    assert conv.user_turns[0].wav == sub / "q.wav"


def test_agent_interrupts_s_is_read_and_checked():
    from anima.core.conversation import ConversationError, parse_conversation

    data = {"turns": [{"user": "hello"}, {"agent": "hi"}, {"user": "a long story", "agent_interrupts_s": 2.5}]}
    conv = parse_conversation(data)
    assert [t.agent_interrupts_s for t in conv.user_turns] == [None, 2.5]
    data["turns"][2]["agent_interrupts_s"] = -1
    with pytest.raises(ConversationError, match="agent_interrupts_s"):
        parse_conversation(data)


def test_a_silent_reply_needs_a_gesture(tmp_path):
    conv = load_conversation(write(tmp_path, 'turns:\n  - user: Do you agree?\n  - agent: ""\n    gesture: nod\n'))
    assert conv.agent_turns[0].speech == "" and conv.agent_turns[0].gesture == "nod"
    with pytest.raises(ConversationError, match="empty"):
        load_conversation(write(tmp_path, 'turns:\n  - user: Do you agree?\n  - agent: ""\n'))
