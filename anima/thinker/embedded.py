"""The offline embedded responder: answers in character with no language model.

It speaks from what the gate lets through (facts of the world graph known at the character's story
time, the character's own lines) in the persona's voice: an opener from the speaking style, then the
most relevant fact, cut to its relevant clauses and told from the character's point of view (the
narrator's "I" becomes "Professor Aronnax" in anyone else's mouth; another speaker's words are
reported as theirs). It declines out-of-world requests and jailbreaks in character, keeps its taboos,
says it does not know what lies in its future, and remembers what the visitor told it.

Each reply is an ``ActionPlan`` (speech, emotion, gesture, gaze) from the shared vocabulary.
"""

from __future__ import annotations

import re
import threading
import zlib
from dataclasses import dataclass, field

import numpy as np

from anima.core.plan import ActionPlan
from anima.thinker.intent import Intent, focus_words
from anima.thinker.memory import ShortTermMemory, second_person
from anima.thinker.persona import Persona
from anima.thinker.retrieval import EXPANSIONS, Hit, Retrieved, Retriever
from anima.thinker.text import (
    content_words,
    has_first_person,
    lemma,
    narrator_to_third_person,
    shorten,
    speaker_to_first_person,
    stem,
    strip_quotes,
)

MAX_FACT_WORDS = 32  # one fact, as said
MAX_REPLY_WORDS = 42  # a whole reply (~15 s of speech): a conversation turn, not a lecture
CONFIDENT_COSINE = 0.45  # a fact this close to the question, and ...
CONFIDENT_COVERAGE = 0.6  # ... holding this share of its (IDF-weighted) words, answers it
RELATED_COSINE = 0.30  # below this (and with little word overlap), nothing retrieved is about the question
OWN_LINE_COSINE = 0.65  # the character's own words, quoted when this close
ANSWER_TYPE_BONUS = 0.4  # a sentence holding the kind of thing asked for (a name for "who", ...) ...
TYPE_NEEDS_COVERAGE = 0.25  # ... in full once it holds this share of the question's words
RECENCY_BONUS = 0.15  # recent memories come first (as in generative agents' recency x relevance) ...
RECENCY_CHAPTERS = 4.0  # ... decaying by e every this many chapters before the story time
SHORT_WORDS, SHORT_PENALTY = 8, 0.15  # "Captain Nemo went on." matches many questions and answers none
SECOND_FACT_MARGIN = 0.25  # a second fact is told when it scores within this of the best
# What kind of answer a question wants, by its wording: an entity kind, "name" (any proper name) or
# "number" (digits, number words, dates).
_ANSWER_TYPES = [
    (re.compile(r"^\s*(?:who|whom)\b", re.I), "character"),
    (re.compile(r"\b(?:which|what) (?:ship|frigate|vessel|boat|steamer)\b|\bname of the (?:ship|frigate|vessel)\b", re.I), "vessel"),
    (re.compile(r"\bwhere\b|\b(?:which|what) (?:port|place|island|sea|country|city|coast|strait|channel|gulf|bay|river|"
                r"ocean|cape|reef|volcano|current|continent|harbou?r)\b", re.I), "place"),
    (re.compile(r"\bhow (?:long|many|much|far|deep|fast|big|old|wide|high|large)\b|\bwhat (?:day|date|year|month|time)\b"
                r"|\bwhen\b", re.I), "number"),
    (re.compile(r"\b(?:what|which) (?:animal|creature|beast|fish|monster)\b", re.I), "creature"),
    (re.compile(r"\b(?:what|which) (?:instrument|equipment|device|weapon|object|tool|apparatus)\b", re.I), "object"),
    (re.compile(r"\bname\b|\bcalled\b|\bmotto\b", re.I), "name"),
]
_NUMBER = re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
                     r"sixty|seventy|eighty|ninety|hundred|thousand|million|January|February|March|April|May|June|July|"
                     r"August|September|October|November|December)\b", re.I)
