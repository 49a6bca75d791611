"""Does what the visitor is saying contradict the character's world at its story time?

    canon = load_canon(world_path)                       # the world's <name>.canon.yaml, or None
    checker = ClaimChecker(canon)
    found = checker.check("you're french aren't you", listener="ned", story_time=12)
    found.correction                                     # "I am a Canadian, not french."

The world database holds the novel's facts as sentences, and no offline model here can tell whether
a sentence entails or contradicts another. What *can* be checked without one is a claim with a
closed set of alternatives: a nationality, a trade, what a ship is and what drives it, who commands
it, which ship someone is aboard now, a length or a speed. The canon file lists those facts with
the story time from which the character knows them and the sentence of the novel that says so; the
checker reads the visitor's words (a streaming transcript: lower case, no punctuation is fine),
binds each value it hears to the entity it is said of, and reports the first one that contradicts.

It is deliberately narrow: it misses claims it has no slot for (events: "Ned saved you from
drowning"), and it stays silent on questions, on anything the character does not know yet (a name
unknown at the story time binds nothing), and on a value it cannot bind to a subject. A claim is a
statement: a clause opening with an auxiliary or a wh-word is a question and is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

VALUE_SLOTS = ("nationality", "trade", "kind", "power")
QUANTITY_SLOTS = ("length", "speed")
SLOTS = (*VALUE_SLOTS, *QUANTITY_SLOTS, "commands", "aboard")
COPULA = {"is", "are", "am", "was", "were", "'s", "be", "been", "became", "becomes", "being"}
NEGATION = {"not", "never", "no"}
QUESTION_OPENERS = {"is", "are", "am", "was", "were", "do", "does", "did", "can", "could", "would", "will", "shall",
                    "should", "may", "might", "have", "has", "had", "what", "who", "whom", "whose", "where", "when",
                    "why", "how", "which", "isn", "aren", "wasn", "weren"}
CLAUSE_BREAKS = {",", ".", "?", "!", ";", ":", "and", "but", "so", "because", "while", "although", "though",
                 "whereas", "or", "if", "unless"}
FILLER = {"a", "an", "the", "really", "actually", "just", "only", "truly", "certainly", "surely", "clearly", "obviously",
          "of", "course", "simply", "merely", "also", "too", "still", "some", "kind", "sort", "famous", "proud",
          "humble", "born", "true", "real", "great", "old", "young", "good", "fine", "mere", "little", "big", "plain",
          "genuine", "typical", "trained", "former", "retired", "professional", "ordinary", "simple"}
UNITS = {  # unit words -> (slot, factor to the canon's unit)
    "meters": ("length", 1.0), "metres": ("length", 1.0), "meter": ("length", 1.0), "metre": ("length", 1.0),
    "feet": ("length", 0.3048), "foot": ("length", 0.3048), "yards": ("length", 0.9144), "yard": ("length", 0.9144),
    "knots": ("speed", 1.1508), "knot": ("speed", 1.1508),
    "miles an hour": ("speed", 1.0), "miles per hour": ("speed", 1.0), "mph": ("speed", 1.0),
    "kilometers an hour": ("speed", 0.6214), "kilometers per hour": ("speed", 0.6214),
    "kilometres an hour": ("speed", 0.6214), "kilometres per hour": ("speed", 0.6214),
}
CANON_UNITS = {"meters": 1.0, "miles per hour": 1.0}  # the units canon facts are written in (the factors above)
COMMAND_VERBS = {"commands", "commanded", "captains", "captained", "skippers", "skippered", "runs", "ran", "leads", "led"}
COMMAND_ROLES = {"captain", "commander", "master", "skipper", "chief"}
CRAFT_NOUNS = {"ship", "vessel", "frigate", "submarine", "boat", "command"}
POWER_CUES = {"runs", "run", "ran", "running", "powered", "driven", "propelled", "moved", "burns", "burn", "burned",
              "uses", "use", "used", "fueled", "fuelled", "works", "worked", "operates", "goes", "moves", "sails",
              "power", "engine", "engines", "fuel", "force", "energy"}
PRONOUN = "*"  # marks a mention made by a pronoun ("@ned*"): no modifier can stand before it
POSSESSIVE = "'s:of"  # "your", "his", "its": a possessive, never a copula ("'s" after a name may be either)
PHRASE_ENDS = {"on", "in", "at", "to", "toward", "towards", "for", "from", "with", "near", "by", "of", "that", "which",
               "who", "where", "when", "than", "like", "about", "into", "onto", "after", "before"}
CAPABILITY = {"can", "could", "cannot", "only", "most", "maximum", "max", "top", "fastest", "best", "full", "limit"}
ABOARD = {"aboard", "on", "in", "onboard", "inside", "board"}
PRESENT = {"is", "are", "am", "'s"}
_NUMBERS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
            "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
            "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
            "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?|'s|[,.?!;:]")
_CONTRACTIONS = [(re.compile(r"n't\b"), " not"), (re.compile(r"\bcan not\b"), "cannot"), (re.compile(r"'re\b"), " are"),
                 (re.compile(r"'m\b"), " am"), (re.compile(r"'ve\b"), " have"), (re.compile(r"'ll\b"), " will"),
                 (re.compile(r"'d\b"), " would"), (re.compile(r"\bwon not\b"), "will not")]


FALSE_CLAIM = "false claim: "  # the cut-in reason's prefix; what follows is the character's correction


class CanonError(ValueError):
    """A canon file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Entity:
    key: str
    names: tuple[tuple[str, ...], ...]
    display: str
    pronoun: str = "he"
    known_from: int = 1
    always_known_to: tuple[str, ...] = ()
    character: str | None = None
    vessel: bool = False

    def known(self, listener: str, story_time: int) -> bool:
        return story_time >= self.known_from or listener in self.always_known_to


