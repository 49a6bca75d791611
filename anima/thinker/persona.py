"""Personas: who a character is, how they speak, what they will not talk about (YAML files).

    persona = load_persona("nemo")          # a shipped persona by key (or "Captain Nemo", "ned land")
    persona = load_persona(Path("my.yaml"))  # your own file

The shipped personas live in ``anima/assets/personas/*.yaml``. Each has traits, values, a speaking
style, taboos (topics it will not discuss, with trigger keywords and an in-character reply), the
in-character replies of the offline responder, and the character's own lines from the novel with
the chapter (story time) each is spoken in. ``attribution`` says how the novel names the speaker;
the world build uses it to attribute quoted speech.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from anima.core.plan import EMOTIONS
from anima.thinker.data.extract import Attribution

PERSONA_DIR = Path(__file__).resolve().parent.parent / "assets" / "personas"
REPLY_KINDS = ("greeting", "farewell", "thanks", "decline", "ai", "jailbreak", "unknown_future", "unknown",
               "uncertain", "remember_user", "noted", "no_user_memory", "empty", "more")
TOP_KEYS = {"key", "name", "entity", "voice", "first_chapter", "default_story_time", "about", "traits", "values",
            "speaking_style", "resting_emotion", "narrator", "attribution", "goals", "taboos", "replies", "lines",
            "interrupts"}


class PersonaError(ValueError):
    """An unknown character or a malformed persona file; the message names the problem."""


@dataclass(frozen=True)
class Taboo:
    topic: str
    keywords: tuple[str, ...]
    reply: str


@dataclass(frozen=True)
class Interrupts:
    """When the character cuts a visitor off: its patience, the words it cannot let pass, how it cuts in."""

    patience_s: float = 15.0  # seconds a visitor may hold the floor before the character cuts in
    urgent: tuple[str, ...] = ()  # words or phrases that make it cut in at once
    cut_in: tuple[str, ...] = ("Forgive me,",)  # how it opens a reply that cuts the visitor off


@dataclass(frozen=True)
class PersonaLine:
    chapter: int
    text: str


@dataclass(frozen=True)
class Persona:
    key: str  # short id: nemo, aronnax, conseil, ned
    name: str  # display name
    entity: str  # the world entity for this character
    voice: str  # espeak-ng voice
    about: str  # first-person self-description
    traits: tuple[str, ...]
    values: tuple[str, ...]
    style: str  # speaking style, in words (for LLM prompts)
    address: str  # how they address the visitor
    openers: tuple[str, ...]
    closers: tuple[str, ...]
    resting_emotion: str
    narrator: bool  # the novel's first-person "I"
    first_chapter: int
    default_story_time: int
    goals: tuple[str, ...]
    taboos: tuple[Taboo, ...]
    replies: dict[str, tuple[str, ...]] = field(hash=False)
    lines: tuple[PersonaLine, ...] = ()
    attribution: tuple[tuple[str, int, int], ...] = ()  # (alias, first chapter, last chapter)
    interrupts: Interrupts = Interrupts()

    def attributions(self) -> list[Attribution]:
        return [Attribution(self.entity, alias, first, last) for alias, first, last in self.attribution]

    def lines_until(self, story_time: int) -> list[PersonaLine]:
        """The character's own lines spoken at or before ``story_time`` (the gate applies here too)."""
        return [line for line in self.lines if line.chapter <= story_time]


def _need(where: str, data: dict, key: str, kind: type) -> Any:
    if key not in data:
        raise PersonaError(f"{where}: missing '{key}'")
    value = data[key]
    if not isinstance(value, kind):
        raise PersonaError(f"{where}: '{key}' must be {kind.__name__}, got {type(value).__name__}")
    return value


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PersonaError(f"{where}: expected a list of text")
    return tuple(value)