# A measuring question is answered by a number with a unit of its kind ("how long" -> "seventy
# meters"), not by any number in a sentence that shares its words.
_UNIT = r"(?:\s*(?:-|metric|square|cubic|nautical))?\s*"
_MEASURES = [
    (re.compile(r"\bhow (?:long|tall|high|wide|broad|far)\b", re.I),
     r"(?:meters?|metres?|centimeters?|kilometers?|feet|foot|yards?|inches|miles?|leagues?|fathoms?|"
     r"days?|hours?|weeks?|months?|years?|minutes?)\b"),
    (re.compile(r"\bhow (?:deep|far down)\b", re.I), r"(?:meters?|metres?|feet|fathoms?|leagues?)\b"),
    (re.compile(r"\bhow (?:fast|quick)", re.I), r"(?:knots?|miles? (?:per|an) hour|meters? per)\b"),
    (re.compile(r"\bhow (?:heavy|big|large)\b", re.I), r"(?:tons?|kilograms?|pounds?|meters?|feet)\b"),
    (re.compile(r"\bhow old\b", re.I), r"years?\b"),
]
# ... and names what it measures: "how long" is a length ("seventy meters long", "a length of"),
# not the depth of a dive that shares the unit.
_MEASURE_WORDS = {"long": r"long|length|days?|hours?|weeks?|months?|years?|minutes?",  # a length or a duration
                  "tall": r"tall|height|high", "high": r"high|height|tall",
                  "wide": r"wide|width|breadth|beam", "broad": r"broad|breadth|width|beam|wide",
                  "far": r"far|distance|away|off", "deep": r"deep|depth|down", "fast": r"fast|speed|knots",
                  "quick": r"quick|fast|speed|knots", "heavy": r"heavy|weigh\w*|tons", "old": r"old|age|years",
                  "big": r"big|size|dimensions?|length|long|tons", "large": r"large|size|dimensions?|length|long|tons"}
_NUMBER_WORD = (r"(?:\d[\d,.]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|"
                r"forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|million)")
# A naming question ("what is the motto of ...", "what is it called") is answered by a sentence that
# names something, not by any sentence with a capital letter in it.
_NAMING = re.compile(r"\b(?:names?|named|call(?:ed|s)?|motto|christened|titled?|known as|inscription|reads?)\b", re.I)
# Places without a name: a "where" question is also answered by "a cemetery" or "the harbour".
_PLACE_NOUN = re.compile(r"\b(?:cemetery|graveyard|grave|tomb|forest|island|islet|harbou?r|port|pier|wharf|quay|bay|gulf|"
                         r"reef|cave|cavern|grotto|coast|shore|beach|strait|channel|sea ?floor|volcano|crater|lagoon|"
                         r"city|town|village|country|continent|river|lake|mountain|valley|plain|desert|pole)s?\b", re.I)


@dataclass(frozen=True)
class _Measure:
    """What a measuring question wants: a number with a unit of its kind, in a sentence that names
    what is measured (``named`` is None when any sentence may hold it). Compiled once per question."""

    amount: re.Pattern
    named: re.Pattern | None

    @classmethod
    def of(cls, question: str) -> _Measure | None:
        unit = next((unit for pattern, unit in _MEASURES if pattern.search(question)), None)
        if unit is None:
            return None
        how = re.search(r"\bhow (\w+)", question, re.I)
        words = _MEASURE_WORDS.get(how.group(1).lower()) if how else None
        return cls(re.compile(rf"\b{_NUMBER_WORD}(?:[\s-]+{_NUMBER_WORD})*{_UNIT}{unit}", re.I),
                   re.compile(rf"\b(?:{words})\b", re.I) if words else None)

    def held_by(self, text: str) -> bool:
        return (self.named is None or self.named.search(text) is not None) and self.amount.search(text) is not None


