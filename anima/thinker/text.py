"""Small text helpers shared by the extractor, the retriever and the responders.

Plain regular expressions, no model: sentence splitting, word tokens, a stop list, content words,
quote splitting and the narrator/first-person rewrites used when a character repeats a fact.
"""

from __future__ import annotations

import re
import unicodedata

# Footnote markers glued to a word in the source text ("Captain Nemo;7 to me", "Il Pesce.'14"),
# but not a year such as "in '65" (a space before the apostrophe).
_FOOTNOTE = re.compile(r"(?<=[A-Za-z;,!?\u201d])\d{1,2}(?=\s|$)|(?<=[.!?a-z]\u2019)\d{1,2}(?=\s|$)")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\u201d\u2019\"')]*\s+(?=[\u201c\u2018\"'(]*[A-Z0-9])")
_ABBREVIATIONS = ("Mr.", "Mrs.", "Dr.", "St.", "Messrs.", "No.", "Mt.", "etc.", "i.e.", "e.g.", "vs.", "Capt.", "M.")
_WORD = re.compile(r"[A-Za-z\u00C0-\u024F]+(?:['\u2019][A-Za-z]+)?")
TOKEN = re.compile(r"\w+|[^\w\s]")

STOPWORDS = frozenset(
    """a about above after again against all almost also am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
    either else ever every few for from further get gets got had hadn't has hasn't have haven't having he he'd he'll
    he's her here here's hers herself him himself his how how's however i i'd i'll i'm i've if in into is isn't it
    it's its itself just let's like may me might more most much must mustn't my myself neither no nor not now of off
    often on once only or other ought our ours ourselves out over own please quite rather really same shall shan't she
    she'd she'll she's should shouldn't so some such than that that's the their theirs them themselves then there
    there's these they they'd they'll they're they've this those though through thus to too under until up upon us
    very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's whether which while
    who who's whom whose why why's will with won't would wouldn't yes yet you you'd you'll you're you've your yours
    yourself yourselves tell told say said know knew think thought one two sir mr please well oh ah indeed come came go
    went see saw make made take took give gave ask asked let thing things way something anything nothing everything
    anyone someone lot lots kind sort back even still already around again many""".split()
)


def clean(text: str) -> str:
    """Normalise a source paragraph: NFC, footnote markers removed, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text)
    text = _FOOTNOTE.sub("", text)
    return " ".join(text.split())


def sentences(paragraph: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) in ``paragraph``; abbreviations such as "Mr." do not end one."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(paragraph):
        head = paragraph[start:match.start()]
        if head.rstrip("\u201d\u2019\"')").endswith(_ABBREVIATIONS) and " " + head.split()[-1] in " " + " ".join(_ABBREVIATIONS):
            continue
        end = match.start() + len(match.group(0).rstrip())
        if paragraph[start:end].strip():
            spans.append((start, end))
        start = match.end()
    if paragraph[start:].strip():
        spans.append((start, len(paragraph.rstrip())))
    return spans


def words(text: str) -> list[str]:
    """Word tokens, lower-cased, with the curly apostrophe folded to a straight one."""
    return [w.lower().replace("\u2019", "'") for w in _WORD.findall(text)]


def stem(word: str) -> str:
    """A crude suffix stripper so that "whales"/"whale" and "hunted"/"hunt" meet; good enough for overlap."""
    for suffix in ("'s", "ies", "es", "s", "ing", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix == "ies":
                word += "y"
            break
    return word


# Irregular forms a suffix stripper cannot join ("left" / "leave", "died" / "dead"), for the
# offline responder's word overlap. The suite scorer keeps plain ``stem``: changing what counts as
# naming a word would move the goalposts.
_IRREGULAR = {
    "left": "leave", "went": "go", "gone": "go", "took": "take", "taken": "take", "saw": "see", "seen": "see",
    "found": "find", "made": "make", "gave": "give", "given": "give", "came": "come", "began": "begin",
    "begun": "begin", "ran": "run", "fell": "fall", "fallen": "fall", "caught": "catch", "brought": "bring",
    "bought": "buy", "thought": "think", "told": "tell", "said": "say", "held": "hold", "kept": "keep",
    "led": "lead", "met": "meet", "sank": "sink", "sunk": "sink", "struck": "strike", "fought": "fight",
    "swam": "swim", "swum": "swim", "drove": "drive", "driven": "drive", "wrote": "write", "written": "write",
    "spoke": "speak", "spoken": "speak", "knew": "know", "known": "know", "threw": "throw", "thrown": "throw",
    "flew": "fly", "hid": "hide", "hidden": "hide", "slept": "sleep", "stood": "stand", "built": "build",
    "dead": "die", "died": "die", "death": "die", "dying": "die", "buried": "bury", "burial": "bury",
    "buries": "bury", "men": "man", "women": "woman", "children": "child", "teeth": "tooth", "feet": "foot",
}


def lemma(word: str) -> str:
    """``stem`` after undoing irregular forms: "left" and "leaving" both give "leav"."""
    word = word.lower().replace("\u2019", "'")
    return stem(_IRREGULAR.get(word, word))


def content_words(text: str) -> list[str]:
    """Words that carry meaning (stop words and one-letter words dropped), stemmed, in order."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 1]


def count_tokens(text: str) -> int:
    """Approximate model tokens: words and punctuation marks (a proxy for a BPE count, within ~25 %)."""
    return len(TOKEN.findall(text))


def strip_quotes(text: str) -> str:
    return text.replace("\u201c", "").replace("\u201d", "").replace('"', "").strip()


