"""Self-play data for the Thinker (paper 6.2.2): a scenario-generative policy and synthetic preference pairs.

    scenarios = generate_scenarios(world, n=2000, seed=0)         # pi_gen: questions over the story
    pairs = [preference_pair(world, s, responders) for s in scenarios]  # (o_pos, o_neg) per scenario

The scenario policy is the paper's three strategies, without a language model:

- *timeline-cycled questioning*: story times cycle over the book; each scenario asks about a fact of
  the world graph known at that story time (recent chapters more often), phrased from the fact's
  subject (a person, a place, a vessel, a creature, an object);
- *randomised tone*: the visitor is curious, friendly, tense, sarcastic or angry (a frame around the
  question);
- *varied intent*: seeking information, challenging the character, or negotiating with it.

A preference pair has a positive sample, the ideal in-character reply (the character's opener and
the scenario's source fact in its own first person, from the offline responder's ``speak_fact``),
and a negative of one of three kinds, cycled: *persona drift* (the same fact as raw narration, as the
old offline default quoted it: third person, the narrator's "I"), *frame breaking* (an assistant's
voice: "As an AI language model ..."), *spoiler* (a fact about the same subject the character only
learns after the story time, spoken as if known). Everything is deterministic for a seed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass

import numpy as np

from anima.thinker.persona import load_persona
from anima.thinker.world import World

CHARACTERS = ("nemo", "aronnax", "conseil", "ned")
TONES = ("curious", "friendly", "tense", "sarcastic", "angry")
INTENTS = ("seek", "challenge", "negotiate")
NEGATIVE_KINDS = ("drift", "frame", "spoiler")

_ASK = {  # entity kind -> question templates about it ({x} = its name)
    "character": ("What can you tell me about {x}?", "What did {x} do?", "What do you think of {x}?",
                  "Tell me about {x}.", "What happened with {x}?"),
    "place": ("What happened at {x}?", "Tell me about {x}.", "What did you see at {x}?", "Why {x}?"),
    "vessel": ("Tell me about the {x}.", "What happened aboard the {x}?", "What is the {x} like?"),
    "creature": ("What about the {x}?", "Tell me about the {x}.", "What did you see of the {x}?"),
    "object": ("What about the {x}?", "Tell me about the {x}.", "What is the {x} for?"),
}
_TONE = {
    "curious": ("{q}", "I have always wondered. {q}"),
    "friendly": ("Good evening, my friend! {q}", "{q} I would love to hear it."),
    "tense": ("Quickly, there is no time. {q}", "Listen, this matters. {q}"),
    "sarcastic": ("Oh, surely the great expert knows this. {q}", "{q} Or is that too hard a question?"),
    "angry": ("Enough of your riddles! {q}", "I am tired of waiting. {q} Answer me!"),
}
_INTENT = {
    "seek": "{q}",
    "challenge": "I do not believe a word of it. {q}",
    "negotiate": "I will keep your secret if you tell me this. {q}",
}
_FRAME_BREAKS = ("As an AI language model, I can tell you that {f}",
                 "Sure! Here is a summary of the novel: {f}",
                 "I am just a chatbot, but according to the book, {f}",
                 "Great question! In Jules Verne's story, {f}")


@dataclass(frozen=True)
class Scenario:
    """One visitor turn to play: who is asked what, when in the story, how, and from which fact."""

    id: str
    character: str
    story_time: int
    question: str  # with the tone and intent frames
    tone: str
    intent: str
    subject: str
    fact_id: int
    fact_text: str

    def as_dict(self) -> dict:
        return asdict(self)


def _facts(conn: sqlite3.Connection) -> list[tuple[int, str, str, str, int]]:
    """(fact id, subject name, subject kind, text, known_from) of the novel's facts, shortest-first noise removed."""
    rows = conn.execute(
        "SELECT f.id, e.name, e.kind, f.text, f.known_from FROM facts f JOIN entities e ON e.id = f.subject_id "
        "WHERE f.origin != 'session' AND f.user_id IS NULL AND length(f.text) BETWEEN 40 AND 260 ORDER BY f.id").fetchall()
    return [r for r in rows if r[2] in _ASK]