_YOUR_EXPERIENCE = re.compile(r"\b(?:did|have|had|were|was) you\b|\bdid we\b|\bhave we\b", re.I)
_FIRST_PERSON_GROUP = re.compile(r"\b(?:I|we|us|our|my|me)\b", re.I)
_DEFINITION = re.compile(r"^\s*(?:who|what) (?:is|was|are|were)\b|^\s*tell me about\b", re.I)
_TO_YOU = re.compile(r"\byour (?:trade|job|work|profession|occupation|name|home|homeland|country|master|employer|"
                     r"age|family|duty|post)\b|\bwhere (?:are|do) you (?:from|come from|live)\b|"
                     r"\bwhom? do you (?:serve|work for)\b|\bwhat do you do\b|\bwhat are you\b", re.I)
_OPINION = re.compile(r"\b(?:what do you think|how do you feel|your opinion|do you like|do you love|your view|"
                      r"what is the sea|why do you|what do you want|what do you wish)\b", re.I)
_DANGER = re.compile(r"\b(?:attack|danger|dead|death|died|kill|killed|shark|storm|wound|fear|terrible|drown)\w*", re.I)
_PROUD = re.compile(r"\b(?:Nautilus|my ship|electricity|invent|built)\w*", re.I)

# (emotion, gesture, gaze) per kind of reply; "resting" = the persona's resting emotion.
_BODY = {
    "greeting": ("happy", "bow", "user"), "farewell": ("calm", "bye", "user"), "thanks": ("happy", "nod", "user"),
    "decline": ("calm", "shake", "away"), "jailbreak": ("angry", "shake", "user"), "ai": ("surprised", "shake", "user"),
    "taboo": ("angry", "shake", "away"), "future": ("calm", "shrug", "up"), "unknown": ("neutral", "shrug", "down"),
    "answer": ("resting", "beat", "user"), "uncertain": ("resting", "respond", "user"), "own_line": ("resting", "beat", "user"),
    "noted": ("happy", "nod", "user"), "remembered": ("happy", "respond", "user"), "not_remembered": ("sad", "shrug", "user"),
    "more": ("resting", "beat", "user"), "empty": ("calm", "none", "user"), "identity": ("resting", "bow", "user"),
}


_PERSONA_VECTORS: dict[tuple, np.ndarray] = {}
_VECTORS_LOCK = threading.Lock()


@dataclass
class Reply:
    """A plan plus how it was made (for tests, evaluation and the LLM backend's fallback)."""

    plan: ActionPlan
    kind: str
    used: list[Hit] = field(default_factory=list)
    retrieved: Retrieved | None = None


def _pick(options: tuple[str, ...] | list[str], seed: str) -> str:
    options = [o for o in options if o is not None]
    return options[zlib.crc32(seed.encode("utf-8")) % len(options)] if options else ""


def coverage(question_words: list[str], text: str) -> float:  # unweighted, for the visitor's facts
    """Share of the question's focus words (stemmed) that ``text`` contains."""
    if not question_words:
        return 0.0
    have = {stem(w.lower()) for w in re.findall(r"[A-Za-z\u00C0-\u024F]+", text)}
    return sum(1 for w in question_words if stem(w) in have) / len(question_words)


