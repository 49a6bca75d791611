"""Offline knowledge extraction from a novel: entities, facts and quoted lines, no language model.

    chapters = read_novel(Path("novel_dir"))
    extraction = extract(chapters, personas)

Every item carries the story time at which it becomes known (the chapter index, 1-based, in reading
order) and a source span (chapter, start, end) into the chapter's cleaned text. The heuristics:

- **entities**: runs of capitalised words that are not ordinary words of the corpus (a word seen
  lower-case more often than capitalised mid-sentence is ordinary), merged by shared name parts
  ("Ned" -> "Ned Land"); their kind (character, place, vessel, creature, object) comes from context
  cues (titles, speech verbs, place words and prepositions, ship nouns). Creatures and objects named
  by common nouns (whale, harpoon, ...) come from a small marine/nautical lexicon.
- **facts**: every sentence mentioning an entity is a fact about its first entity (a relation edge to
  the second, if any); appositions ("Ned Land, a Canadian harpooner,") give short definition facts;
  a vessel's reported positions are ``located_at`` facts, each valid until the next one.
- **lines**: quoted speech attributed to a speaker by its tag ("Conseil replied", "I said"), by the
  personas' attribution aliases ("the Canadian"), or by the alternation of a two-party dialogue.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from anima.thinker.text import STOPWORDS, clean, quoted_segments, sentences, strip_quotes, words

EXTRACTOR_VERSION = "offline-1"
KINDS = ("character", "place", "vessel", "creature", "object", "user")

TITLES = {"Captain", "Commander", "Professor", "Mr.", "Mrs.", "Monsieur", "Madame", "Dr.", "Doctor", "Sir", "Lord",
          "King", "Queen", "Father", "Admiral", "Lieutenant", "Major", "Colonel", "General", "Emperor", "Master",
          "Chief", "Commodore", "Saint", "Count", "Baron", "Prince"}
PLACE_LAST = {"Island", "Islands", "Isle", "Isles", "Sea", "Seas", "Ocean", "Strait", "Straits", "Bay", "Gulf",
              "Channel", "Point", "Reef", "Reefs", "Mount", "Mountains", "River", "Lake", "Coast", "Pole",
              "Archipelago", "Peninsula", "Canal", "Harbor", "Harbour", "Sound", "Current", "Stream", "Bank",
              "Banks", "Passage", "Shoal", "Shoals", "Rock", "Rocks", "Atoll", "Isthmus", "Valley", "Desert",
              "Circle", "Tropic", "Equator", "Hemisphere", "Continent", "Range", "Cape", "Street", "Square"}
PLACE_FIRST = {"Cape", "Mount", "Lake", "Port", "Gulf", "Strait", "Isle", "Bay", "Fort", "Saint"}
PLACE_PREPOSITIONS = {"in", "at", "to", "from", "near", "off", "toward", "towards", "into", "across", "past",
                      "reach", "reached", "around", "beyond", "along", "leaving", "left", "approaching", "visit"}
# What only a ship has: "the Scotia's hull", "the officers of the Shannon".
VESSEL_PARTS = {"hull", "crew", "officers", "passengers", "deck", "bow", "stern", "keel", "masts", "mast", "paddle",
                "rudder", "spur", "propeller", "plating", "bulkheads", "helmsman", "lookout", "rigging", "cannons"}
SHIP_NOUNS = {"frigate", "ship", "steamer", "steamboat", "vessel", "boat", "schooner", "brig", "sloop", "corvette",
              "warship", "ironclad", "liner", "packet", "craft", "submarine", "man-of-war", "three-master",
              "two-master", "gunboat", "launch", "aboard", "board", "sloop-of-war", "clipper", "galleon"}
PERSON_VERBS = {"said", "replied", "answered", "asked", "exclaimed", "cried", "shouted", "smiled", "nodded",
                "turned", "stood", "laughed", "bowed", "shook", "shrugged", "gazed", "stared", "looked", "told",
                "added", "continued", "muttered", "resumed", "observed", "declared", "went", "spoke", "whispered"}
NOT_NAMES = {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
             "French", "English", "Dutch", "Greek", "Spanish", "German", "Scotch", "Irish", "Latin", "God", "Heaven",
             "Heavens", "Mister", "Madam", "Sir", "Master", "Part", "Chapter", "Good", "Lord"}
# Creatures and objects named by common nouns: generic marine and nautical vocabulary, longest first.
CREATURES = ("sperm whale", "baleen whale", "right whale", "giant squid", "sea lion", "sea otter", "sea serpent",
             "pearl oyster", "sea turtle", "whale", "narwhal", "cachalot", "shark", "squid", "devilfish", "octopus",
             "poulp", "calamary", "dugong", "manatee", "seal", "walrus", "otter", "turtle", "dolphin", "porpoise",
             "albatross", "penguin", "petrel", "oyster", "coral", "sponge", "jellyfish", "argonaut", "cuttlefish",
             "crab", "lobster", "eel", "ray", "kraken", "cetacean", "mollusk", "swordfish", "sawfish", "moray",
             "sunfish", "unicorn", "polyp")
OBJECTS = ("diving suit", "diving apparatus", "air gun", "air rifle", "electric bullet", "ruhmkorff lamp",
           "harpoon", "skiff", "dinghy", "longboat", "rifle", "lamp", "pearl", "organ", "library", "lounge", "compass",
           "chronometer", "sextant", "manometer", "barometer", "thermometer", "propeller", "spur", "porthole",
           "hatch", "platform", "pilothouse", "searchlight", "beacon", "cannon", "flag", "chest", "ingot", "map",
           "logbook", "sodium", "battery", "electricity", "reservoir", "ballast", "telescope", "spyglass", "rudder")
SPEECH_VERBS = ("said", "replied", "answered", "asked", "exclaimed", "cried", "shouted", "added", "continued",
                "went on", "resumed", "muttered", "told", "remarked", "observed", "declared", "retorted", "called out",
                "put in", "whispered", "yelled", "returned", "inquired", "snapped", "murmured", "began")

_CAP = r"[A-Z\u00C0-\u00DE][\w\u00C0-\u024F\u2019'\-]*"
_RUN = re.compile(rf"(?:(?:Mr|Mrs|Dr|St|Mt)\.\s+)?{_CAP}(?:\s+(?:(?:of|de|du|des|la|le|von|van|del|da)\s+)?{_CAP})*")
_LATLONG = re.compile(r"(latitude|longitude)\s+\d+\u00b0", re.IGNORECASE)
_WE_AT = re.compile(r"\b(?:we|the Nautilus|the frigate) (?:were|was|lay|stood|found ourselves) (?:now )?(?:in|off|near|at|under)\b")
_APPOSITION = re.compile(r"^,\s+((?:a|an|the|our|my|his|her)\s+[^,;:\u201c\u201d()]{3,90}?)(?:,|;|\.|$)")


@dataclass
class Chapter:
    """One chapter: its story time (1-based index in reading order) and cleaned text."""

    index: int
    heading: str
    file: str
    paragraphs: list[str]
    sha256: str

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)

    def paragraph_offsets(self) -> list[int]:
        offsets, pos = [], 0
        for p in self.paragraphs:
            offsets.append(pos)
            pos += len(p) + 2
        return offsets


@dataclass
class Entity:
    key: str  # canonical name, unique
    kind: str  # one of KINDS
    known_from: int  # chapter of the first mention
    aliases: set[str] = field(default_factory=set)
    mentions: int = 0
    description: str = ""
    case_sensitive: bool = True  # proper names match case-sensitively; lexicon nouns do not
    origin: str = "offline"


@dataclass
class Fact:
    subject: str  # entity key
    predicate: str
    object: str | None  # entity key, or None for an attribute fact
    text: str
    known_from: int
    chapter: int | None
    span: tuple[int, int] | None
    valid_until: int | None = None
    origin: str = "offline"
    speaker: str | None = None  # who states it: the narrator for narration, the speaker for dialogue


@dataclass
class Line:
    speaker: str  # entity key
    text: str
    chapter: int
    span: tuple[int, int]
    attribution: str = "tag"  # how the speaker was found: tag (named), pronoun, or alternation


@dataclass
class Extraction:
    chapters: list[Chapter]
    entities: dict[str, Entity]
    facts: list[Fact]
    lines: list[Line]
    vocab: dict[str, tuple[int, int]]  # word -> (first chapter, count)


class NovelError(ValueError):
    """The novel directory is missing, empty or unreadable; the message says which file."""


def _reading_order(path: Path) -> tuple:
    numbers = [int(n) for n in re.findall(r"\d+", path.stem)]
    return (0, numbers, path.name) if numbers else (1, [], path.name)


def read_novel(directory: Path) -> list[Chapter]:
    """The chapters of a novel directory (one UTF-8 .txt per chapter, first line the heading),
    ordered by the numbers in their names (``part1-chapter02`` before ``part2-chapter01``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NovelError(f"{directory}: not a directory")
    files = sorted((p for p in directory.glob("*.txt") if p.is_file()), key=_reading_order)
    if not files:
        raise NovelError(f"{directory}: no chapter files (*.txt)")
    chapters = []
    for index, path in enumerate(files, start=1):
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NovelError(f"{path}: not UTF-8 text ({exc.reason})") from None
        blocks = [clean(b) for b in re.split(r"\n\s*\n", text.strip())]
        blocks = [b for b in blocks if b]
        if not blocks:
            raise NovelError(f"{path}: empty chapter")
        chapters.append(Chapter(index, blocks[0], path.name, blocks[1:] or [blocks[0]], hashlib.sha256(raw).hexdigest()))
    return chapters


def _sentence_units(chapters: list[Chapter]) -> Iterable[tuple[Chapter, int, str, int, int]]:
    """(chapter, paragraph index, sentence text, start, end) with offsets into the chapter text."""
    for chapter in chapters:
        paragraphs, offsets = chapter.paragraphs, chapter.paragraph_offsets()
        shown = -1  # a short paragraph already told as the end of the sentence that introduced it
        for p_index, (para, offset) in enumerate(zip(paragraphs, offsets, strict=True)):
            if p_index == shown:
                continue
            spans = sentences(para)
            for n, (start, end) in enumerate(spans):
                nxt = paragraphs[p_index + 1] if p_index + 1 < len(paragraphs) else ""
                if n == len(spans) - 1 and para[start:end].rstrip().endswith(":") and _displayed(nxt):
                    # "...a Latin motto, and here is its exact duplicate:" + the line shown below it
                    end_all = offsets[p_index + 1] + len(nxt)
                    yield chapter, p_index, chapter.text[offset + start:end_all], offset + start, end_all
                    shown = p_index + 1
                    continue
                yield chapter, p_index, para[start:end], offset + start, offset + end


def _displayed(paragraph: str) -> bool:
    """A short line set apart (a motto, an inscription, a name), not a sentence of its own."""
    return 0 < len(paragraph.split()) <= 8 and not re.search(r"[\u201c\u201d\"]", paragraph) \
        and not paragraph.rstrip().endswith((".", "?", "!", ":"))


def _initial(sentence: str, pos: int) -> bool:
    head = sentence[:pos].rstrip()
    return not head or head[-1] in "\u201c\u2018\"'(:\u2014" or head.endswith(("...", "\u2026"))


def _name_candidates(chapters: list[Chapter]) -> tuple[Counter, dict[str, int], dict[str, list[tuple[str, str]]]]:
    lower: Counter = Counter()
    capmid: Counter = Counter()
    for _, _, sent, _, _ in _sentence_units(chapters):
        for m in re.finditer(r"[A-Za-z\u00C0-\u024F][\w\u00C0-\u024F\u2019'\-]*", sent):
            w = m.group(0)
            if w[0].islower():
                lower[w] += 1
            elif not _initial(sent, m.start()):
                capmid[w] += 1

    def ordinary(word: str) -> bool:
        return lower[word.lower()] >= max(1, capmid[word]) or word.lower() in STOPWORDS

    counts: Counter = Counter()
    first: dict[str, int] = {}
    contexts: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for chapter, _, sent, _, _ in _sentence_units(chapters):
        for m in _RUN.finditer(sent):
            tokens = m.group(0).split()
            start = m.start()
            # The pronoun "I" (and "I'm", "I'll") ends a name: "Mediterranean I" is two things.
            cut = next((i for i, t in enumerate(tokens) if t.replace("\u2019", "'").lower() in STOPWORDS and i > 0), None)
            if cut is not None:
                tokens = tokens[:cut]
            # Leading sentence-initial ordinary words ("Then Captain Nemo") are not part of the name.
            while tokens and (tokens[0].lower() in STOPWORDS or (_initial(sent, start) and ordinary(tokens[0]))):
                start = sent.index(tokens[0], start) + len(tokens[0])
                tokens = tokens[1:]
            while tokens and tokens[-1].lower() in {"of", "de", "du", "des", "la", "le", "von", "van", "del", "da"}:
                tokens = tokens[:-1]
            possessive = bool(tokens) and re.search(r"[\u2019']s$", tokens[-1]) is not None
            if tokens:
                tokens[-1] = re.sub(r"[\u2019']s$", "", tokens[-1])
            name = " ".join(tokens)
            if not name or name in NOT_NAMES or len(name) < 3:
                continue
            if len(tokens) == 1 and (ordinary(name) or re.search(r"(ian|ese|ish)$", name) or name in PLACE_LAST
                                     or name.endswith("ly") or name in TITLES or name.replace("\u2019", "'").lower() in STOPWORDS):
                continue
            counts[name] += 1
            first.setdefault(name, chapter.index)
            before = sent[:start].split()[-3:]
            after = (["\u2019s"] if possessive else []) + sent[m.end():].split()[:2]  # "the Scotia's hull"
            contexts[name].append((" ".join(before), " ".join(after)))
    return counts, first, contexts


def _adjective(name: str, ctx: list[tuple[str, str]]) -> bool:
    """A proper adjective ("American frigate", "Atlantic waters"): mostly followed by a lower-case word."""
    if len(name.split()) > 1 or not re.search(r"(an|ic)$", name):
        return False
    follow = sum(1 for _, after in ctx if after[:1].islower())
    return follow >= 0.5 * max(1, len(ctx))


def _classify(name: str, ctx: list[tuple[str, str]]) -> str:
    tokens = name.split()
    if tokens[0] in TITLES and tokens[0] not in {"Saint"}:
        return "character"
    if tokens[-1] in PLACE_LAST or tokens[0] in PLACE_FIRST:
        return "place"
    person = vessel = place = 0
    for before, after in ctx:
        b = before.lower().replace(",", "").split()
        a = after.lower().strip(",.;:!?\u201d").split()
        if a and a[0].strip(",.;:") in PERSON_VERBS:
            person += 1
        if b and b[-1] in {"the"} and len(b) >= 2 and b[-2] in SHIP_NOUNS or b and b[-1] in SHIP_NOUNS:
            vessel += 2
        elif SHIP_NOUNS & set(b):
            vessel += 1
        if len(a) >= 2 and a[0] == "\u2019s" and a[1] in VESSEL_PARTS:  # "the Scotia's hull"
            vessel += 2
        if len(b) >= 3 and b[-1] == "the" and (b[-2] == "of" and b[-3] in VESSEL_PARTS  # "officers of the Shannon"
                                                or b[-2] == "like" and b[-3] in {"ships", "vessels", "steamers"}):
            vessel += 1
        if b and b[-1] in PLACE_PREPOSITIONS:
            place += 1
        elif len(b) >= 2 and b[-1] == "the" and b[-2] in PLACE_PREPOSITIONS:
            place += 0.5
    n = max(1, len(ctx))
    if vessel >= 2:
        return "vessel"
    if person / n >= 0.1:
        return "character"
    if place / n >= 0.2:
        return "place"
    return "object"


def _core(name: str) -> frozenset[str]:
    return frozenset(t for t in name.split() if t not in TITLES)


def _merge_aliases(counts: Counter, first: dict[str, int], contexts: dict) -> dict[str, Entity]:
    """Group the name candidates into entities: character names whose title-less parts nest
    ("Aronnax" < "Pierre Aronnax" = "Professor Aronnax") are one character; a single word that is a
    part of one dominant character's name is an alias of it ("Ned" -> "Ned Land")."""
    names = [n for n, c in counts.items()
             if (c >= 2 or n.split()[0] in TITLES) and _core(n) and not (len(n.split()) == 1 and n in TITLES)]
    names = [n for n in names if not _adjective(n, contexts[n])]
    kinds = {n: _classify(n, contexts[n]) for n in names}
    groups: list[list[str]] = []
    people = sorted((n for n in names if kinds[n] == "character" and len(n.split()) >= 2), key=lambda n: (-counts[n], n))
    for name in people:
        home = [g for g in groups if any(_core(name) <= _core(m) or _core(m) <= _core(name) for m in g)]
        if len(home) == 1:
            home[0].append(name)
        elif not home or counts[name] >= 2:
            groups.append([name])
    # "Atlantic" beside "Atlantic Ocean": a bare name that heads a place name is that place.
    for name in names:
        if len(name.split()) == 1 and kinds[name] == "object" and any(
                m.split()[0] == name and kinds[m] == "place" and len(m.split()) == 2 for m in names):
            kinds[name] = "place"
    others: list[str] = []
    for name in sorted((n for n in names if n not in people), key=lambda n: (-counts[n], n)):
        if len(name.split()) == 1:
            owners = sorted((g for g in groups if name in set().union(*(_core(m) for m in g))),
                            key=lambda g: -sum(counts[m] for m in g))
            weights = [sum(counts[m] for m in g) for g in owners]
            if owners and (len(owners) == 1 or weights[0] >= 5 * weights[1]):
                owners[0].append(name)
                continue
        others.append(name)
    entities: dict[str, Entity] = {}
    for group in groups:
        key = max(group, key=lambda n: (counts[n], len(n.split()) >= 2, -len(n)))
        aliases = set(group) | {" ".join(n.split()[1:]) for n in group if n.split()[0] in TITLES and len(n.split()) >= 2}
        entities[key] = Entity(key, "character", min(first[n] for n in group), aliases, sum(counts[n] for n in group))
    for name in others:
        if name not in entities:
            entities[name] = Entity(name, kinds[name], first[name], {name}, counts[name])
    return entities


def _lexicon_entities(chapters: list[Chapter]) -> dict[str, Entity]:
    text_by_chapter = [(c.index, c.text.lower()) for c in chapters]
    out: dict[str, Entity] = {}
    for kind, lexicon in (("creature", CREATURES), ("object", OBJECTS)):
        for noun in lexicon:
            pattern = re.compile(rf"\b{re.escape(noun)}(?:s|es)?\b")
            mentions, first = 0, None
            for index, text in text_by_chapter:
                n = len(pattern.findall(text))
                if n and first is None:
                    first = index
                mentions += n
            if mentions >= 2 and first is not None:
                out[noun] = Entity(noun, kind, first, {noun, noun + "s", noun + "es"}, mentions, case_sensitive=False)
    return out


class Mentions:
    """Finds entity mentions in text: one compiled alternation, longest alias first."""

    def __init__(self, entities: dict[str, Entity]) -> None:
        sensitive, insensitive = {}, {}
        for entity in entities.values():
            for alias in entity.aliases:
                (sensitive if entity.case_sensitive else insensitive)[alias if entity.case_sensitive else alias.lower()] = entity.key
        self._sensitive, self._insensitive = sensitive, insensitive
        self._re_s = self._compile(sensitive, 0)
        self._re_i = self._compile(insensitive, re.IGNORECASE)

    @staticmethod
    def _compile(aliases: dict[str, str], flags: int) -> re.Pattern | None:
        if not aliases:
            return None
        alternation = "|".join(re.escape(a) for a in sorted(aliases, key=len, reverse=True))
        return re.compile(rf"(?<![\w\u00C0-\u024F])(?:{alternation})(?![\w\u00C0-\u024F])", flags)

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, entity key) in text order, without overlaps (proper names win)."""
        found: list[tuple[int, int, str]] = []
        if self._re_s is not None:
            found += [(m.start(), m.end(), self._sensitive[m.group(0)]) for m in self._re_s.finditer(text)]
        if self._re_i is not None:
            taken = [(s, e) for s, e, _ in found]
            for m in self._re_i.finditer(text):
                if not any(s < m.end() and m.start() < e for s, e in taken):
                    found.append((m.start(), m.end(), self._insensitive[m.group(0).lower()]))
        return sorted(found)


def _predicate(between: str) -> str:
    tokens = [w for w in words(between) if w not in {"the", "a", "an"}]
    for w in tokens:
        if w.endswith("ed") or w in {"is", "was", "has", "had", "saw", "took", "gave", "told", "met", "left", "made"}:
            return w
    return "related to" if tokens else "and"


def _facts(chapters: list[Chapter], entities: dict[str, Entity], mentions: Mentions,
           speakers: dict[tuple[int, int], str], narrator: str | None) -> list[Fact]:
    """Sentence facts; a sentence inside quotes is stated by that paragraph's speaker (None when
    the speaker is unknown), any other by the narrator."""
    facts: list[Fact] = []
    positions: dict[str, list[Fact]] = defaultdict(list)
    current_vessel: str | None = None
    offsets = {c.index: c.paragraph_offsets() for c in chapters}
    for chapter, p_index, sent, start, end in _sentence_units(chapters):
        found = mentions.find(sent)
        p_offset = offsets[chapter.index][p_index]
        quoted = [(p_offset + a, p_offset + b) for a, b in quoted_segments(chapter.paragraphs[p_index])]
        # A sentence is stated by whoever says most of it: the quotes' speaker or the narrator; the
        # fact keeps only that voice's words (no "he said" tags inside a speech, no speech in narration).
        inside = [(max(a, start), min(b, end)) for a, b in quoted if a < end and b > start]
        quoted_chars = sum(b - a for a, b in inside)
        if quoted_chars * 2 > end - start:
            stated_by = speakers.get((chapter.index, p_index))
            statement = " ".join(chapter.text[a:b].strip(" ,") for a, b in inside)
        else:
            stated_by = narrator
            statement, cursor = "", start
            for a, b in inside:
                statement += chapter.text[cursor:a] + " "
                cursor = b
            statement += chapter.text[cursor:end]
        statement = re.sub(r"\s+([,.;:!?])", r"\1", " ".join(strip_quotes(statement).split())).strip(" ,")
        keys = list(dict.fromkeys(k for _, _, k in found))
        for m_start, m_end, key in found:
            if entities[key].kind == "vessel" and re.search(r"\b(aboard|on board)\s+(the\s+)?$", sent[:m_start]):
                current_vessel = key
            if entities[key].kind == "character":
                in_quote = any(a <= start + m_start < b for a, b in quoted)  # "Well, Professor, our breakfast..."
                match = None if in_quote or _initial(sent, m_start) else _APPOSITION.match(sent[m_end:])
                if match and not entities[key].description and not mentions.find(match.group(1)) \
                        and not re.search(r"\b(is|was|were|are|had|has|have|would|will|did|could)\b", match.group(1)) \
                        and not re.match(r"\s*(and|or)\b", sent[m_end + match.end():]):
                    desc = match.group(1).strip()
                    entities[key].description = f"{key} is {desc}."
                    facts.append(Fact(key, "is", None, f"{key} is {desc}.", chapter.index, chapter.index,
                                      (start + m_end, start + m_end + match.end(1)), speaker=None))
        # "Ned Land shouted." tells nothing; a question asks, it does not state.
        if len(statement.split()) < 4 or statement.rstrip("\u2014\u2026. ").endswith("?"):
            continue
        if statement[0].islower():
            statement = statement[0].upper() + statement[1:]
        if not keys:
            # A sentence that names nothing ("The length of this cylinder is exactly seventy meters")
            # is still knowledge: an observation of whoever states it.
            if stated_by is not None:
                facts.append(Fact(stated_by, "states", None, statement, chapter.index, chapter.index, (start, end),
                                  speaker=stated_by))
            continue
        subject = keys[0]
        obj = keys[1] if len(keys) > 1 else None
        predicate = "described"
        if obj is not None:
            s_end = next(e for s, e, k in found if k == subject)
            o_start = next(s for s, e, k in found if k == obj)
            predicate = _predicate(sent[s_end:o_start]) if o_start > s_end else "related to"
        fact = Fact(subject, predicate, obj, statement, chapter.index, chapter.index, (start, end),
                    speaker=stated_by)
        facts.append(fact)
        at_place = _WE_AT.search(sent) and any(entities[k].kind == "place" for k in keys)
        ours = re.search(r"\b(we|our|us|the Nautilus|the frigate)\b", sent, re.IGNORECASE)
        if (_LATLONG.search(sent) and ours or at_place) and current_vessel is not None:
            position = Fact(current_vessel, "located_at", None, statement, chapter.index, chapter.index,
                            (start, end), speaker=stated_by)
            positions[current_vessel].append(position)
            facts.append(position)
        for key in keys:
            if not entities[key].description and entities[key].kind != "character":
                entities[key].description = strip_quotes(sent)
    # A position stays true until the next position of the same vessel is reported (in a later
    # chapter; within one chapter, the chapter's last position is the one that holds at its end).
    for chain in positions.values():
        for here, there in zip(chain, chain[1:], strict=False):
            here.valid_until = max(there.known_from, here.known_from + 1) if there.known_from > here.known_from else here.known_from + 1
    return facts


@dataclass
class Attribution:
    """How the text names one speaker: an alias valid in a range of chapters."""

    speaker: str  # entity key
    alias: str
    first: int = 1
    last: int = 10**6


def _speaker(narration: str, chapter: int, attributions: list[Attribution], mentions: Mentions,
             entities: dict[str, Entity], narrator: str | None) -> str | None:
    verbs = "|".join(SPEECH_VERBS)
    for att in attributions:
        if att.first <= chapter <= att.last and re.search(
                rf"(?<!\w){re.escape(att.alias)}(?:\s+\w+)?\s+(?:{verbs})\b|\b(?:{verbs})\s+{re.escape(att.alias)}(?!\w)",
                narration, re.IGNORECASE if att.alias[0].islower() else 0):
            return att.speaker
    if narrator and re.search(rf"\bI\s+(?:\w+\s+)?(?:{verbs})\b|\b(?:{verbs})\s+I\b", narration):
        return narrator
    for start, end, key in mentions.find(narration):
        if entities[key].kind == "character" and re.match(rf"\s+(?:\w+\s+)?(?:{verbs})\b", narration[end:]):
            return key
        if entities[key].kind == "character" and re.search(rf"\b(?:{verbs})\s+$", narration[:start]):
            return key
    if re.search(rf"\b(?:he|she)\s+(?:\w+\s+)?(?:{verbs})\b|\b(?:{verbs})\s+(?:he|she)\b", narration, re.IGNORECASE):
        return "<pronoun>"
    return None


def _introducer(narration: str, chapter: int, attributions: list[Attribution], mentions: Mentions,
                entities: dict[str, Entity], narrator: str | None, prior: list[str]) -> str | None:
    """Who speaks next, from the narration sentence that introduces a speech with a colon: a
    speech verb's named subject, the narrator's "I", or "he"/"she" = the last character the
    paragraph names other than the narrator (else the last other speaker)."""
    last = re.split(r"(?<=[.!?])\s+", narration.strip())[-1]
    speaker = _speaker(last, chapter, attributions, mentions, entities, narrator)
    if speaker not in (None, "<pronoun>"):
        return speaker
    if narrator and re.match(r"\s*(?:then\s+|and\s+)?I\b", last, re.IGNORECASE):
        return narrator
    if re.search(r"\b(?:he|she)\b", last, re.IGNORECASE):
        named = [key for _, _, key in mentions.find(narration) if entities[key].kind == "character" and key != narrator]
        for att in attributions:  # "the captain", "the Canadian": the text's own names for speakers
            if att.first <= chapter <= att.last and re.search(
                    rf"(?<!\w){re.escape(att.alias)}(?!\w)", narration, re.IGNORECASE if att.alias[0].islower() else 0):
                named.append(att.speaker)
        named = [k for k in named if k != narrator]
        if named:
            return named[-1]
        others = [s for s in reversed(prior) if s != narrator]
        return others[0] if others else None
    return None


def _lines(chapters: list[Chapter], attributions: list[Attribution], mentions: Mentions,
           entities: dict[str, Entity], narrator: str | None) -> tuple[list[Line], dict[tuple[int, int], str]]:
    lines: list[Line] = []
    speakers: dict[tuple[int, int], str] = {}  # (chapter, paragraph) -> speaker of its quotes
    for chapter in chapters:
        recent: list[str | None] = []  # speakers of the previous quote paragraphs (None: narration)
        open_speech: tuple[str | None, str] | None = None  # a speech left open by the previous paragraph
        previous = ""
        for p_index, (para, offset) in enumerate(zip(chapter.paragraphs, chapter.paragraph_offsets(), strict=True)):
            segments = quoted_segments(para)
            if not segments:
                recent.append(None)
                open_speech, previous = None, para
                continue
            narration = "".join(ch if not any(s <= i < e for s, e in segments) else " " for i, ch in enumerate(para))
            speaker = _speaker(narration, chapter.index, attributions, mentions, entities, narrator)
            prior = [s for s in recent[-4:] if s]
            how = "tag"
            if speaker is None and open_speech is not None and para.lstrip().startswith("\u201c"):
                # A speech running over several paragraphs opens each with a quote mark and closes
                # only the last: the same voice goes on (as reliable as the tag that named it).
                speaker, how = open_speech
            elif speaker is None and p_index > 0 and para.lstrip().startswith("\u201c") \
                    and previous.rstrip().endswith(":") and not quoted_segments(previous):
                # "Then he began his description as follows:" introduces the speech below it.
                speaker, how = _introducer(previous, chapter.index, attributions, mentions, entities, narrator, prior), "intro"
            elif speaker == "<pronoun>":
                others = [s for s in reversed(prior) if s != narrator]
                speaker, how = (others[0] if others else None), "pronoun"
            elif speaker is None and len(prior) >= 2 and recent[-1] is not None and prior[-1] != prior[-2]:
                speaker, how = prior[-2], "alternation"  # two-party dialogue: the turns alternate
            recent.append(speaker)
            closed = para.rfind("\u201d") > para.rfind("\u201c")
            open_speech = None if closed or speaker is None else (speaker, how)
            previous = para
            if speaker is None:
                continue
            speakers[(chapter.index, p_index)] = speaker
            text = " ".join(para[s:e].strip() for s, e in segments)
            if len(text.split()) >= 3:
                lines.append(Line(speaker, text, chapter.index, (offset + segments[0][0], offset + segments[-1][1]), how))
    return lines, speakers


def _vocab(chapters: list[Chapter]) -> dict[str, tuple[int, int]]:
    first: dict[str, int] = {}
    counts: Counter = Counter()
    for chapter in chapters:
        for w in words(chapter.text):
            counts[w] += 1
            first.setdefault(w, chapter.index)
    return {w: (first[w], counts[w]) for w in counts}


def extract(chapters: list[Chapter], attributions: list[Attribution] | None = None, narrator: str | None = None,
            progress: Callable[[str], None] | None = None) -> Extraction:
    """Entities, facts, quoted lines and vocabulary of the novel, each stamped with its story time.

    ``attributions`` name the speakers the way the text does ("the Canadian" -> Ned Land); their
    ``speaker`` keys are created as character entities if the heuristics missed them. ``narrator``
    is the entity key the first-person "I" of the narration refers to.
    """
    report = progress or (lambda _: None)
    report("names")
    counts, first, contexts = _name_candidates(chapters)
    entities = _merge_aliases(counts, first, contexts)
    for att in attributions or []:
        if att.speaker not in entities:
            owner = next((e for e in entities.values() if att.speaker in e.aliases), None)
            if owner is not None:  # the persona's name for the character becomes the entity's key
                del entities[owner.key]
                owner.key = att.speaker
                entities[owner.key] = owner
            else:
                entities[att.speaker] = Entity(att.speaker, "character", max(1, att.first), {att.speaker})
        entities[att.speaker].kind = "character"
        if att.alias[0].isupper() and att.first <= 1:
            entities[att.speaker].aliases.add(att.alias)
    if narrator is not None and narrator not in entities:
        entities[narrator] = Entity(narrator, "character", 1, {narrator})
    for key, entity in _lexicon_entities(chapters).items():
        if key not in entities:
            entities[key] = entity
    mentions = Mentions(entities)
    report("lines")
    lines, speakers = _lines(chapters, attributions or [], mentions, entities, narrator)
    report("facts")
    facts = _facts(chapters, entities, mentions, speakers, narrator)
    used = ({f.subject for f in facts} | {f.object for f in facts if f.object} | {ln.speaker for ln in lines}
            | {f.speaker for f in facts if f.speaker})
    entities = {k: e for k, e in entities.items() if k in used}
    for entity in entities.values():
        if not entity.description:
            entity.description = f"{entity.key} ({entity.kind})."
    return Extraction(chapters, entities, facts, lines, _vocab(chapters))
