"""Domain adaptation for the recogniser: a dictionary and a trigram language model from the world.

PocketSphinx's general language model does not know "Aronnax" or "Conseil" and rates "Nautilus"
as rare, so it hears the names as other words. ``build_domain`` writes, from the character's world
database and persona:

- a pronouncing dictionary: the wheel's CMU dictionary plus every domain word it lacks, and a
  second pronunciation for the world's names (the CMU entry of "nemo" is N EH M OW; people say
  N IY M OW). Pronunciations come from espeak-ng's IPA (``espeak-ng -q --ipa -v en-us``) mapped
  symbol by symbol to CMU ARPAbet (``ipa_to_arpabet``): PocketSphinx's own g2p is not available.
- an ARPA trigram language model (absolute discounting with backoff, written here) over the
  in-domain text: the novel's chapters (in the world database), the characters' lines, the persona
  files, and the questions counted ``question_weight`` times: the novel's own questions and
  generic question frames filled with the world's names ("who is Ned Land"). Its
  unigrams are interpolated with the general model's unigrams (weight ``general_weight``) over a
  vocabulary of the domain words plus the ``general_words`` most frequent general English words,
  so everyday words the novel lacks stay recognisable.

The result is cached under ``data_home()/asr/`` by a hash of its inputs and settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LOGMATH_BASE = 1.0001  # PocketSphinx's default log base (NGramModel.prob returns log_1.0001 p)
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
QUESTION_FRAMES = (
    "who is {x}", "who was {x}", "what is {x}", "what was {x}", "where is {x}", "tell me about {x}",
    "what do you think of {x}", "what happened to {x}", "have you seen {x}", "what about {x}",
    "do you know {x}", "why did {x}", "where did you find {x}", "what did {x} do", "is {x} dangerous",
)
ADDRESS = ("captain", "professor", "sir", "conseil", "ned", "captain nemo", "professor aronnax", "ned land")

# espeak-ng's en-us IPA -> CMU ARPAbet (stress dropped: the PocketSphinx dictionary has none).
# Longest symbols first; rhotic vowels become vowel + R as in the CMU dictionary.
IPA_TO_ARPABET = {
    "aɪə": "AY ER", "aɪ": "AY", "aʊ": "AW", "eɪ": "EY", "oʊ": "OW", "ɔɪ": "OY", "əʊ": "OW",
    "tʃ": "CH", "dʒ": "JH", "iː": "IY", "uː": "UW", "ɑː": "AA", "ɔː": "AO", "ɜː": "ER", "oː": "AO",
    "ɑːɹ": "AA R", "ɔːɹ": "AO R", "oːɹ": "AO R", "ɛɹ": "EH R", "ɪɹ": "IH R", "ʊɹ": "UH R", "ɚ": "ER", "ɝ": "ER",
    "i": "IY", "ɪ": "IH", "ᵻ": "IH", "e": "EY", "ɛ": "EH", "æ": "AE", "a": "AA", "ɑ": "AA", "ɒ": "AA",
    "ɔ": "AO", "o": "OW", "ʊ": "UH", "u": "UW", "ʌ": "AH", "ə": "AH", "ɐ": "AH",
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "ɡ": "G", "g": "G", "f": "F", "v": "V", "θ": "TH",
    "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH", "ʒ": "ZH", "h": "HH", "m": "M", "n": "N", "ŋ": "NG",
    "l": "L", "ɹ": "R", "r": "R", "w": "W", "j": "Y", "ɾ": "T", "ʔ": "T", "x": "K", "ç": "HH", "ɬ": "L",
}
IGNORED_IPA = set("ˈˌː‿ˑ. -") | {"\u0329", "\u032f", "\u0303"}  # stress, length, ties, syllabic marks
_IPA_KEYS = sorted(IPA_TO_ARPABET, key=len, reverse=True)


@dataclass(frozen=True)
class Domain:
    """A built adaptation: paths PocketSphinx reads, and what was added."""

    name: str
    dict_path: Path
    lm_path: Path
    added_words: dict[str, str]  # word -> ARPAbet phones added to the dictionary (incl. alternates)
    vocabulary_size: int
    names: tuple[str, ...]  # the world's proper-noun words (lowercase)
    language_weight: float = 5.5  # the decoder's LM weight with this model (5.5: chosen on the tuning set)
    new_words: dict[str, str] | None = None  # "names" mode: words the general LM lacks, added per stream (Decoder.add_word)

    def pronunciations(self, word: str) -> list[str]:
        """Every pronunciation of ``word`` in this domain (its dictionary file and the words added per stream)."""
        word = word.lower()
        out = [self.new_words[word]] if self.new_words and word in self.new_words else []
        with open(self.dict_path, encoding="utf-8") as f:
            for line in f:
                head, _, phones = line.rstrip("\n").partition(" ")
                if head == word or (head.startswith(word + "(") and head.endswith(")")):
                    out.append(phones.strip())
        return out


def ipa_to_arpabet(ipa: str) -> str:
    """espeak-ng IPA (one word) as space-separated ARPAbet; unknown symbols raise ValueError."""
    ipa = unicodedata.normalize("NFC", ipa.strip())
    phones: list[str] = []
    i = 0
    while i < len(ipa):
        if ipa[i] in IGNORED_IPA:
            i += 1
            continue
        for key in _IPA_KEYS:
            if ipa.startswith(key, i):
                phones.extend(IPA_TO_ARPABET[key].split())
                i += len(key)
                break
        else:
            raise ValueError(f"no ARPAbet symbol for IPA {ipa[i]!r} (U+{ord(ipa[i]):04X}) in {ipa!r}")
    return " ".join(phones)


def espeak_pronunciations(words: Iterable[str], voice: str = "en-us") -> dict[str, str]:
    """ARPAbet pronunciations from espeak-ng for ``words`` (one espeak call for all of them)."""
    words = [w for w in dict.fromkeys(words) if w]
    if not words:
        return {}
    try:
        out = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", voice], input="\n".join(words) + "\n",
                             capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    except FileNotFoundError:
        raise RuntimeError("espeak-ng is not installed (Debian: apt install espeak-ng); it gives the domain words' "
                           "pronunciations") from None
    out = [line for line in out if line.strip()]
    if len(out) != len(words):
        raise RuntimeError(f"espeak-ng returned {len(out)} lines for {len(words)} words")
    prons = {}
    for word, ipa in zip(words, out, strict=True):
        try:
            phones = ipa_to_arpabet(ipa.replace(" ", ""))
        except ValueError:
            continue  # a symbol outside the table (rare foreign sounds): leave the word out
        if phones:
            prons[word] = phones
    return prons


def normalize(text: str) -> list[str]:
    """Lowercase ASCII words (accents folded, digits and punctuation dropped), as the recogniser writes them."""
    text = unicodedata.normalize("NFKD", text.replace("’", "'")).encode("ascii", "ignore").decode().lower()
    return WORD.findall(text)


def model_dir() -> Path:
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us"


def read_cmudict(path: Path | None = None) -> dict[str, list[str]]:
    """The wheel's CMU dictionary: word -> its pronunciations."""
    prons: dict[str, list[str]] = defaultdict(list)
    with open(path or model_dir() / "cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            head, _, phones = line.strip().partition(" ")
            prons[re.sub(r"\(\d+\)$", "", head)].append(phones.strip())
    return dict(prons)


def general_unigrams(words: Iterable[str]) -> dict[str, float]:
    """log10 unigram probabilities of ``words`` in the wheel's general English model."""
    import pocketsphinx as ps

    lm = ps.NGramModel(ps.Config(loglevel="FATAL"), ps.LogMath(), str(model_dir() / "en-us.lm.bin"))
    scale = math.log10(LOGMATH_BASE)
    out = {}
    for w in words:
        v = lm.prob([w])
        if v > -2e8:  # unknown words come back as a huge negative sentinel
            out[w] = v * scale
    return out


def domain_text(character: str | None = None, world=None) -> tuple[list[str], list[str], list[str]]:
    """In-domain text: the novel's sentences and the persona files; the questions (the novel's own
    questions, question frames filled with the world's names); and the names (lowercase words)."""
    import sqlite3

    from anima.thinker.persona import all_personas, load_persona
    from anima.thinker.world import WORLD_ASSET

    path = Path(world) if world is not None else WORLD_ASSET
    if not path.is_file():
        raise FileNotFoundError(f"world database not found: {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        novel = [r[0] for r in conn.execute("SELECT text FROM chapters ORDER BY idx")]
        lines = [r[0] for r in conn.execute("SELECT text FROM lines")]
        entities = [(r[0], r[1]) for r in conn.execute("SELECT name, kind FROM entities WHERE kind != 'user'")]
        aliases = [r[0] for r in conn.execute("SELECT alias FROM aliases")]
    finally:
        conn.close()
    personas = [load_persona(character)] if character else all_personas()
    split = [s.strip() for text in novel + lines for s in re.split(r"(?<=[.!?;:])\s+|[\n—–()\"“”]", text)]
    sentences = [s for s in split if s and not s.endswith("?")]
    questions = [s for s in split if s.endswith("?")]
    for p in personas:
        sentences += [p.about, p.style, *p.goals, *p.openers, *p.closers, *(t.reply for t in p.taboos)]
        sentences += [r for rs in p.replies.values() for r in rs] + [line.text for line in p.lines]
    things = [name for name, _ in entities] + aliases
    for x in things:
        questions += [frame.format(x=x) for frame in QUESTION_FRAMES]
    for a in ADDRESS:
        questions += [f"{a} {frame.format(x=x)}" for frame in QUESTION_FRAMES[:3] for x in things[:60]]
    proper = {w for name in things for w in re.findall(r"[A-Z][\w'’-]*", name)}
    names = sorted({w for p in proper for w in normalize(p)})
    return [s for s in sentences if s], questions, names


def train_arpa(sentences: list[list[str]], vocab: set[str], general: dict[str, float], general_weight: float,
               discount: float = 0.7) -> str:
    """An ARPA trigram model: absolute discounting with backoff; unigrams mixed with the general model.

    Sentences are word lists (``<s>``/``</s>`` are added); words outside ``vocab`` split a sentence.
    """
    counts: list[Counter] = [Counter(), Counter(), Counter()]
    for words in sentences:
        seq = ["<s>"] + [w if w in vocab else None for w in words] + ["</s>"]
        for n in (1, 2, 3):
            for i in range(len(seq) - n + 1):
                gram = tuple(seq[i : i + n])
                if None not in gram and gram != ("<s>",):
                    counts[n - 1][gram] += 1
    words = sorted(vocab | {"</s>"})
    total = sum(c for g, c in counts[0].items())
    gen_total = sum(10 ** general.get(w, -99) for w in words)
    p1 = {}
    for w in words:
        p_dom = (counts[0][(w,)] + 0.5) / (total + 0.5 * len(words))
        p_gen = 10 ** general.get(w, -99) / gen_total if w in general else 0.0
        p1[w] = (1 - general_weight) * p_dom + general_weight * p_gen
    p1["<s>"] = 0.0

    def conditional(n: int, lower) -> tuple[dict, dict]:
        """Seen n-gram probabilities and the backoff weight of each context, from ``lower`` (n-1)."""
        by_ctx: dict[tuple, list] = defaultdict(list)
        for gram, c in counts[n - 1].items():
            by_ctx[gram[:-1]].append((gram[-1], c))
        probs, bows = {}, {}
        for ctx, items in by_ctx.items():
            ctx_total = sum(c for _, c in items)
            left = discount * len(items) / ctx_total
            seen_lower = 0.0
            for w, c in items:
                pl = lower(ctx[1:] + (w,))
                probs[ctx + (w,)] = (c - discount) / ctx_total + left * pl
                seen_lower += pl
            seen = sum(probs[ctx + (w,)] for w, _ in items)
            bows[ctx] = max(1e-12, 1.0 - seen) / max(1e-12, 1.0 - seen_lower)
        return probs, bows

    p2, bow1 = conditional(2, lambda g: p1[g[0]])

    def lower2(g: tuple) -> float:
        return p2.get(g, bow1.get(g[:1], 1.0) * p1[g[1]])

    p3, bow2 = conditional(3, lower2)

    def lg(p: float) -> str:
        return f"{math.log10(p):.4f}" if p > 0 else "-99"

    out = ["\\data\\", f"ngram 1={len(words) + 1}", f"ngram 2={len(p2)}", f"ngram 3={len(p3)}", "", "\\1-grams:"]
    for w in ["<s>", *words]:
        out.append(f"{lg(p1[w]) if w != '<s>' else '-99'}\t{w}\t{lg(bow1.get((w,), 1.0))}")
    out += ["", "\\2-grams:"]
    for g in sorted(p2):
        out.append(f"{lg(p2[g])}\t{' '.join(g)}\t{lg(bow2.get(g, 1.0))}")
    out += ["", "\\3-grams:"]
    out += [f"{lg(p3[g])}\t{' '.join(g)}" for g in sorted(p3)]
    out += ["", "\\end\\", ""]
    return "\n".join(out)


def build_domain(character: str | None = None, world: str | Path | None = None, general_words: int = 3000,
                 general_weight: float = 0.3, question_weight: int = 5, language_weight: float = 5.5,
                 cache_dir: Path | None = None, mode: str = "names") -> Domain:
    """Build (or reuse the cached) dictionary + language model for ``character``'s world (all characters if None).

    ``question_weight`` counts each question that many times (visitors ask questions; the novel
    mostly narrates); ``language_weight`` is the decoder's LM weight (PocketSphinx's ``lw``).
    ``mode="names"`` keeps the general language model and adds the names: the full CMU dictionary
    plus the names' espeak pronunciations, and the names the general model lacks added to it
    (``Decoder.add_word``, PocketSphinx's default unigram weight); ``mode="lm"`` uses the domain
    trigram model. (Raising the unigram of a name the general model already has, with
    ``NGramModel.add_word``, crashes pocketsphinx 5.1.1, so "nautilus" keeps its general weight.)
    """
    if mode not in ("names", "lm"):
        raise ValueError(f"mode must be 'names' or 'lm', got {mode!r}")
    if not 0.0 <= general_weight < 1.0:
        raise ValueError(f"general_weight must be in [0, 1), got {general_weight}")
    if general_words < 0:
        raise ValueError(f"general_words must be >= 0, got {general_words}")
    if question_weight < 1:
        raise ValueError(f"question_weight must be >= 1, got {question_weight}")
    sentences, questions, names = domain_text(character, world)
    sentences = sentences + questions * question_weight
    key = hashlib.sha256(json.dumps([sentences, names, general_words, general_weight, mode, 6]).encode()).hexdigest()[:16]
    if cache_dir is None:
        from anima.thinker.world import data_home

        cache_dir = data_home() / "asr"
    out = Path(cache_dir) / f"{character or 'all'}-{mode}-{key}"
    dict_path, lm_path, meta_path = out / "domain.dict", out / "domain.arpa", out / "domain.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return Domain(meta["name"], dict_path, Path(meta["lm"]), meta["added_words"], meta["vocabulary_size"], tuple(meta["names"]),
                      language_weight, _new_words(mode, meta))

    cmu = read_cmudict()
    tokenized = [normalize(s) for s in sentences] if mode == "lm" else []
    domain_words = {w for ws in tokenized for w in ws}  # names mode needs only the names
    missing = sorted(w for w in domain_words | set(names) if w not in cmu)
    alternates = [w for w in names if w in cmu]
    espeak = espeak_pronunciations(missing + alternates)
    added = {w: espeak[w] for w in missing if w in espeak}
    for w in alternates:
        if w in espeak and espeak[w] not in cmu[w]:
            added[f"{w}(alt)"] = espeak[w]
    if mode == "lm":
        general_all = general_unigrams(w for w in cmu if WORD.fullmatch(w))
        top = sorted(general_all, key=general_all.get, reverse=True)[:general_words]
        vocab = {w for w in domain_words if w in cmu or w in added} | set(top)
        arpa = train_arpa(tokenized, vocab, general_all, general_weight)
    else:  # the whole CMU dictionary (the general model's words) plus the domain's
        vocab = set(cmu)  # the names the general model lacks are added per stream (they must be new words there)
        arpa = ""

    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for w in sorted(vocab):
        prons = cmu.get(w, []) + [p for k, p in added.items() if k in (w, f"{w}(alt)")]
        prons = list(dict.fromkeys(prons))
        entries += [f"{w} {p}" if i == 0 else f"{w}({i + 1}) {p}" for i, p in enumerate(prons)]
    tmp = out / "domain.dict.tmp"
    tmp.write_text("\n".join(entries) + "\n", encoding="utf-8")
    tmp.replace(dict_path)
    if arpa:
        tmp = out / "domain.arpa.tmp"
        tmp.write_text(arpa, encoding="utf-8")
        tmp.replace(lm_path)
    else:
        lm_path = model_dir() / "en-us.lm.bin"
    name = f"{character or 'all characters'} ({Path(world).name if world else 'shipped world'})"
    general_names = general_unigrams(names)
    meta = {"name": name, "added_words": added, "vocabulary_size": len(vocab), "names": names, "lm": str(lm_path),
            "not_in_general_lm": [w for w in names if w not in general_names and w in added]}
    meta_path.write_text(json.dumps(meta, indent=1))
    return Domain(name, dict_path, lm_path, added, len(vocab), tuple(names), language_weight,
                  _new_words(mode, meta))


def _new_words(mode: str, meta: dict) -> dict[str, str] | None:
    return {w: meta["added_words"][w] for w in meta["not_in_general_lm"]} if mode == "names" else None
