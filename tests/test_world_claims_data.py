"""Checks the frozen world-claims benchmark data: shape, sizes, and that every
evidence quote really occurs in the cited chapter of the novel."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "world_claims.json"
NOVEL = ROOT.parent / "shared" / "data" / "novels" / "twenty-thousand-leagues"
SIZES = {"false": 40, "true": 30, "unknown_yet": 10}
FACT_KEY = {"false": "contradicts", "true": "states", "unknown_yet": "states"}
CHARACTERS = {"ned", "nemo", "aronnax", "conseil"}


def _load() -> dict:
    return json.loads(DATA.read_text(encoding="utf-8"))


def _items(data: dict):
    for group in SIZES:
        for item in data[group]:
            yield group, item


def _chapter_file(index: int) -> Path:
    """Story time / chapter index 1..47 -> chapter file (part 2 chapter k is 24 + k)."""
    if index <= 24:
        return NOVEL / f"part1-chapter{index:02d}.txt"
    return NOVEL / f"part2-chapter{index - 24:02d}.txt"


def test_sizes_and_ids():
    data = _load()
    assert isinstance(data["description"], str) and data["description"]
    for group, size in SIZES.items():
        assert len(data[group]) == size, group
    ids = [item["id"] for _, item in _items(data)]
    assert len(ids) == len(set(ids))


def test_fields_and_text():
    data = _load()
    for group, item in _items(data):
        where = f"{group} {item.get('id')}"
        assert set(item) == {"id", "character", "story_time", "text", FACT_KEY[group], "evidence"}, where
        assert item["character"] in CHARACTERS, where
        assert isinstance(item["story_time"], int) and 1 <= item["story_time"] <= 47, where
        assert isinstance(item[FACT_KEY[group]], str) and item[FACT_KEY[group]], where
        words = item["text"].split()
        assert 8 <= len(words) <= 25, (where, len(words))
        # spoken text: what a speech recogniser would produce
        assert not re.search(r"[0-9\"“”()\[\]{}]", item["text"]), where
        ev = item["evidence"]
        assert set(ev) == {"chapter", "quote"}, where
        assert isinstance(ev["chapter"], int) and 1 <= ev["chapter"] <= 47, where
        assert ev["quote"].strip(), where


def test_evidence_is_known_or_not_yet_known_at_story_time():
    data = _load()
    for group, item in _items(data):
        chapter, story_time = item["evidence"]["chapter"], item["story_time"]
        if group == "unknown_yet":
            assert chapter > story_time, item["id"]
        else:
            assert chapter <= story_time, item["id"]


def test_false_claims_spread_over_characters():
    data = _load()
    counts = {c: sum(item["character"] == c for item in data["false"]) for c in CHARACTERS}
    assert all(n == 10 for n in counts.values()), counts


def test_quotes_occur_in_their_chapter():
    if not NOVEL.is_dir():
        pytest.skip(f"novel text not found at {NOVEL}")
    data = _load()
    texts = {i: _chapter_file(i).read_text(encoding="utf-8") for i in range(1, 48)}
    missing = [item["id"] for _, item in _items(data) if item["evidence"]["quote"] not in texts[item["evidence"]["chapter"]]]
    assert not missing, f"quotes not found in their chapter: {missing}"