def quoted_segments(paragraph: str) -> list[tuple[int, int]]:
    """Spans of the text inside curly double quotes (the novel's dialogue), quotes excluded."""
    spans, depth_start = [], None
    for i, ch in enumerate(paragraph):
        if ch == "\u201c":
            depth_start = i + 1
        elif ch == "\u201d" and depth_start is not None:
            if paragraph[depth_start:i].strip():
                spans.append((depth_start, i))
            depth_start = None
    if depth_start is not None and paragraph[depth_start:].strip():
        # A speech running on into the next paragraph has no closing quote here.
        spans.append((depth_start, len(paragraph)))
    return spans


def shorten(text: str, max_words: int, focus: set[str] | None = None, whole_clauses: bool = False) -> str:
    """Cut ``text`` to about ``max_words`` words on clause boundaries, keeping the clauses that
    share the most words with ``focus`` (so the part that answers the question survives). When no
    clause fits, the best one is cut at ``max_words`` words, or, with ``whole_clauses``, "" is
    returned (nothing rather than a broken phrase)."""
    text = strip_quotes(text)
    if len(text.split()) <= max_words:
        return text
    clauses = [c.strip() for c in re.split(r"(?<=[;:,\u2014])\s+|\s+\u2014\s*", text) if c.strip()]
    if not focus:
        focus = set()
    scores = [len(focus & set(content_words(c))) for c in clauses]
    sizes = [len(c.split()) for c in clauses]
    # The run of consecutive clauses within the budget that holds the most focus words (then the
    # longest, then the earliest): an answer two clauses away from the question's words survives.
    best_key, lo, hi = None, 0, 0
    for a in range(len(clauses)):
        total = 0
        for b in range(a, len(clauses)):
            total += sizes[b]
            if total > max_words and b > a:
                break
            key = (sum(scores[a:b + 1]), total, -a)
            if best_key is None or key > best_key:
                best_key, lo, hi = key, a, b
    out = " ".join(clauses[lo:hi + 1]).rstrip(",;:\u2014 ")
    if len(out.split()) > max_words:
        if whole_clauses:
            return ""
        out = " ".join(out.split()[:max_words])
    out = out[0].upper() + out[1:] if out else out
    return out if out.endswith((".", "!", "?")) else out + "."


_FIRST_PERSON = re.compile(r"\b(I am|I have|I was|I|myself|my|My|mine|me)\b")
_VERB_AFTER = {"I am": " is", "I have": " has", "I was": " was"}
_OBJECT = {"myself": "himself", "my": "his", "My": "His", "mine": "his", "me": "him"}


def narrator_to_third_person(text: str, narrator: str) -> str:
    """Rewrite the narrator's "I" as ``narrator`` the first time and "he" after, in one left-to-right
    pass, for when another character repeats a sentence of the first-person narration."""
    named = False
    for short, full in (("m", " am"), ("ve", " have"), ("d", " would"), ("ll", " will")):
        text = re.sub(rf"\bI['\u2019]{short}\b", "I" + full, text)

    def replace(match: re.Match) -> str:
        nonlocal named
        token = match.group(1)
        if token in _OBJECT:
            return _OBJECT[token]
        who = "he" if named else narrator
        named = True
        return who + _VERB_AFTER.get(token, "")

    text = _FIRST_PERSON.sub(replace, text)
    text = re.sub(r"([.!?]\s+)he\b", r"\1He", text)
    return text[0].upper() + text[1:] if text else text


def has_first_person(text: str) -> bool:
    return re.search(r"\b(I|me|my|mine|myself)\b|\bI[\u2019']", text) is not None


_OBJECT_BEFORE = {"to", "at", "with", "by", "for", "from", "of", "on", "upon", "beside", "behind", "toward", "towards",
                  "near", "against", "about", "around", "after", "before", "than", "like", "without", "between",
                  "among", "into", "onto", "over", "under", "and", "told", "asked", "saw", "see", "met", "followed",
                  "thanked", "helped", "gave", "showed", "let", "made", "joined", "called", "watched", "heard", "found",
                  "left", "pulled", "saved", "rescued", "seized", "grabbed", "struck", "hit", "tell", "ask", "give"}
_BE_FIRST = {"is": "am", "was": "was", "has": "have", "does": "do", "says": "say", "seems": "seem", "knows": "know"}


def speaker_to_first_person(text: str, names: list[str]) -> str:
    """Rewrite third-person narration about the speaker (any of ``names``) as the speaker's own: "when
    Captain Nemo, who was stationed beside him, stood up" -> "when I, who was stationed beside him,
    stood up"; "the shark went for Captain Nemo" -> "... for me"; "Nemo's" -> "my"; "Nemo is" -> "I am".
    Only the names are rewritten (a later "he" may be someone else): the sentence stops being a
    narrator's report about the character without guessing at pronouns."""
    for name in sorted(set(names), key=len, reverse=True):
        n = re.escape(name)
        text = re.sub(rf"\b{n}[\u2019']s\b", "my", text)

        def replace(match: re.Match) -> str:
            before = match.string[:match.start()].rstrip()
            prev = re.findall(r"[A-Za-z]+", before[-20:])
            if prev and prev[-1].lower() in _OBJECT_BEFORE:
                return "me"
            verb = match.group(1)
            return "I" + (f" {_BE_FIRST.get(verb, verb)}" if verb else "")

        text = re.sub(rf"\b{n}\b(?: ({'|'.join(_BE_FIRST)})\b)?", replace, text)
    text = re.sub(r"^(my|me)\b", lambda m: m.group(1).capitalize(), text)
    return text[0].upper() + text[1:] if text else text
