"""The character cuts a visitor off: persona budgets, the Thinker's opener, the server's switch."""

import pytest

from anima.core.interjection import PatienceInterjector
from anima.thinker.base import ThinkerContext
from anima.thinker.interjector import cut_in_opener, persona_interjector
from anima.thinker.persona import PersonaError, load_persona, parse_persona


def test_each_persona_has_its_own_patience():
    patience = {k: load_persona(k).interrupts.patience_s for k in ("ned", "nemo", "aronnax", "conseil")}
    assert patience["ned"] < patience["nemo"] < patience["aronnax"] < patience["conseil"]  # Ned Land cuts in soonest
    ned = persona_interjector(load_persona("ned"))
    assert isinstance(ned, PatienceInterjector)
    assert ned.consider("and then we went", 6.0) is None and ned.consider("and then we went", 7.5) == "patience"
    assert ned.consider("I saw a harpoon", 1.0) == "urgent: harpoon"
    assert cut_in_opener(load_persona("ned"), "patience") in load_persona("ned").interrupts.cut_in


def test_bad_interrupts_block_is_named():
    import yaml

    from anima.thinker.persona import PERSONA_DIR

    data = yaml.safe_load((PERSONA_DIR / "ned.yaml").read_text())
    data["interrupts"] = {"patience_s": -3}
    with pytest.raises(PersonaError, match="patience_s"):
        parse_persona(data)
    data["interrupts"] = {"patience": 3}
    with pytest.raises(PersonaError, match="interrupts"):
        parse_persona(data)


def test_the_story_thinker_says_it_cuts_in():
    from anima.thinker.story import StoryThinker

    ned = StoryThinker.create("ned")
    plan = ned.respond("so my uncle had a farm near Quebec and every summer we", ThinkerContext(interjection="patience"))
    assert any(plan.speech.startswith(p) for p in load_persona("ned").interrupts.cut_in), plan.speech
    plain = ned.respond("Where are we now?", ThinkerContext())
    assert not any(plain.speech.startswith(p) for p in load_persona("ned").interrupts.cut_in)


def test_the_server_gives_the_character_its_interjector(tmp_path, monkeypatch):
    from anima.core.duplex import TurnTaking
    from anima.registry import AgentChoice
    from anima.serve.app import ServeConfig, _build_stages
    from anima.serve.live import ClientSink
    from anima.thinker.story import StoryThinker

    monkeypatch.setenv("ANIMA_HOME", str(tmp_path))
    thinker = StoryThinker.create("conseil")
    for on in (True, False):
        stages, _ = _build_stages(ServeConfig(port=0, asr="none", agent_interrupts=on), AgentChoice(thinker="story"),
                                  thinker, ClientSink(lambda m: None))
        turns = next(s for s in stages if isinstance(s, TurnTaking))
        assert (turns.interjector is not None) == on
        if on:  # the persona's patience and urgent words first, then the world's canon at the story time
            patience, claims = turns.interjector.policies
            assert patience.patience_s == load_persona("conseil").interrupts.patience_s
            assert claims.listener == "conseil" and claims.story_time() == thinker.story_time
