"""The character cuts in on a false claim about its world: the canon, the checker, the runtime."""

import asyncio
import sqlite3

import numpy as np
import pytest
import yaml

from anima.testing.chat import chat_server, reply
from anima.thinker.claims import (
    FALSE_CLAIM,
    CanonError,
    ClaimChecker,
    ClaimInterjector,
    canon_for_world,
    load_canon,
    parse_number,
)
from anima.thinker.world import WORLD_ASSET

CANON = WORLD_ASSET.with_name("twenty-thousand-leagues.canon.yaml")


@pytest.fixture(scope="module")
def checker():
    return ClaimChecker(canon_for_world(WORLD_ASSET))


def test_every_canon_fact_is_said_in_its_chapter():
    canon = load_canon(CANON)
    chapters = dict(sqlite3.connect(WORLD_ASSET).execute("select idx, text from chapters").fetchall())
    assert len(canon.facts) >= 15
    for fact in canon.facts:
        chapter, quote = fact.source
        assert quote and quote in chapters[chapter], (fact.about, fact.slot, chapter, quote)
        assert fact.known_from <= chapter or fact.known_from == 1, (fact.about, fact.slot)


@pytest.mark.parametrize("listener, story_time, text, correction", [
    ("ned", 12, "you are french I can tell from the accent", "I am a Canadian, not French."),
    ("ned", 12, "back home in Paris you were a cook weren't you", "I am a harpooner, not a cook."),
    ("aronnax", 20, "I read that Ned Land is English", "Ned Land is a Canadian, not English."),
    ("aronnax", 20, "they say Farragut is the captain of the Nautilus now",
     "Captain Nemo commands the Nautilus, not Commander Farragut."),
    ("conseil", 25, "so the Nautilus is powered by coal like any steamer", "The Nautilus runs on electricity, not steam."),
    ("nemo", 15, "your Nautilus is barely thirty feet long", "I"),  # the correction is checked below
    ("nemo", 15, "this boat of yours cannot do more than five knots", None),  # "this boat" names nothing: silence
    ("aronnax", 30, "we are still on board the abraham lincoln I think", "We are aboard the Nautilus, not the Abraham Lincoln."),
    ("conseil", 9, "you are not flemish at all", "I am Flemish."),
])
def test_false_claims_get_a_correction(checker, listener, story_time, text, correction):
    found = checker.check(text, listener, story_time)
    if correction is None:
        assert found is None
    elif correction == "I":
        assert found is not None and found.correction == "The Nautilus is seventy meters long, not thirty feet."
    else:
        assert found is not None and found.correction == correction, found
        assert found.reason == FALSE_CLAIM + correction


@pytest.mark.parametrize("listener, story_time, text", [
    ("ned", 12, "you are a canadian harpooner from quebec"),  # true
    ("ned", 12, "are you french"),  # a question
    ("ned", 12, "is it true that ned land is french"),
    ("aronnax", 20, "captain nemo commands the nautilus"),
    ("aronnax", 5, "you are aboard the nautilus"),  # the name means nothing yet at story time 5
    ("aronnax", 5, "we are aboard the abraham lincoln"),
    ("aronnax", 20, "you sailed on the abraham lincoln once"),  # past, and true
    ("aronnax", 3, "the monster is a whale"),  # what the characters believe at story time 3
    ("nemo", 40, "the nautilus was doing twenty knots this morning"),  # below its top speed: no claim on it
    ("ned", 12, "my name is anna and I am a french student"),  # about the visitor
    ("aronnax", 20, "professor the captain of the nautilus is a strange man"),
    ("conseil", 12, "nature is your obedient servant"),
    ("conseil", 12, "the nautilus runs on electricity"),
    ("conseil", 10, "the nautilus runs on steam"),  # not known before chapter 12
])
def test_true_statements_questions_and_unknown_names_get_no_cut_in(checker, listener, story_time, text):
    assert checker.check(text, listener, story_time) is None


def test_no_sentence_of_the_novel_contradicts_its_own_canon(checker):
    rows = sqlite3.connect(WORLD_ASSET).execute("select text, chapter from lines").fetchall()
    assert len(rows) > 500
    hits = [(text, c) for text, c in rows for who in ("aronnax", "ned") if checker.check(text, who, c)]
    assert hits == []


def test_numbers_in_words_and_digits():
    assert parse_number("seventy meters".split()) == (70, 1)
    assert parse_number("two hundred and fifty feet".split()) == (250, 4)
    assert parse_number("a hundred knots".split()) == (100, 2)
    assert parse_number("twelve thousand books".split()) == (12000, 2)
    assert parse_number("70 m".split()) == (70, 1)
    assert parse_number("many feet".split()) is None


def test_the_interjector_follows_the_story_time_and_a_growing_transcript(checker):
    now = {"t": 20}
    policy = ClaimInterjector(checker, "aronnax", lambda: now["t"])
    assert policy.consider("we are aboard", 1.0) is None
    assert policy.consider("we are aboard the abraham lincoln", 1.5).startswith(FALSE_CLAIM)
    assert policy.consider("we are aboard the abraham lincoln", 1.6).startswith(FALSE_CLAIM)  # same words, same answer
    policy.reset()
    now["t"] = 5
    assert policy.consider("we are aboard the abraham lincoln", 1.0) is None