@dataclass(frozen=True)
class Fact:
    about: str
    slot: str
    value: object  # tuple of value keys | entity key | number | ((vessel, from, until), ...)
    known_from: int
    says: str = ""
    says_self: str = ""
    unit: str = ""
    tolerance: float = 1.0
    bound: str = ""  # "max": the value is a most (a top speed), anything less is not a contradiction by itself
    source: tuple[int, str] = (0, "")

    def phrase(self, listener: str) -> str:
        """The fact as the character says it (first person when it is about the character)."""
        return self.says_self if (self.says_self and listener == self.about) else self.says


@dataclass
class Canon:
    """A world's checkable facts (see ``anima/assets/worlds/*.canon.yaml``)."""

    world: str
    entities: dict[str, Entity]
    slots: dict[str, dict[str, tuple[tuple[str, ...], ...]]]  # slot -> value key -> word sequences
    displays: dict[tuple[str, str], str]  # (slot, value key) -> how a correction names it
    facts: list[Fact] = field(default_factory=list)

    def fact(self, about: str, slot: str, story_time: int) -> Fact | None:
        for f in self.facts:
            if f.about == about and f.slot == slot and story_time >= f.known_from:
                return f
        return None

    def entity_of_character(self, character: str) -> str | None:
        return next((e.key for e in self.entities.values() if e.character == character), None)


@dataclass(frozen=True)
class Contradiction:
    """One claim the visitor made that the canon contradicts."""

    slot: str
    about: str  # entity key
    claimed: str  # the visitor's words for the value
    fact: Fact
    correction: str  # what the character says back ("I am a Canadian, not French.")
    words: tuple[str, ...]  # the visitor's words that made the claim decidable (its last is when)

    @property
    def reason(self) -> str:
        """The runtime's cut-in reason (``ThinkerContext.interjection``)."""
        return FALSE_CLAIM + self.correction


def _key(token: str) -> str:
    """The entity key of a mention token ("@ned" or "@ned*")."""
    return token[1:].rstrip(PRONOUN)


def _words(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text.lower()))


