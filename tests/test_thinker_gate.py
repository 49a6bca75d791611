"""The narrative-present gate, proved on random graphs (hypothesis): at story time T nothing known
after T (or no longer true at T) is ever returned, and nothing visible is lost."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anima.embed import HashEmbedder
from anima.thinker.data.sample import random_world
from anima.thinker.retrieval import NEVER, Retriever, VectorIndex, visible
from anima.thinker.world import World

pytestmark = pytest.mark.unit
_counter = itertools.count()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("gate")


def _world(workdir, seed, chapters, entities, facts):
    rng = np.random.default_rng(seed)
    path = workdir / f"w{next(_counter)}.db"
    truth = random_world(path, rng, chapters=chapters, entities=entities, facts=facts, dim=16)
    world = World.open(path, readonly=True)
    return world, Retriever(world, HashEmbedder(16)), truth, rng


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), chapters=st.integers(1, 12), entities=st.integers(1, 10),
       facts=st.integers(0, 45), story_time=st.integers(1, 12), query=st.sampled_from(
           ["storm", "pearl harpoon", "Entity3 and the coral", "What about the whale?", "ice ice ice", ""]))
def test_nothing_from_the_future_is_returned(workdir, seed, chapters, entities, facts, story_time, query):
    world, retriever, truth, rng = _world(workdir, seed, chapters, entities, facts)
    story_time = min(story_time, chapters)
    try:
        found = retriever.retrieve(query or "?", story_time, k_entities=50, k_facts=100, k_lines=10)
        for hit in found.items():
            assert visible(hit.known_from, hit.valid_until, story_time), hit
        # ...and nothing visible is lost: with k above the graph's size, every visible fact comes back
        # (facts are unique texts, so the text de-duplication drops nothing).
        expected = {f[0] for f in truth["facts"] if visible(f[2], f[3], story_time)}
        assert {h.id for h in found.facts} == expected
        named, hidden = retriever.mentioned_entities(query, story_time)
        for eid in named:
            assert retriever.entities[eid].known_from <= story_time
        for name in hidden:
            assert all(e[2] > story_time for e in truth["entities"] if e[1] == name)
    finally:
        world.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), story_time=st.integers(1, 8), k=st.integers(1, 12))
def test_top_k_is_taken_among_visible_items_only(workdir, seed, story_time, k):
    """The gate is a mask inside the search: top-k is never padded with (or cut by) future items."""
    world, retriever, truth, rng = _world(workdir, seed, 8, 6, 40)
    try:
        q = rng.normal(size=16).astype(np.float32)
        q /= np.linalg.norm(q)
        got = retriever.fact_index.search(q, k, story_time)
        reference = sorted(((float(v @ q), fid) for fid, _, kf, vu, v in truth["facts"] if visible(kf, vu, story_time)),
                           reverse=True)[:k]
        assert [fid for fid, _ in got] == [fid for _, fid in reference]
        assert np.allclose([s for _, s in got], [s for s, _ in reference], atol=1e-5)
    finally:
        world.close()


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 60), story_time=st.integers(0, 15), k=st.integers(0, 20), seed=st.integers(0, 1000))
def test_vector_index_matches_a_slow_reference(n, story_time, k, seed):
    rng = np.random.default_rng(seed)
    index = VectorIndex(8)
    known = rng.integers(1, 12, size=n)
    until = [None if rng.random() < 0.5 else int(kf + rng.integers(1, 5)) for kf in known]
    matrix = rng.normal(size=(n, 8)).astype(np.float32)
    index.load(list(range(100, 100 + n)), known, until, matrix)
    q = rng.normal(size=8).astype(np.float32)
    got = index.search(q, k, story_time)
    slow = []
    for i in range(n):  # the obvious way: check every row
        if known[i] <= story_time and (until[i] is None or until[i] > story_time):
            slow.append((float(matrix[i] @ q), 100 + i))
    slow.sort(reverse=True)
    assert [i for i, _ in got] == [i for _, i in slow[:k]]


def test_gate_off_is_really_off(workdir):
    world, retriever, truth, _ = _world(workdir, 7, 10, 5, 40)
    try:
        found = retriever.retrieve("storm", 1, k_facts=100, gate=False)
        assert any(h.known_from > 1 for h in found.facts)
        assert len(found.facts) == len(truth["facts"])
    finally:
        world.close()


def test_gate_needs_a_story_time(workdir):
    world, retriever, _, _ = _world(workdir, 3, 5, 3, 5)
    try:
        with pytest.raises(ValueError, match="story time"):
            retriever.retrieve("storm", None)
    finally:
        world.close()


def test_a_fact_that_stops_being_true_is_not_current():
    assert visible(3, 6, 5) and not visible(3, 6, 6) and not visible(3, None, 2) and visible(3, None, 47)
    assert NEVER > 10**6