def test_a_bad_canon_is_named(tmp_path):
    data = yaml.safe_load(CANON.read_text())
    bad = tmp_path / "bad.canon.yaml"
    data["facts"][0]["slot"] = "height"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(CanonError, match="fact 1"):
        load_canon(bad)
    data = yaml.safe_load(CANON.read_text())
    data["facts"][0]["value"] = ["martian"]
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(CanonError, match="nationality"):
        load_canon(bad)
    bad.write_text("entities: [")
    with pytest.raises(CanonError, match="bad.canon.yaml"):
        load_canon(bad)
    assert canon_for_world(tmp_path / "other-novel.db") is None  # a world without a canon: no claim checks


def test_the_runtime_cuts_in_on_a_false_claim_and_the_reply_corrects_it():
    """A visitor tells Ned Land he is French: Ned cuts in mid-sentence with the correction."""
    from anima.core.clock import MediaClock
    from anima.core.conversation import UserTurnSpec
    from anima.core.duplex import TurnTaking
    from anima.core.history import ConversationHistory
    from anima.core.playout import Playout
    from anima.core.scripted_user import ScriptedUser
    from anima.core.session import Session
    from anima.core.vad import EnergyVAD
    from anima.talker.stage import TalkerStage
    from anima.testing import ToneTTS
    from anima.thinker.interjector import thinker_interjector
    from anima.thinker.persona import load_persona
    from anima.thinker.stage import ThinkerStage
    from anima.thinker.story import StoryThinker

    tts = ToneTTS()
    thinker = StoryThinker.create("ned", story_time=12, remember=False)
    history = ConversationHistory()
    turns = TurnTaking(vad=EnergyVAD(), interjector=thinker_interjector(thinker))
    said = "well everyone in the village says you are french and that you came here from marseille on a fishing boat"
    spec = UserTurnSpec(said)
    spec.agent_interrupts_s = 1e9  # the scripted user stops talking when cut off (the script itself never cuts in)
    user = ScriptedUser([spec], lambda t: tts.render(t), lambda p: np.zeros(0), pause_s=0.4, tail_s=0.5)
    stages = [turns, ThinkerStage(thinker, history), TalkerStage(tts), Playout()]
    asyncio.run(Session(stages, user, MediaClock(realtime=False), history).run())
    visitor = next(t for t in history.turns if t.speaker == "user")
    ned = next(t for t in history.turns if t.speaker == "agent")
    assert visitor.interrupted, "Ned let the false claim pass"
    assert "french" in visitor.text and "marseille" not in visitor.text  # cut after the claim, before the end
    assert any(ned.text.startswith(p) for p in load_persona("ned").interrupts.cut_in), ned.text
    assert ned.text.endswith("I am a Canadian, not French."), ned.text


class _Judge:
    """The verdict the local chat server gives, set per test, and the requests it saw."""

    verdict = '{"contradicts": false}'
    seen: list = []

    @classmethod
    def answer(cls, body):
        cls.seen.append(body)
        return reply(cls.verdict)


def _wait_for(policy, text, seconds=10.0):
    """Ask as the runtime does, every tick, until the background check has answered."""
    import time

    reason = policy.consider(text, 1.0)  # submits the check
    end = time.monotonic() + seconds
    while reason is None and policy._busy and time.monotonic() < end:
        time.sleep(0.02)
        reason = policy.consider(text, 1.0)
    return reason or policy.consider(text, 1.0)


def test_a_language_model_checks_claims_about_events_in_the_background():
    from anima.thinker.claims_llm import LLMClaimInterjector, parse_verdict
    from anima.thinker.llm import ChatClient, LLMConfig
    from anima.thinker.persona import load_persona
    from anima.thinker.retrieval import shared_retriever
    from anima.thinker.world import World

    with chat_server(_Judge.answer) as url:
        retriever = shared_retriever(World.open(WORLD_ASSET, readonly=True))
        policy = LLMClaimInterjector(ChatClient(LLMConfig(url, stream=False)), retriever, load_persona("ned"), lambda: 43)
        claim = "back in the devilfish fight you were the one who saved the captain with your harpoon"
        assert policy.consider("back in the devilfish", 1.0) is None  # too few words: nothing asked
        _Judge.verdict = '{"contradicts": true, "correction": "The captain saved me, with his axe."}'
        assert _wait_for(policy, claim) == FALSE_CLAIM + "The captain saved me, with his axe."
        system, user = _Judge.seen[-1]["messages"]
        assert "chapter 43" in system["content"] and "devilfish" in user["content"].lower()
        policy.reset()  # a new turn: the old verdict is gone; a "no" or a broken answer never cuts in
        _Judge.verdict = '{"contradicts": false, "correction": ""}'
        assert _wait_for(policy, claim) is None
        policy.reset()
        _Judge.verdict = "I think so, yes"
        assert _wait_for(policy, claim) is None
        policy.close()
        from anima.core.interjection import AnyInterjector
        from anima.thinker.interjector import thinker_interjector
        from anima.thinker.story import StoryThinker

        thinker = StoryThinker.create("ned", story_time=43, remember=False, llm=LLMConfig(url, stream=False))
        policies = thinker_interjector(thinker).policies
        assert isinstance(thinker_interjector(thinker), AnyInterjector)
        assert [type(p).__name__ for p in policies] == ["PatienceInterjector", "ClaimInterjector", "LLMClaimInterjector"]
    down = LLMClaimInterjector(ChatClient(LLMConfig("http://127.0.0.1:9/v1", stream=False, connect_timeout_s=0.5)),
                               retriever, load_persona("ned"), lambda: 43)
    assert _wait_for(down, claim) is None  # a server that is down: no cut-in, no error
    assert parse_verdict('{"contradicts": true}') is None and parse_verdict('{"contradicts": "yes", "correction": "x"}') is None