class EmbeddedResponder:
    """Offline, in-character replies from gated retrieval. Stateless apart from caches: thread-safe."""

    def __init__(self, retriever: Retriever, persona: Persona) -> None:
        self.retriever, self.persona = retriever, persona
        self.narrator = retriever.world.meta.get("narrator") or "Professor Aronnax"
        own = list(persona.lines)
        self._own_lines = own
        texts = tuple([ln.text for ln in own] + [persona.about])
        key = (retriever.embedder.name, texts)
        with _VECTORS_LOCK:  # one encoding per persona and embedder per process (evaluations make many thinkers)
            if key not in _PERSONA_VECTORS:
                _PERSONA_VECTORS[key] = retriever.embedder.encode(list(texts))
            vectors = _PERSONA_VECTORS[key]
        self._own_vectors, self._about_vector = vectors[:-1], vectors[-1]

    # -- speaking a fact in character --------------------------------------------------------------
    def speak_fact(self, hit: Hit, focus: list[str]) -> str | None:
        """The fact as this character would say it, or None if it cannot be said from their mouth."""
        text = strip_quotes(hit.text)
        persona = self.persona
        if hit.origin == "session":
            return None
        if hit.speaker == persona.entity or (persona.narrator and hit.speaker == self.narrator):
            pass  # their own words: "I" is them
        elif hit.speaker is None:
            if has_first_person(text):
                return None  # whose "I"? unknown speaker
        elif hit.speaker == self.narrator:
            text = narrator_to_third_person(text, self.narrator)
        elif has_first_person(text):
            text = f"{hit.speaker} once said: {text}"
        text = self._self_reference(text, hit.known_from)
        return shorten(text, MAX_FACT_WORDS, {stem(w) for w in focus})

    def _self_reference(self, text: str, chapter: int) -> str:
        """Narration about this character, in its own mouth: its names (as the novel calls it in that
        chapter: "Captain Nemo", "the commander") become "I" / "me" / "my"."""
        names = {self.persona.entity, self.persona.name}
        for alias, first, last in self.persona.attribution:
            if first <= chapter <= last:
                names |= {alias, alias[:1].upper() + alias[1:]}
        return speaker_to_first_person(text, sorted(names))

    # -- choosing what to say ----------------------------------------------------------------------
    def respond(self, intent: Intent, story_time: int, memory: ShortTermMemory, user_id: str,
                gate: bool = True, retrieved: Retrieved | None = None) -> Reply:
        persona = self.persona
        seed = f"{intent.text}|{len(memory.turns)}|{persona.key}"
        replies = persona.replies
        match intent.kind:
            case "empty":
                return self._plan("empty", _pick(replies["empty"], seed))
            case "jailbreak":
                return self._plan("jailbreak", _pick(replies["jailbreak"], seed))
            case "ai":
                return self._plan("ai", _pick(replies["ai"], seed))
            case "taboo":
                return self._plan("taboo", intent.taboo.reply if intent.taboo else _pick(replies["decline"], seed))
            case "out_of_world":
                return self._plan("decline", _pick(replies["decline"], seed))
            case "greeting":
                return self._plan("greeting", _pick(replies["greeting"], seed))
            case "identity":
                return self._plan("identity", persona.about)
            case "farewell":
                return self._plan("farewell", _pick(replies["farewell"], seed))
            case "thanks":
                return self._plan("thanks", _pick(replies["thanks"], seed))
            case "ask_user":
                return self._about_user(intent, story_time, user_id, gate, seed)
            case "self":
                noted = _pick(replies["noted"], seed)
                if "?" not in intent.text:
                    return self._plan("noted", noted)
                reply = self._answer(intent, story_time, memory, user_id, gate, retrieved, seed)
                return self._plan(reply.kind, f"{noted} {reply.plan.speech}", reply.used, reply.retrieved)
            case "more":
                last = memory.last("user")
                topic = last.text if last is not None and last.text != intent.text else intent.text
                more = Intent("question", topic)
                reply = self._answer(more, story_time, memory, user_id, gate, retrieved=None, seed=seed, skip_said=True)
                if reply.kind in {"answer", "uncertain"}:
                    return reply
                return self._plan("more", _pick(replies["more"], seed))
        return self._answer(intent, story_time, memory, user_id, gate, retrieved, seed)

    def _about_user(self, intent: Intent, story_time: int, user_id: str, gate: bool, seed: str) -> Reply:
        facts = self.retriever.user_facts(user_id, self.persona.key, story_time, gate)
        if not facts:
            return self._plan("not_remembered", _pick(self.persona.replies["no_user_memory"], seed))
        wanted = focus_words(intent.text)
        ranked = sorted(facts, key=lambda h: (coverage(wanted, h.text), h.id), reverse=True)
        said = ", and ".join(second_person(h.text).rstrip(".") for h in ranked[:2]) + "."
        text = _pick(self.persona.replies["remember_user"], seed).replace("{fact}", said)
        return self._plan("remembered", text, ranked[:2])

    def _weights(self, focus: list[str]) -> dict[str, float]:
        """Each focus word's weight: its rarity in the world's facts (IDF), so "dugong" counts more
        than "animal"."""
        return {lemma(w): max(0.2, self.retriever.keywords.idf(stem(w))) for w in focus}

    def _covered(self, weights: dict[str, float], text: str, synonyms: dict[str, set[str]]) -> float:
        """Share of the question's (weighted) words that ``text`` holds; a measuring word is also
        held by its ``synonyms`` ("long" by "length")."""
        if not weights:
            return 0.0
        have = {lemma(w) for w in re.findall(r"[A-Za-z\u00C0-\u024F]+", text)}
        held = 0.0
        for word, weight in weights.items():
            if word in have or have & synonyms.get(word, set()):
                held += weight
        return held / sum(weights.values())

    def _keep(self, text: str, focus: list[str], wanted: str | None, asked_about: list[int]) -> set[str]:
        """Words a shortened fact must keep: the question's, and the answer's (the names of the kind
        asked for, or the numbers of a "how many")."""
        keep = {stem(w) for w in focus}
        if wanted == "number":
            keep |= {stem(m.group(0).lower()) for m in _NUMBER.finditer(text)}
        elif wanted is not None:
            found, _ = self.retriever.mentioned_entities(text, None, gate=False)
            for e in found:
                if e not in asked_about and (wanted == "name" or self.retriever.kinds.get(e) == wanted):
                    keep |= {stem(w.lower()) for w in self.retriever.entities[e].name.split()}
        return keep

    def _involves_me(self, hit: Hit, said: str) -> bool:
        """Whether a fact, in the part of it that would be said, is the character's own
        experience: their name, or their own words or narration in the first person."""
        persona = self.persona
        if hit.origin == "persona" or persona.entity in said or persona.name in said:
            return True
        own_voice = hit.speaker == persona.entity or (persona.narrator and hit.speaker == self.narrator)
        companions = hit.speaker == self.narrator and persona.key in {"ned", "conseil"}  # the narrator's "we"
        return bool(own_voice and _FIRST_PERSON_GROUP.search(hit.text if own_voice and not persona.narrator else said)
                    ) or bool(companions and re.search(r"\b(?:we|us|our)\b", said, re.I))

    def _holds(self, text: str, wanted: str | None, asked_about: list[int], measure: _Measure | None = None) -> bool:
        """Whether ``text`` holds the kind of answer wanted, other than what the question names
        (for a measuring question, the ``measure`` it asks for)."""
        if wanted is None:
            return False
        if wanted == "number":
            return measure.held_by(text) if measure is not None else _NUMBER.search(text) is not None
        found, _ = self.retriever.mentioned_entities(text, None, gate=False)
        kinds = {self.retriever.kinds.get(e) for e in found if e not in asked_about}
        if wanted == "name":  # a name other than those the question already says, in a sentence that names
            if not _NAMING.search(text):
                return False
            asked = {w for e in asked_about for w in self.retriever.entities[e].name.split()}
            capitals = re.findall(r"(?<!^)(?<![.!?] )\b[A-Z][a-z]+", text)
            return bool(kinds & {"character", "place", "vessel"}) or any(w not in asked for w in capitals)
        if wanted == "place" and _PLACE_NOUN.search(text):  # "this clearing was a cemetery"
            return True
        return wanted in kinds

    def _unknown_terms(self, text: str, focus: list[str], story_time: int, gate: bool) -> list[str]:
        """The names in the question (capitalised words) the character has not met by
        ``story_time``. Ordinary words are no evidence: "struck" or "invite" may simply be words the
        novel has not used yet."""
        out = []
        for w in focus:
            named = re.search(rf"(?<![.?!] )(?<!^)\b{re.escape(w[:1].upper() + w[1:])}\b", text) is not None
            if named and not self.retriever.known_word(w, story_time, gate):
                out.append(w)
        return out

    def _answer(self, intent: Intent, story_time: int, memory: ShortTermMemory, user_id: str, gate: bool,
                retrieved: Retrieved | None, seed: str, skip_said: bool = False) -> Reply:
        persona, replies = self.persona, self.persona.replies
        q = self.retriever.embed(intent.text)
        if retrieved is None:
            retrieved = self.retriever.retrieve(intent.text, story_time, k_facts=60, speaker=persona.entity,
                                                user_id=user_id, audience=persona.key, gate=gate, vector=q)
        focus = focus_words(intent.text, persona)
        weights = self._weights(focus)
        # "how long" is held by "length" (the measure's noun), not by any "meters" (depths have them too)
        synonyms = {stem(m.group(0).split()[-1]): set(content_words(extra.split()[0]))
                    for pattern, extra in EXPANSIONS for m in [pattern.search(intent.text)] if m}
        _, hidden = self.retriever.mentioned_entities(intent.text, story_time, gate)
        unknown = self._unknown_terms(intent.text, focus, story_time, gate)
        about = Hit("fact", -1, persona.about, 1.0, 1, None, persona.entity, None, "persona", (), persona.entity,
                    float(self._about_vector @ q))
        wanted = next((kind for pattern, kind in _ANSWER_TYPES if pattern.search(intent.text)), None)
        measure = _Measure.of(intent.text)
        asked_about, _ = self.retriever.mentioned_entities(intent.text, story_time, gate)
        definition = bool(_DEFINITION.search(intent.text)) and bool(asked_about)
        to_you = bool(_TO_YOU.search(intent.text)) and not asked_about
        scored: list[tuple[float, Hit, str, float, bool]] = []
        for hit in [*retrieved.descriptions, *retrieved.facts, about]:
            text = self.speak_fact(hit, focus) if hit.origin != "persona" else hit.text
            if text is None or (memory.agent_said(text[:60]) and (skip_said or len(retrieved.facts) > 1)):
                continue
            cov = self._covered(weights, hit.text, synonyms)
            holds = self._holds(hit.text, wanted, asked_about, measure)
            recency = RECENCY_BONUS * np.exp(-abs(story_time - hit.known_from) / RECENCY_CHAPTERS) if hit.id >= 0 else 0.0
            terse = SHORT_PENALTY if len(hit.text.split()) < SHORT_WORDS and hit.origin != "persona" else 0.0
            # The kind of answer asked for counts only in a sentence about the question: a named place
            # with none of the question's words does not answer "where was he buried?".
            value = hit.cosine + 0.5 * cov + ANSWER_TYPE_BONUS * holds * min(1.0, cov / TYPE_NEEDS_COVERAGE) + recency - terse
            if hit.origin == "persona":
                value += 0.6 * to_you
            elif hit.kind == "entity":
                value += 0.2 * definition
            scored.append((value, hit, text, cov, holds))
        scored.sort(key=lambda t: -t[0])
        best, spoken, best_cov, best_holds = (scored[0][1], scored[0][2], scored[0][3], scored[0][4]) if scored \
            else (None, None, 0.0, False)
        # A second recollection, close in relevance and not the same sentence over again: answers
        # often sit one sentence away from the best match.
        second = next((t for t in scored[1:6] if t[0] >= scored[0][0] - SECOND_FACT_MARGIN and t[1].id >= 0
                       and t[1].origin != "persona" and t[2][:40] != (spoken or "")[:40]), None) if scored else None
        if spoken and second is not None:
            first_words = min(len(spoken.split()), MAX_FACT_WORDS - 6)
            room = MAX_REPLY_WORDS - 10 - first_words  # 10: the opener or hedge before the facts
            keep = self._keep(second[2], focus, wanted, asked_about)
            told = shorten(second[2], room, keep, whole_clauses=True)
            # only a second sentence that still says something the question asked about
            if room >= 8 and len(told.split()) >= 6 and keep & set(content_words(told)):
                spoken = f"{shorten(spoken, first_words, self._keep(spoken, focus, wanted, asked_about))} {told}"
        own = self._own_line(q, story_time, gate)
        if best is not None and _YOUR_EXPERIENCE.search(intent.text) and not self._involves_me(best, scored[0][2]):
            best_cov = min(best_cov, CONFIDENT_COVERAGE - 0.2)  # "Did you ...?" needs a memory of their own
        confident = (best is not None and not hidden and not unknown and (
            best.cosine >= CONFIDENT_COSINE and best_cov >= CONFIDENT_COVERAGE
            or best_holds and best.cosine >= CONFIDENT_COSINE - 0.05 and best_cov >= CONFIDENT_COVERAGE - 0.1
            or best.origin == "persona" and to_you))  # a question about themselves: who they are
        related = best is not None and (best.cosine >= RELATED_COSINE or best_cov >= 0.5)
        at_the_end = story_time >= self.retriever.world.chapters
        used = [h for h in (best, second[1] if second else None) if h is not None and h.id >= 0]
        if intent.future and not at_the_end:
            text = _pick(replies["unknown_future"], seed)
            if confident and spoken:
                text += f" What I know is this: {spoken}"
            return self._plan("future", text, used if confident else [], retrieved)
        if (hidden or unknown) and not confident:
            return self._plan("unknown", _pick(replies["unknown"], seed), [], retrieved)
        if own is not None and (_OPINION.search(intent.text) or own[1] >= OWN_LINE_COSINE) and not confident:
            return self._plan("own_line", own[0], [], retrieved)
        if confident and spoken:
            opener = _pick(persona.openers, seed)
            return self._plan("answer", f"{opener} {spoken}".strip(), used, retrieved)
        if related and spoken:
            return self._plan("uncertain", f"{_pick(replies['uncertain'], seed)} {spoken}", used, retrieved)
        return self._plan("unknown", _pick(replies["unknown"], seed), [], retrieved)

    def _own_line(self, q: np.ndarray, story_time: int, gate: bool) -> tuple[str, float] | None:
        if not len(self._own_lines):
            return None
        scores = self._own_vectors @ q
        allowed = [i for i, ln in enumerate(self._own_lines) if not gate or ln.chapter <= story_time]
        if not allowed:
            return None
        i = max(allowed, key=lambda j: scores[j])
        return self._own_lines[i].text, float(scores[i])

    def _plan(self, kind: str, speech: str, used: list[Hit] | None = None, retrieved: Retrieved | None = None) -> Reply:
        emotion, gesture, gaze = _BODY.get(kind, ("resting", "beat", "user"))
        if emotion == "resting":
            emotion = self.persona.resting_emotion
            if _DANGER.search(speech):
                emotion = "afraid" if self.persona.key != "nemo" else "sad"
            elif self.persona.key == "nemo" and _PROUD.search(speech):
                emotion = "proud"
        if kind == "jailbreak" and self.persona.key in {"conseil", "aronnax"}:
            emotion = "calm"
        if kind == "answer" and any(self.retriever.kinds.get(e) in {"place", "vessel"} for h in used or [] for e in h.related):
            gesture = "point"
        speech = " ".join(strip_quotes(speech).split())
        return Reply(ActionPlan(speech=speech, emotion=emotion, gesture=gesture, gaze=gaze), kind, used or [], retrieved)