def load_canon(path: str | Path) -> Canon:
    """Read a canon YAML file; ``CanonError`` names what is wrong."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CanonError(f"{path}: cannot read the canon: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("entities"), dict) or not isinstance(raw.get("facts"), list):
        raise CanonError(f"{path}: a canon needs 'entities' (a mapping) and 'facts' (a list)")
    entities = {}
    for key, e in raw["entities"].items():
        if not isinstance(e, dict) or not e.get("names"):
            raise CanonError(f"{path}: entity {key!r} needs a list of names")
        entities[key] = Entity(key, tuple(_words(n) for n in e["names"]), str(e.get("display", key)), e.get("pronoun", "he"),
                               int(e.get("known_from", 1)), tuple(e.get("always_known_to", ())), e.get("character"),
                               bool(e.get("vessel", False)))
    slots, displays = {}, {}
    for slot, values in (raw.get("slots") or {}).items():
        if slot not in VALUE_SLOTS:
            raise CanonError(f"{path}: unknown slot {slot!r} (one of {', '.join(VALUE_SLOTS)})")
        slots[slot] = {}
        for value, spec in values.items():
            if not isinstance(spec, dict) or not spec.get("words"):
                raise CanonError(f"{path}: slot {slot!r} value {value!r} needs 'words'")
            slots[slot][value] = tuple(_words(w) for w in spec["words"])
            displays[(slot, value)] = str(spec.get("display", value))
    facts = []
    for i, f in enumerate(raw["facts"]):
        where = f"{path}: fact {i + 1}"
        if not isinstance(f, dict) or f.get("about") not in entities or f.get("slot") not in SLOTS:
            raise CanonError(f"{where}: needs 'about' (an entity) and 'slot' (one of {', '.join(SLOTS)})")
        slot, value = f["slot"], f.get("value")
        if slot in VALUE_SLOTS:
            if not isinstance(value, list) or any(v not in slots.get(slot, {}) for v in value):
                raise CanonError(f"{where}: 'value' must list values of slot {slot!r}")
            value = tuple(value)
        elif slot == "commands":
            if value not in entities:
                raise CanonError(f"{where}: 'value' must be an entity")
        elif slot in QUANTITY_SLOTS:
            if not isinstance(value, (int, float)) or f.get("unit") not in CANON_UNITS:
                raise CanonError(f"{where}: 'value' must be a number and 'unit' one of {sorted(CANON_UNITS)}")
        else:  # aboard
            if not isinstance(value, list) or any(not isinstance(v, list) or len(v) != 3 or v[0] not in entities for v in value):
                raise CanonError(f"{where}: 'value' must list [vessel, from, until] triples")
            value = tuple((v[0], int(v[1]), int(v[2])) for v in value)
        source = f.get("source") or {}
        facts.append(Fact(f["about"], slot, value, int(f.get("known_from", 1)), str(f.get("says", "")),
                          str(f.get("says_self", "")), str(f.get("unit", "")), float(f.get("tolerance", 1.0)),
                          str(f.get("bound", "")), (int(source.get("chapter", 0)), str(source.get("quote", "")))))
    return Canon(str(raw.get("world", path.stem)), entities, slots, displays, facts)


def canon_for_world(world_path: str | Path) -> Canon | None:
    """The canon shipped for a world database (``NAME.canon.yaml`` beside it or beside the shipped world)."""
    from anima.thinker.world import SHIPPED_WORLDS

    world_path = Path(world_path)
    name = world_path.name.removesuffix(".db")
    for candidate in (world_path.with_name(f"{name}.canon.yaml"), SHIPPED_WORLDS / f"{name}.canon.yaml"):
        if candidate.is_file():
            return load_canon(candidate)
    return None


def parse_number(words: Sequence[str]) -> tuple[float, int] | None:
    """A number at the start of ``words`` ("two hundred and fifty", "70", "a hundred"): (value, words used)."""
    total, current, used, seen = 0.0, 0.0, 0, False
    for i, w in enumerate(words):
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", w):
            if seen:
                break
            current, seen, used = float(w), True, i + 1
        elif w in _NUMBERS:
            current, seen, used = current + _NUMBERS[w], True, i + 1
        elif w in _SCALES and (seen or (i > 0 and words[i - 1] == "a")):
            current = (current or 1) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total, current = total + current, 0.0
            seen, used = True, i + 1
        elif w == "a" and i == 0:
            continue
        elif w == "and" and seen:
            continue
        else:
            break
    return (total + current, used) if seen else None


class ClaimChecker:
    """Finds the first statement in a transcript that contradicts ``canon`` for ``listener`` at ``story_time``."""

    def __init__(self, canon: Canon) -> None:
        self.canon = canon
        names = [(n, e.key) for e in canon.entities.values() for n in e.names]
        self._names = sorted(names, key=lambda x: -len(x[0]))
        self._values = {slot: sorted(((w, v) for v, ws in values.items() for w in ws), key=lambda x: -len(x[0]))
                        for slot, values in canon.slots.items()}

    # ---- reading the transcript -------------------------------------------------------------
    def _tokens(self, text: str, listener_key: str | None, listener: str, story_time: int) -> list[str]:
        """Lower-case tokens with entity mentions replaced by ``@key`` (you/we -> the listener, he/it -> the last)."""
        text = text.lower().replace("\u2019", "'").replace("\u2014", " , ").replace("-", " ")
        for pattern, repl in _CONTRACTIONS:
            text = pattern.sub(repl, text)
        raw = _TOKEN.findall(text)
        out: list[str] = []
        last = {"he": None, "it": None}
        i = 0
        while i < len(raw):
            for name, key in self._names:
                n = len(name)
                if tuple(raw[i:i + n]) == name:
                    entity = self.canon.entities[key]
                    if entity.known(listener, story_time):
                        out.append("@" + key)
                        last[entity.pronoun] = key
                    else:
                        out.append("@?")  # a name the character does not know yet: binds nothing
                    i += n
                    break
            else:
                w = raw[i]
                if w in ("you", "yourself", "your", "yours") and listener_key:
                    out.append("@" + listener_key + PRONOUN)
                    if w == "your":
                        out.append(POSSESSIVE)
                elif w in ("we", "us", "our") and listener_key:
                    out.append("@we")
                elif w in ("he", "him", "his", "himself") and last["he"] and last["he"] != listener_key:
                    out.append("@" + last["he"] + PRONOUN)
                    if w == "his":
                        out.append(POSSESSIVE)
                elif w in ("it", "its", "itself") and last["it"]:
                    out.append("@" + last["it"] + PRONOUN)
                    if w == "its":
                        out.append(POSSESSIVE)
                else:
                    out.append(w)
                i += 1
        return out

    @staticmethod
    def _clauses(tokens: list[str]) -> list[list[str]]:
        clauses, current = [], []
        for t in tokens:
            if t in CLAUSE_BREAKS:
                if current:
                    clauses.append(current)
                current = []
                if t == "?" and clauses:
                    clauses[-1] = []  # the clause just ended was a question
            else:
                current.append(t)
        if current:
            clauses.append(current)
        return [c for c in clauses if c]

    def _value_at(self, slot: str, clause: list[str], i: int) -> tuple[frozenset[str], int] | None:
        for words, _ in self._values.get(slot, ()):
            if tuple(clause[i:i + len(words)]) == words:
                values = frozenset(v for w, v in self._values[slot] if w == words)
                return values, len(words)
        return None

    # ---- the check ----------------------------------------------------------------------------
    def check(self, text: str, listener: str, story_time: int) -> Contradiction | None:
        """The first contradiction in ``text`` said to ``listener`` (a character key) at ``story_time``, or None."""
        listener_key = self.canon.entity_of_character(listener)
        tokens = self._tokens(text, listener_key, listener, story_time)
        for clause in self._clauses(tokens):
            if clause[0] in QUESTION_OPENERS:
                continue
            for finder in (self._attribute, self._commands, self._quantity, self._aboard):
                found = finder(clause, listener, listener_key, story_time)
                if found:
                    return found
        return None

    def _subject_value(self, clause: list[str], start: int) -> tuple[int, bool, tuple[str, ...]] | None:
        """After a subject at ``start - 1``: where the complement of its verb starts, whether it is negated, and
        the slots that verb can state (a copula: any; "runs on", "powered by": what drives it)."""
        j, negated, copula, power = start, False, False, False
        while j < len(clause) and j - start < 6:
            t = clause[j]
            if t in COPULA or t in ("remains", "remained", "born") or (
                    t == "as" and j > start and clause[j - 1] in ("works", "worked", "serves", "served", "sailed")):
                copula = True  # "as" only after a verb of trade: "introduced himself to you as ..." binds nothing
            elif t in ("works", "worked", "serves", "served", "sailed"):
                pass
            elif t in POWER_CUES or t in ("on", "by", "with", "off"):
                power = True
            elif t in NEGATION or t == "longer":
                negated = not negated if t != "longer" else negated
            elif t in ("i", "think", "believe", "heard", "suppose", "guess", "know", "said", "that", "say", "says"):
                pass
            else:
                break
            j += 1
        if not (copula or power):
            return None
        return j, negated, VALUE_SLOTS if copula else ("power",)

    def _attribute(self, clause, listener, listener_key, story_time) -> Contradiction | None:
        for i, t in enumerate(clause):
            if not t.startswith("@") or t in ("@?", "@we"):
                continue
            about = _key(t)
            complement = self._subject_value(clause, i + 1)
            spans = []
            if complement:
                j, negated, slots = complement
                k = j
                while k < len(clause) and k - j < 5 and not clause[k].startswith("@"):
                    spans.append((k, negated, slots))  # the complement's noun phrase: a value may start here
                    if clause[k] in PHRASE_ENDS or clause[k].endswith("ing"):
                        break
                    k += 1
            if not t.endswith(PRONOUN):  # "the french harpooner @ned": values right before a name
                for slot in VALUE_SLOTS:
                    for n in (1, 2):
                        hit = self._value_at(slot, clause, i - n) if i - n >= 0 else None
                        if hit and hit[1] == n:
                            spans.append((i - n, False, (slot,)))
                        if n == 1 and hit and i >= 2 and any(self._value_at(s2, clause, i - 2) for s2 in VALUE_SLOTS):
                            spans.append((i - 2, False, VALUE_SLOTS))
            for k, negated, slots in spans:
                for slot in slots:
                    fact = self.canon.fact(about, slot, story_time)
                    hit = self._value_at(slot, clause, k)
                    if not fact or not hit:
                        continue
                    values, n = hit
                    truth = set(fact.value)
                    if (not negated and not (values & truth)) or (negated and values <= truth):
                        words = " ".join(clause[k:k + n])
                        claimed = self.canon.displays[(slot, next(iter(values)))] if len(values) == 1 else words
                        return self._contradiction(fact, listener, claimed, clause[k:k + n], negated)
        return None

    def _commands(self, clause, listener, listener_key, story_time) -> Contradiction | None:
        mentions = [(i, _key(t)) for i, t in enumerate(clause) if t.startswith("@") and t not in ("@?", "@we")]
        vessels = [(i, k) for i, k in mentions if self.canon.entities[k].vessel]
        people = [(i, k) for i, k in mentions if not self.canon.entities[k].vessel]
        negated = any(t in NEGATION for t in clause)
        for vi, vessel in vessels:
            fact = self.canon.fact(vessel, "commands", story_time)
            if fact is None:
                continue
            for pi, person in people:
                lo, hi = sorted((vi, pi))
                between = clause[lo + 1:hi]
                if any(t.startswith("@") for t in between) or len(between) > 6:
                    continue
                if pi < vi:  # "@nemo commands the @lincoln", "@nemo is the captain of @lincoln", "@nemo 's ship is @lincoln"
                    says = bool(set(between) & COMMAND_VERBS) or (
                        bool(set(between) & COMMAND_ROLES) and "of" in between) or (
                        between[:1] == ["'s"] and bool(set(between) & CRAFT_NOUNS) and bool(set(between) & COPULA)) or (
                        "command" in between or "charge" in between)
                else:  # "@lincoln is commanded by @nemo", "@lincoln 's captain is @nemo", "captain of @lincoln is @nemo"
                    says = (("by" in between and bool(set(between) & COMMAND_VERBS)) or
                            (between[:1] == ["'s"] and bool(set(between) & COMMAND_ROLES)) or
                            (vi >= 2 and clause[vi - 1] in ("of", "the") and bool(set(clause[max(0, vi - 3):vi]) & COMMAND_ROLES)
                             and bool(set(between) & COPULA)) or
                            (bool(set(between) & COPULA) and hi + 1 < len(clause) and clause[hi + 1] == "'s"
                             and hi + 2 < len(clause) and clause[hi + 2] in CRAFT_NOUNS))
                if not says:
                    continue
                true = person == fact.value
                if true == negated:
                    claimed = self.canon.entities[person].display
                    return self._contradiction(fact, listener, claimed, tuple(clause[lo:hi + 1]), negated)
        return None

    def _quantity(self, clause, listener, listener_key, story_time) -> Contradiction | None:
        subjects = [(i, _key(t)) for i, t in enumerate(clause) if t.startswith("@") and t not in ("@?", "@we")]
        if not subjects:
            return None
        for j in range(len(clause)):
            parsed = parse_number(clause[j:])
            if not parsed or clause[j] == "a" and parsed[1] == 1:
                continue
            number, used = parsed
            rest = clause[j + used:]
            for unit, (slot, factor) in UNITS.items():
                unit_words = tuple(unit.split())
                if tuple(rest[:len(unit_words)]) != unit_words:
                    continue
                if slot == "length" and not ({"long", "length", "longer", "end"} & set(clause)):
                    continue
                before = [(i, k) for i, k in subjects if i < j]
                about = (before[-1] if before else subjects[0])[1]
                fact = self.canon.fact(about, slot, story_time)
                if fact is None:
                    continue
                value = number * factor
                ratio = max(value, 1e-9) / float(fact.value)
                # a top speed: slower is no contradiction unless the visitor says it is all the ship can do
                capability = fact.bound != "max" or bool(set(clause) & CAPABILITY)
                if ratio > fact.tolerance or (ratio < 1 / fact.tolerance and capability):
                    claimed = " ".join(clause[j:j + used + len(unit_words)])
                    return self._contradiction(fact, listener, claimed, tuple(clause[j:j + used + len(unit_words)]), False)
        return None

    def _aboard(self, clause, listener, listener_key, story_time) -> Contradiction | None:
        for i, t in enumerate(clause):
            if not t.startswith("@") or t == "@?":
                continue
            about = listener_key if t == "@we" else _key(t)
            if about is None:
                continue
            fact = self.canon.fact(about, "aboard", story_time)
            if fact is None:
                continue
            j, negated, present = i + 1, False, False
            while j < len(clause) and j - i < 6 and not clause[j].startswith("@"):
                w = clause[j]
                if w in PRESENT or w in ("now", "currently", "here", "today", "tonight", "still"):
                    present = present or w in PRESENT or w == "here"
                elif w in NEGATION:
                    negated = not negated
                elif w not in ABOARD and w not in ("the", "right", "this", "very", "moment", "at", "sitting", "living",
                                                   "sailing", "travelling", "traveling", "standing", "safe", "sound"):
                    break
                j += 1
            if not present or j >= len(clause) or not clause[j].startswith("@") or clause[j] in ("@?", "@we"):
                continue
            if not set(clause[i + 1:j]) & ABOARD:
                continue
            vessel = _key(clause[j])
            if not self.canon.entities[vessel].vessel:
                continue
            now = next((v for v, start, until in fact.value if start <= story_time < until), None)
            if now is None:
                continue
            if (vessel == now) == negated:
                where = self.canon.entities[now].display
                fact_now = Fact(fact.about, "aboard", now, fact.known_from,
                                f"{self.canon.entities[about].display} is aboard {where}", f"I am aboard {where}",
                                source=fact.source)
                subject_self = about == listener_key
                correction = (f"{'We are' if t == '@we' else ('I am' if subject_self else self.canon.entities[about].display + ' is')} "
                              f"aboard {where}{'' if negated else ', not ' + self.canon.entities[vessel].display}.")
                return Contradiction("aboard", about, self.canon.entities[vessel].display, fact_now, correction,
                                     tuple(clause[i:j + 1]))
        return None

    def _contradiction(self, fact: Fact, listener: str, claimed: str, words, negated: bool) -> Contradiction:
        claimed_plain = " ".join(w for w in claimed.split() if not w.startswith("@"))
        said = fact.phrase(listener) or fact.says
        tail = "" if negated else f", not {claimed_plain}"
        correction = f"{said[:1].upper()}{said[1:]}{tail}."
        return Contradiction(fact.slot, fact.about, claimed_plain, fact, correction, tuple(words))


@dataclass
class ClaimInterjector:
    """An ``anima.core.interjection.Interjector``: cut in on a statement that contradicts the canon.

    ``story_time`` is read on every check (a callable), so a session that moves the character's story
    time is checked against the new one. The transcript is only re-read when it has grown.
    """

    checker: ClaimChecker
    listener: str
    story_time: Callable[[], int]
    last: Contradiction | None = None
    _seen: str = field(default="", repr=False)

    def consider(self, partial: str, floor_s: float) -> str | None:
        if partial == self._seen:
            return self.last.reason if self.last else None
        self._seen = partial
        self.last = self.checker.check(partial, self.listener, int(self.story_time()))
        return self.last.reason if self.last else None

    def reset(self) -> None:
        self._seen, self.last = "", None