def parse_persona(data: Any, where: str = "persona") -> Persona:
    """Validate a parsed persona YAML document (raises PersonaError naming the field)."""
    if not isinstance(data, dict):
        raise PersonaError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise PersonaError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(TOP_KEYS))}")
    style = _need(where, data, "speaking_style", dict)
    replies_raw = _need(where, data, "replies", dict)
    missing = [k for k in REPLY_KINDS if not replies_raw.get(k)]
    if missing:
        raise PersonaError(f"{where}: replies lack {', '.join(missing)}")
    replies = {k: _strings(f"{where}: replies.{k}", v) for k, v in replies_raw.items()}
    taboos = []
    for i, t in enumerate(data.get("taboos") or [], start=1):
        if not isinstance(t, dict) or not {"topic", "keywords", "reply"} <= set(t):
            raise PersonaError(f"{where}: taboo {i} needs topic, keywords and reply")
        taboos.append(Taboo(str(t["topic"]), tuple(k.lower() for k in _strings(f"{where}: taboo {i}", t["keywords"])), str(t["reply"])))
    lines = []
    for i, ln in enumerate(data.get("lines") or [], start=1):
        if not isinstance(ln, dict) or not isinstance(ln.get("chapter"), int) or not isinstance(ln.get("text"), str):
            raise PersonaError(f"{where}: line {i} needs an integer chapter and text")
        lines.append(PersonaLine(ln["chapter"], ln["text"]))
    attribution = []
    for i, a in enumerate(data.get("attribution") or [], start=1):
        if not isinstance(a, dict) or not isinstance(a.get("alias"), str):
            raise PersonaError(f"{where}: attribution {i} needs an alias")
        attribution.append((a["alias"], int(a.get("from", 1)), int(a.get("until", 10**6))))
    raw = data.get("interrupts") or {}
    if not isinstance(raw, dict) or set(raw) - {"patience_s", "urgent", "cut_in"}:
        raise PersonaError(f"{where}: 'interrupts' takes patience_s, urgent and cut_in")
    patience = raw.get("patience_s", Interrupts.patience_s)
    if not isinstance(patience, (int, float)) or not 0 < patience <= 600:
        raise PersonaError(f"{where}: interrupts.patience_s must be seconds in (0, 600], got {patience!r}")
    interrupts = Interrupts(float(patience), _strings(f"{where}: interrupts.urgent", raw.get("urgent", [])),
                            _strings(f"{where}: interrupts.cut_in", raw.get("cut_in", list(Interrupts.cut_in))))
    emotion = str(data.get("resting_emotion", "neutral"))
    if emotion not in EMOTIONS:
        raise PersonaError(f"{where}: unknown resting_emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}")
    return Persona(
        key=str(_need(where, data, "key", str)), name=str(_need(where, data, "name", str)),
        entity=str(data.get("entity", data["name"])), voice=str(data.get("voice", "en-gb")),
        about=" ".join(str(_need(where, data, "about", str)).split()),
        traits=_strings(f"{where}: traits", data.get("traits", [])),
        values=_strings(f"{where}: values", data.get("values", [])),
        style=str(style.get("description", "")), address=str(style.get("address", "sir")),
        openers=_strings(f"{where}: speaking_style.openers", style.get("openers", [""])),
        closers=_strings(f"{where}: speaking_style.closers", style.get("closers", [""])),
        resting_emotion=emotion, narrator=bool(data.get("narrator", False)),
        first_chapter=int(data.get("first_chapter", 1)), default_story_time=int(data.get("default_story_time", 1)),
        goals=_strings(f"{where}: goals", data.get("goals", [])), taboos=tuple(taboos), replies=replies,
        lines=tuple(lines), attribution=tuple(attribution), interrupts=interrupts,
    )


def persona_keys() -> list[str]:
    """The keys of the shipped personas."""
    return sorted(p.stem for p in PERSONA_DIR.glob("*.yaml"))


@lru_cache(maxsize=32)
def _load_file(path: Path) -> Persona:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PersonaError(f"{path}: cannot read persona ({exc})") from None
    return parse_persona(data, str(path))


def load_persona(character: str | Path) -> Persona:
    """A persona by key ("nemo"), name ("Captain Nemo", case-insensitive) or YAML path."""
    if isinstance(character, Path) or str(character).endswith((".yaml", ".yml")):
        path = Path(character)
        if not path.is_file():
            raise PersonaError(f"{path}: persona file not found")
        return _load_file(path.resolve())
    if not isinstance(character, str) or not character.strip():
        raise PersonaError(f"unknown character {character!r}; valid: {', '.join(persona_keys())}")
    wanted = " ".join(character.lower().split())
    for key in persona_keys():
        persona = _load_file((PERSONA_DIR / f"{key}.yaml").resolve())
        if wanted in {persona.key, persona.name.lower(), persona.entity.lower()} or wanted in {
                alias.lower() for alias, _, _ in persona.attribution if alias[0].isupper()}:
            return persona
    raise PersonaError(f"unknown character {character!r}; valid: {', '.join(persona_keys())}")


def all_personas() -> list[Persona]:
    return [load_persona(key) for key in persona_keys()]
