"""The issue-17 held-out suite (anima/assets/suites/thinker-heldout-17): its sizes and spread, that it is
true to the novel (spoilers only later, expected answers by the story time; validated against the
novel's chapters when /work/shared holds them), and that no prompt repeats or nearly repeats a
prompt of any other suite."""

import difflib
import re
from pathlib import Path

import pytest

from anima.thinker.training.evaluate import SUITE_DIR, load_suites, validate_suite

HELDOUT = SUITE_DIR.parent / "thinker-heldout-17"
NOVEL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "novels" / "twenty-thousand-leagues"
CHARACTERS = {"aronnax", "conseil", "ned", "nemo"}


def _norm(prompt: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", prompt.lower().replace("\u2019", "'")))


def _near(a: str, b: str) -> bool:
    """Equal or near-equal wording: the same words, or a character-level similarity of 0.8 or more."""
    a, b = _norm(a), _norm(b)
    return a == b or set(a.split()) == set(b.split()) or difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


def test_sizes_spread_and_frozen_header():
    suites = load_suites(HELDOUT)
    assert {k: len(v) for k, v in suites.items()} == {"controls": 40, "timeline": 20, "robustness": 20}
    items = [i for v in suites.values() for i in v]
    assert len({i.id for i in items}) == len(items)
    assert {i.character for i in items} == CHARACTERS
    for name in ("controls.yaml", "timeline.yaml", "robustness.yaml"):
        head = (HELDOUT / name).read_text(encoding="utf-8").splitlines()[0]
        assert "2026-11-29" in head and "issue 17" in head
    controls = suites["controls"]
    assert all(sum(i.character == c for i in controls) >= 8 for c in CHARACTERS)
    times = {i.story_time for i in controls}
    assert min(times) <= 5 and max(times) >= 44 and len(times) >= 20  # spread across the book
    assert all(1 <= i.story_time <= 47 for i in items)


def test_no_prompt_shared_with_other_suites():
    others = [p for d in SUITE_DIR.parent.iterdir() if d.is_dir() and d != HELDOUT for p in d.glob("*.yaml")]
    assert others, "no other suites found"
    other_prompts = [i.prompt for path in others for items in load_suites(path.parent).values() for i in items]
    mine = [i.prompt for items in load_suites(HELDOUT).values() for i in items]
    clashes = [(m, o) for m in mine for o in other_prompts if _near(m, o)]
    assert clashes == []
    inside = [(a, b) for k, a in enumerate(mine) for b in mine[k + 1:] if _near(a, b)]
    assert inside == []


def test_the_overlap_check_can_fail():
    assert _near("What did you find at Vanikoro?", "what did you find at Vanikoro")
    assert _near("Where did master wake up after leaving the Nautilus?", "Where did master wake up after leaving the Nautilus")
    assert not _near("What is your trade?", "How long is the Nautilus?")


@pytest.mark.skipif(not NOVEL.is_dir(), reason="the novel's chapters (../shared/data/novels) are not on this machine")
def test_true_to_the_novel():
    from anima.thinker.data.extract import read_novel

    texts = {c.index: c.text for c in read_novel(NOVEL)}
    assert len(texts) == 47
    for name, items in load_suites(HELDOUT).items():
        assert validate_suite(items, texts) == [], name
