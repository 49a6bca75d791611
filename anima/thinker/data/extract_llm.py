"""LLM extraction: a chat model reads each chapter in chunks and adds entities and facts.

Used by ``anima world build --llm-url URL --llm-model M`` on top of the offline extraction. Each
chunk's reply must be JSON ``{"entities": [{"name", "kind", "description"}], "facts": [{"subject",
"predicate", "object", "statement", "evidence"}]}``; everything gets the chunk's chapter as its story
time (a model reading one chunk cannot know the future), ``evidence`` (a short verbatim quote) is
located in the chapter for the source span, and names are merged with the offline entities by
alias. A chunk whose reply fails or is malformed is skipped and counted; if every chunk fails the
build stops with the reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from anima.thinker.data.extract import KINDS, Entity, Extraction, Fact
from anima.thinker.llm import ChatClient, LLMConfig, LLMError, _json_object

log = logging.getLogger(__name__)
CHUNK_CHARS = 3500
PROMPT = (
    "Extract a knowledge graph from this passage of a novel. Reply with one JSON object: "
    '{"entities": [{"name": "...", "kind": one of ' + json.dumps([k for k in KINDS if k != "user"]) + ', '
    '"description": "one sentence"}], "facts": [{"subject": "entity name", "predicate": "short verb phrase", '
    '"object": "entity name or null", "statement": "one self-contained sentence in the third person", '
    '"evidence": "a short exact quote from the passage"}]}. Only what the passage states; at most 12 facts.'
)


@dataclass
class LLMExtractor:
    """Callable on an Extraction: adds the model's entities and facts in place."""

    config: LLMConfig
    chunk_chars: int = CHUNK_CHARS

    def __post_init__(self) -> None:
        self.client = ChatClient(self.config)
        self.failures = 0
        self.chunks = 0

    def _chunks(self, paragraphs: list[str]) -> list[str]:
        chunks, current = [], ""
        for p in paragraphs:
            if current and len(current) + len(p) > self.chunk_chars:
                chunks.append(current)
                current = ""
            current += p + "\n\n"
        if current.strip():
            chunks.append(current)
        return chunks

    def __call__(self, ex: Extraction) -> None:
        by_alias = {a.lower(): e.key for e in ex.entities.values() for a in e.aliases}
        for chapter in ex.chapters:
            text = chapter.text
            for chunk in self._chunks(chapter.paragraphs):
                self.chunks += 1
                try:
                    reply = self.client.complete([{"role": "system", "content": PROMPT},
                                                  {"role": "user", "content": chunk}])
                    data = _json_object(reply)
                    if data is None:
                        raise ValueError(f"not JSON: {reply[:60]!r}")
                except (LLMError, ValueError) as exc:
                    self.failures += 1
                    log.warning("LLM extraction skipped a chunk of chapter %d: %s", chapter.index, exc)
                    continue
                self._merge(ex, data, chapter.index, text, by_alias)
        if self.chunks and self.failures == self.chunks:
            raise ValueError(f"LLM extraction failed on every chunk ({self.chunks}); see the warnings")

    @staticmethod
    def _merge(ex: Extraction, data: dict, chapter: int, text: str, by_alias: dict[str, str]) -> None:
        def entity(name: object, kind: object = "object", description: object = "") -> str | None:
            if not isinstance(name, str) or not name.strip() or len(name) > 80:
                return None
            name = " ".join(name.split())
            key = by_alias.get(name.lower())
            if key is None:
                kind = kind if kind in KINDS and kind != "user" else "object"
                ex.entities[name] = Entity(name, kind, chapter, {name}, 1, str(description)[:300], origin="llm")
                by_alias[name.lower()] = key = name
            elif ex.entities[key].known_from > chapter:
                ex.entities[key].known_from = chapter
            return key

        for raw in data.get("entities") or []:
            if isinstance(raw, dict):
                entity(raw.get("name"), raw.get("kind"), raw.get("description", ""))
        for raw in (data.get("facts") or [])[:24]:
            if not isinstance(raw, dict) or not isinstance(raw.get("statement"), str) or not raw["statement"].strip():
                continue
            subject = entity(raw.get("subject"))
            if subject is None:
                continue
            obj = entity(raw.get("object")) if raw.get("object") else None
            evidence = raw.get("evidence") if isinstance(raw.get("evidence"), str) else ""
            start = text.find(evidence) if evidence.strip() else -1
            span = (start, start + len(evidence)) if start >= 0 else None
            statement = " ".join(raw["statement"].split())[:400]
            ex.facts.append(Fact(subject, str(raw.get("predicate") or "related to")[:60], obj, statement, chapter,
                                 chapter, span, origin="llm", speaker=None))
