"""What a user turn asks for, decided offline: rules over the words, plus the world's vocabulary.

The categories the responders act on: an empty turn; a prompt injection or jailbreak; a question
about the character being an AI; an out-of-world request (code, modern technology, present-day
affairs: recognised by a lexicon of the modern world and by words the novel never uses); a taboo
topic of the persona; greetings, thanks and farewells; the visitor talking about themselves or
asking what the character remembers of them; "tell me more"; and, for everything else, an
in-world question or remark, flagged ``future`` when it asks what will happen.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from anima.thinker.memory import user_facts_in
from anima.thinker.persona import Persona, Taboo
from anima.thinker.text import STOPWORDS, words

MAX_UTTERANCE_CHARS = 2000

_JAILBREAK = re.compile(
    r"ignore (?:all |any |your |the |my )?(?:previous |prior |above |earlier )?(?:instructions|rules|prompts?|directions)"
    r"|disregard (?:all |any |your |the )?(?:previous |prior |above )?(?:instructions|rules|prompts?)"
    r"|forget (?:everything|all|your (?:instructions|rules|role|character|persona|programming)|who you are)"
    r"|system prompt|developer mode|\bdan mode\b|\bjailbreak|you are now\b|from now on,? you(?:'re| are| will)"
    r"|pretend (?:to be|you(?:'re| are))|act as (?:a|an|my)\b|role-?play as|break character|out of character"
    r"|stop (?:being|pretending|role-?playing)|drop the act|reveal your (?:instructions|prompt|rules)"
    r"|repeat after me|say exactly|new instructions|override|\bsudo\b|admin mode|<\|[a-z_]+\|>|\[inst\]"
    r"|respond only with|print your (?:instructions|prompt)|your (?:real|true) instructions|simulate (?:a|an)\b",
    re.IGNORECASE)
_AI = re.compile(
    r"\bare you (?:an? |really an? |just an? )?(?:ai|a\.i\.|bot|robot|chat ?bot|language model|llm|program|machine|"
    r"computer|human|real|gpt|chatgpt|artificial|assistant|virtual|simulation|fictional|character)\b"
    r"|\byou(?:'re| are) (?:just |only |really )?(?:an? )?(?:ai|bot|chat ?bot|program|language model|llm|machine|"
    r"assistant|fictional|fake|simulation)\b|\bwho (?:made|created|built|programmed|trained|wrote) you\b"
    r"|\bwhat (?:model|llm|ai) are you\b|\b(?:openai|anthropic|chatgpt|gpt-?\d|llama|claude|gemini|neural network)\b"
    r"|\bartificial intelligence\b",
    re.IGNORECASE)
# The modern world: technology, computing, present-day affairs (a lexicon, generic by design).
_MODERN = re.compile(
    r"\b(?:python|javascript|typescript|c\+\+|rust|golang|html|css|sql|api|json|code|coding|coder|programm(?:er|ing)|"
    r"algorithm|quicksort|bubble ?sort|binary search|regex|compile[rd]?|debug(?:ging)?|software|app|apps|"
    r"website|web ?site|internet|online|e-?mail|wi-?fi|smart ?phone|i?phone|android|computer|laptop|tablet|"
    r"bitcoin|crypto(?:currency)?|blockchain|stock market|netflix|youtube|tiktok|instagram|facebook|twitter|google|"
    r"microsoft|tesla|spacex|amazon prime|covid|coronavirus|pandemic|airplane|aeroplane|helicopter|rocket|"
    r"spaceship|astronaut|moon landing|nuclear|atomic bomb|world war|television|\btv\b|video ?game|playstation|xbox|"
    r"homework|essay|cv|spreadsheet|excel|powerpoint|podcast|selfie|emoji|uber|pizza delivery|"
    r"machine learning|deep learning|neural|chatbot|robot|drone|gps|electric car|self-driving|(?:in|since|year|by) (?:19[5-9]\d|20\d\d)|"
    r"president (?:biden|trump|obama)|trump|biden|obama|beyonc[eé]|taylor swift|world cup|super bowl|olympics|"
    r"capital of|stock price|exchange rate|translate (?:this|into)|write (?:me )?(?:a |an )?(?:poem|story|essay|code|"
    r"program|script|function|email|letter|song)|solve (?:this|the) equation|math problem|recipe)\b",
    re.IGNORECASE)
_GREETING = re.compile(r"^\s*(?:hello|hi|hey|good (?:morning|evening|afternoon|day)|greetings|bonjour|ahoy)\b", re.I)
_FAREWELL = re.compile(r"\b(?:good ?bye|bye|farewell|see you|good night|adieu|i must go|i have to go)\b", re.I)
_THANKS = re.compile(r"\b(?:thank you|thanks|merci|much obliged)\b", re.I)
_ASK_USER = re.compile(
    r"\b(?:what(?:'s| is) my|who am i\b(?! (?:speaking|talking))|do you (?:remember|know|recall) (?:me|my)|remember me|"
    r"about me|where am i from|where do i (?:come from|live)|what do i (?:like|do|love|hate)|my name\b|"
    r"what did i (?:tell|say))", re.I)
_IDENTITY = re.compile(r"^\s*(?:(?:and )?who are you|what(?:'s| is) your name|tell me about yourself|introduce yourself|"
                       r"who am i (?:speaking|talking) (?:to|with)|what are you)\b", re.I)
_MORE = re.compile(r"^\s*(?:tell me more|go on|and then|continue|more|what else|anything else|really|and)\s*[?.!]*\s*$", re.I)
_FUTURE = re.compile(
    r"\b(?:will|won't|shall|going to|gonna|future|ahead|later on|eventually|someday|one day|end up|in the end|"
    r"what happens|what will happen|how does (?:\w+ ){0,3}end|how will|become of|"
    r"fate|destiny|next (?:week|month|year)|spoil|spoiler|ending|last chapter|(?:last|final|dying) (?:words|days|hours|moments)|"
    r"at the end|in the end|finally)\b", re.I)
_QUESTION_WORDS = {"what", "who", "whom", "where", "when", "why", "how", "which", "whose", "tell", "describe",
                   "explain", "know", "about", "happened", "happen", "did", "do", "does", "is", "are", "was", "were"}


@dataclass
class Intent:
    """The reading of one user turn."""

    kind: str  # empty, jailbreak, ai, out_of_world, taboo, greeting, farewell, thanks, ask_user, self, identity,
    # more, question
    text: str  # the cleaned utterance
    future: bool = False  # asks about what will happen
    taboo: Taboo | None = None
    self_facts: list[tuple[str, str]] = field(default_factory=list)  # what the visitor said about themselves
    strange_words: list[str] = field(default_factory=list)  # content words the novel never uses
    truncated: bool = False
    reasons: list[str] = field(default_factory=list)


def clean_utterance(text: str) -> tuple[str, bool]:
    """Control characters removed, whitespace collapsed, cut to MAX_UTTERANCE_CHARS."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in text)
    text = " ".join(text.split())
    if len(text) > MAX_UTTERANCE_CHARS:
        return text[:MAX_UTTERANCE_CHARS].rsplit(" ", 1)[0], True
    return text, False