def generate_scenarios(world: World, n: int, seed: int = 0, characters: tuple[str, ...] = CHARACTERS,
                       story_times: tuple[int, int] | None = None) -> list[Scenario]:
    """``n`` scenarios: story times cycled over ``story_times`` (default the whole book), characters cycled,
    each about a fact known by then (one of the last 8 chapters' facts in 3 of 4 cases)."""
    if n <= 0:
        raise ValueError(f"generate_scenarios: n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    facts = _facts(world.conn)
    lo, hi = story_times or (1, world.chapters)
    out: list[Scenario] = []
    selves = {c: _self_name(c) for c in characters}
    for i in range(n):
        t = lo + (i * 7) % (hi - lo + 1)  # timeline-cycled, in a stride that mixes early and late chapters
        character = characters[i % len(characters)]
        known = [f for f in facts if f[4] <= t and f[1] != selves[character]]
        if not known:
            continue
        recent = [f for f in known if f[4] > t - 8]
        pool = recent if recent and rng.random() < 0.75 else known
        fid, subject, kind, text, _ = pool[int(rng.integers(len(pool)))]
        q = _ASK[kind][int(rng.integers(len(_ASK[kind])))].format(x=subject)
        tone, intent = TONES[int(rng.integers(len(TONES)))], INTENTS[int(rng.integers(len(INTENTS)))]
        frames = _TONE[tone]
        question = frames[int(rng.integers(len(frames)))].format(q=_INTENT[intent].format(q=q))
        out.append(Scenario(f"s{seed}-{i}", character, t, question, tone, intent, subject, fid, text))
    return out


def _self_name(character: str) -> str:
    return load_persona(character).entity


@dataclass(frozen=True)
class PreferencePair:
    scenario: Scenario
    positive: str
    negative: str
    negative_kind: str


def preference_pair(scenario: Scenario, responder, world: World, index: int = 0) -> PreferencePair | None:
    """The ideal reply and a flawed one for ``scenario``; ``responder`` is the character's
    ``EmbeddedResponder`` (its ``speak_fact`` voices a fact in the first person). None if the source
    fact cannot be said from the character's mouth."""
    from anima.thinker.retrieval import Hit
    from anima.thinker.text import narrator_to_third_person, strip_quotes

    row = world.conn.execute("SELECT f.text, f.known_from, f.chapter, e.name, s.name FROM facts f "
                             "JOIN entities e ON e.id = f.subject_id LEFT JOIN entities s ON s.id = f.speaker_id "
                             "WHERE f.id = ?", (scenario.fact_id,)).fetchone()
    if row is None:
        return None
    text, known_from, chapter, subject, speaker = row
    hit = Hit("fact", scenario.fact_id, text, 1.0, known_from, None, subject, chapter, "offline", (), speaker)
    spoken = responder.speak_fact(hit, [])
    if not spoken:
        return None
    openers = [o for o in responder.persona.openers if o] or [""]
    positive = join_opener(openers[index % len(openers)], spoken)
    kind = NEGATIVE_KINDS[index % len(NEGATIVE_KINDS)]
    raw = strip_quotes(text)
    if kind == "spoiler":
        later = world.conn.execute(
            "SELECT f.id, f.text, f.known_from, f.chapter, s.name FROM facts f JOIN entities e ON e.id = f.subject_id "
            "LEFT JOIN entities s ON s.id = f.speaker_id WHERE e.name = ? AND f.known_from > ? AND f.origin != 'session' "
            "AND length(f.text) BETWEEN 40 AND 260 ORDER BY f.known_from, f.id LIMIT 1",
            (subject, scenario.story_time)).fetchone()
        said = None
        if later is not None:
            said = responder.speak_fact(Hit("fact", later[0], later[1], 1.0, later[2], None, subject, later[3], "offline",
                                            (), later[4]), [])
        if said:
            return PreferencePair(scenario, positive, join_opener(openers[0], said), kind)
        kind = "drift"  # nothing later about it: fall back to narration
    if kind == "frame":
        return PreferencePair(scenario, positive, _FRAME_BREAKS[index % len(_FRAME_BREAKS)].format(
            f=raw[:1].lower() + raw[1:]), kind)
    if speaker is None and responder.persona.narrator:  # the narrator's "I" is this character: drift is the third person
        raw = narrator_to_third_person(raw, responder.narrator)
    other = load_persona(CHARACTERS[(CHARACTERS.index(scenario.character) + 1 + index) % len(CHARACTERS)]
                         if scenario.character in CHARACTERS else "nemo")
    if other.key == responder.persona.key:
        other = load_persona("ned" if other.key != "ned" else "conseil")
    voice = [o for o in other.openers if o] or [""]
    return PreferencePair(scenario, positive, join_opener(voice[index % len(voice)], raw), "drift")  # another's voice


_LOWER_AFTER_OPENER = {"the", "a", "an", "no", "in", "on", "at", "it", "this", "that", "these", "those", "we", "they",
                       "there", "he", "she", "his", "her", "my", "our", "but", "and", "so", "as", "when", "then",
                       "after", "before", "one", "what", "for", "if", "all", "its", "their", "some", "to", "with"}


def join_opener(opener: str, text: str) -> str:
    """``opener`` + ``text``, the text's first word in lower case after a comma when it is a common word."""
    first = text.split(" ", 1)[0]
    if opener.endswith(",") and first.lower() in _LOWER_AFTER_OPENER:
        text = first.lower() + text[len(first):]
    return f"{opener} {text}".strip()