def strange_words(text: str, in_novel: Callable[[str], bool]) -> list[str]:
    """Content words (5+ letters, not names) that the novel never uses: "smartphone", "quicksort"."""
    out = []
    for m in re.finditer(r"[A-Za-z][A-Za-z'\-]+", text):
        word = m.group(0)
        if word[0].isupper() and m.start() > 0 and text[m.start() - 2: m.start()].strip() not in {".", "?", "!"}:
            continue  # a name the visitor uses (their own, a place): not evidence of another world
        w = word.lower().strip("'-")
        if len(w) < 5 or w in STOPWORDS or in_novel(w):
            continue
        base = re.sub(r"(?:'s|s|es|ed|ing|er|ers|ly)$", "", w)
        if len(base) >= 4 and (in_novel(base) or in_novel(base + "e")):
            continue
        out.append(w)
    return out


def read_intent(utterance: str, persona: Persona, in_novel: Callable[[str], bool]) -> Intent:
    """Classify one user turn. ``in_novel(word)`` says whether the novel uses the word (any chapter)."""
    text, truncated = clean_utterance(utterance)
    intent = Intent("question", text, truncated=truncated)
    if not text or not any(ch.isalnum() for ch in text):
        intent.kind = "empty"
        return intent
    lowered = text.lower()
    if _JAILBREAK.search(text):
        intent.kind, intent.reasons = "jailbreak", ["injection pattern"]
        return intent
    if _AI.search(text):
        intent.kind, intent.reasons = "ai", ["asks about AI"]
        return intent
    for taboo in persona.taboos:
        if any(k in lowered for k in taboo.keywords):
            intent.kind, intent.taboo, intent.reasons = "taboo", taboo, [taboo.topic]
            return intent
    intent.self_facts = user_facts_in(text)
    modern = _MODERN.search(text)
    intent.strange_words = strange_words(text, in_novel)
    content = [w for w in words(text) if w not in STOPWORDS and len(w) > 2]
    if modern or (intent.strange_words and not intent.self_facts
                  and (len(intent.strange_words) >= 2 or len(intent.strange_words) / max(1, len(content)) >= 0.5)):
        intent.kind = "out_of_world"
        intent.reasons = [f"modern: {modern.group(0)}"] if modern else [f"unknown words: {', '.join(intent.strange_words)}"]
        return intent
    intent.future = bool(_FUTURE.search(text))
    if intent.self_facts:  # "My name is Ada" (before "my name" as a question about the visitor)
        intent.kind = "self"
    elif _ASK_USER.search(text):
        intent.kind = "ask_user"
    elif _IDENTITY.match(text):
        intent.kind = "identity"
    elif _MORE.match(text):
        intent.kind = "more"
    elif _GREETING.match(text) and len(content) <= 4:
        intent.kind = "greeting"
    elif _THANKS.search(text) and len(content) <= 5:
        intent.kind = "thanks"
    elif _FAREWELL.search(text) and len(content) <= 5:
        intent.kind = "farewell"
    return intent


def focus_words(text: str, persona: Persona | None = None) -> list[str]:
    """The words that say what a question is about (question words, stop words and the persona's
    own name removed), lower-case, unstemmed."""
    own = set(words(persona.name)) | set(words(persona.entity)) if persona else set()
    return [w for w in words(text) if w not in STOPWORDS and w not in _QUESTION_WORDS and w not in own and len(w) > 2]
