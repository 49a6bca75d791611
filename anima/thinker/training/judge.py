"""A CharacterBox-style judge (Wang et al.; Paitesanshi/CharacterBox, MIT): an LLM scores one in-character
reply on the seven CharacterBox dimensions, 1-5 each, with a reason.

    judge = CharacterBoxJudge(LLMConfig(base_url="http://localhost:8080/v1", model="qwen2.5-7b-instruct"))
    verdict = judge.score(persona, story_time=12, question="Who built the Nautilus?", reply="I did, sir.")
    verdict.scores   # {"KA": 4.0, "BA": 5.0, ...}; a dimension the judge did not score is absent, never guessed

    anima eval characterbox --judge-url URL --judge-model M [--suite DIR] [--limit N] [--json out.json]

The judge answers through the OpenAI-compatible slot (``anima.thinker.llm``). Its reply is read
leniently (JSON inside prose or a code fence; full names or abbreviations as keys; "4/5" or "4"
as scores; a bare number or an object with ``score``/``reason``) and validated: a score must lie in
[1, 5]. If any dimension is missing or invalid, the judge is asked once more with the problems
named; whatever is still missing after that stays missing. Without a judge no CB number exists:
``run_characterbox`` is only called with one, and the IIS report says "no judge: CB not measured".
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict, dataclass, field

from anima.thinker.llm import ChatClient, LLMConfig, LLMError

DIMENSIONS = {
    "KA": "Knowledge Accuracy: the facts the character states are right for the story at this point, "
          "and it knows what it should and no more",
    "BA": "Behavioural Accuracy: it acts and speaks as this character would (manner, habits, catchphrases)",
    "EE": "Emotional Expression: emotions fit the character and the situation and are conveyed naturally",
    "PT": "Personality Traits: its personality, values and attitudes are those of the character",
    "IM": "Immersion: it stays inside the story's world; no assistant talk, no modern knowledge, no frame breaking",
    "AD": "Adaptability: it responds sensibly to what was actually asked, including unexpected or hostile input",
    "BC": "Behavioural Coherence: the reply is logically consistent with itself, the story so far and the question",
}
_ALIASES = {
    "KA": ("knowledge accuracy", "knowledge"), "BA": ("behavioural accuracy", "behavioral accuracy", "behavior accuracy"),
    "EE": ("emotional expression", "emotion"), "PT": ("personality traits", "personality"),
    "IM": ("immersion",), "AD": ("adaptability", "adaptation"),
    "BC": ("behavioural coherence", "behavioral coherence", "coherence"),
}


class JudgeError(ValueError):
    """The judge's reply held no usable scores; the message says what was wrong."""


@dataclass
class Verdict:
    scores: dict[str, float]  # dimension -> 1..5, only the ones the judge gave validly
    reasons: dict[str, str]
    problems: list[str] = field(default_factory=list)  # what was wrong with the reply(s)
    attempts: int = 1

    @property
    def complete(self) -> bool:
        return set(self.scores) == set(DIMENSIONS)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores.values()) if self.scores else None


def _key(name: str) -> str | None:
    norm = re.sub(r"[_\-\s]+", " ", name.strip().lower())
    if norm.upper() in DIMENSIONS:
        return norm.upper()
    for key, names in _ALIASES.items():
        if norm in names or norm.replace(" ", "") in {n.replace(" ", "") for n in names}:
            return key
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = re.match(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*5)?\s*$", value)
        return float(match.group(1)) if match else None
    return None


def _json_object(text: str) -> dict | None:
    """The first JSON object in ``text`` (bare, fenced, or inside prose)."""
    text = re.sub(r"```(?:json)?", "", text)
    start = text.find("{")
    while start != -1:
        depth = 0
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                try:
                    data = json.loads(text[start:i + 1])
                except json.JSONDecodeError:
                    break
                return data if isinstance(data, dict) else None
        start = text.find("{", start + 1)
    return None


def parse_verdict(text: str) -> Verdict:
    """Scores and reasons from a judge's reply, with each problem named (never raises on bad content)."""
    data = _json_object(text)
    if data is None:
        return Verdict({}, {}, [f"no JSON object in the reply: {text[:80]!r}"])
    if isinstance(data.get("scores"), dict):  # {"scores": {...}} wrapper
        data = data["scores"]
    scores, reasons, problems = {}, {}, []
    for name, raw in data.items():
        key = _key(str(name))
        if key is None:
            continue
        reason = ""
        if isinstance(raw, dict):
            reason = str(raw.get("reason", raw.get("explanation", "")))
            raw = raw.get("score", raw.get("value"))
        value = _number(raw)
        if value is None:
            problems.append(f"{key}: score {raw!r} is not a number")
        elif not 1.0 <= value <= 5.0:
            problems.append(f"{key}: score {value:g} is outside 1-5")
        else:
            scores[key], reasons[key] = value, reason[:300]
    missing = [k for k in DIMENSIONS if k not in scores and not any(p.startswith(f"{k}:") for p in problems)]
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    return Verdict(scores, reasons, problems)


class CharacterBoxJudge:
    """The seven CharacterBox dimensions of one reply, through any OpenAI-compatible server."""

    def __init__(self, config: LLMConfig, retries: int = 1) -> None:
        self.client = ChatClient(config)
        self.model = config.model
        self.retries = retries

    def messages(self, persona_name: str, persona_text: str, story_time: int, question: str, reply: str) -> list[dict]:
        rubric = "\n".join(f"- {k}: {v}" for k, v in DIMENSIONS.items())
        system = ("You are an impartial judge of role-play, scoring as in the CharacterBox benchmark. The story is "
                  "Jules Verne's Twenty Thousand Leagues Under the Seas. Score the character's reply on each "
                  "dimension from 1 (very poor) to 5 (excellent):\n" + rubric +
                  '\nAnswer with JSON only: {"KA": {"score": 1-5, "reason": "..."}, "BA": {...}, "EE": {...}, '
                  '"PT": {...}, "IM": {...}, "AD": {...}, "BC": {...}}')
        user = (f"Character: {persona_name}\nWho they are: {persona_text}\nStory time: chapter {story_time} "
                f"(the character knows nothing that happens later)\nQuestion: {question}\nReply: {reply}")
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def score(self, persona_name: str, persona_text: str, story_time: int, question: str, reply: str) -> Verdict:
        """Ask, validate, and ask again (once by default) naming what was wrong. Raises ``LLMError`` if the
        server fails; returns a Verdict with the valid scores otherwise (possibly incomplete)."""
        messages = self.messages(persona_name, persona_text, story_time, question, reply)
        best: Verdict | None = None
        problems: list[str] = []
        for attempt in range(1, self.retries + 2):
            text = self.client.complete(messages)
            verdict = parse_verdict(text)
            problems += verdict.problems
            if best is None:
                best = verdict
            else:  # keep valid scores from either attempt; the later answer wins where both are valid
                best.scores.update(verdict.scores)
                best.reasons.update(verdict.reasons)
            best.attempts = attempt
            if best.complete:
                break
            messages = messages + [{"role": "assistant", "content": text},
                                   {"role": "user", "content": "Your answer could not be used: " + "; ".join(verdict.problems)
                                    + ". Reply again with JSON only, every one of KA, BA, EE, PT, IM, AD, BC scored 1-5."}]
        assert best is not None
        best.problems = problems
        return best


def run_characterbox(items: list, world, judge: CharacterBoxJudge, llm: LLMConfig | None = None, gate: bool = True,
                     progress: bool = False) -> dict:
    """Answer every suite item with a fresh StoryThinker and judge the reply on the seven dimensions.

    ``items`` are ``evaluate.Item``s (any suite). Returns {judge, n, judged, complete, failed, means: {dim: mean},
    cb (mean over replies of each reply's dimension mean, replies with at least one valid score), items: [...]}.
    """
    from anima.thinker.base import ThinkerContext
    from anima.thinker.persona import PersonaError, load_persona
    from anima.thinker.retrieval import shared_retriever
    from anima.thinker.story import StoryThinker

    retriever = shared_retriever(world)
    rows = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="characterbox", unit="item")
    for item in items:
        row = {"id": item.id, "suite": item.suite, "character": item.character, "story_time": item.story_time,
               "question": item.prompt}
        try:
            persona = load_persona(item.character)
            thinker = StoryThinker(world, persona, item.story_time, retriever, llm=llm, user_id="eval",
                                   remember=False, gate=gate)
            row["reply"] = thinker.respond(item.prompt, ThinkerContext()).speech
            verdict = judge.score(persona.name, _persona_text(persona), item.story_time, item.prompt, row["reply"])
            row.update(asdict(verdict), mean=verdict.mean)
        except (PersonaError, ValueError) as exc:
            row.update(error=f"item: {exc}")
        except LLMError as exc:
            row.update(error=f"judge failed: {exc}")
        rows.append(row)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    judged = [r for r in rows if r.get("scores")]
    means = {k: statistics.fmean(r["scores"][k] for r in judged if k in r["scores"])
             for k in DIMENSIONS if any(k in r["scores"] for r in judged)}
    return {"judge": judge.model, "n": len(rows), "judged": len(judged),
            "complete": sum(set(r["scores"]) == set(DIMENSIONS) for r in judged),
            "failed": [{"id": r["id"], "error": r.get("error") or "; ".join(r.get("problems", []))}
                       for r in rows if not r.get("scores")],
            "means": means, "cb": statistics.fmean(r["mean"] for r in judged) if judged else None, "items": rows}


def _persona_text(persona) -> str:
    """The character for the judge: who they are (first person), traits, values and speaking style."""
    parts = [persona.about.strip()]
    if persona.traits:
        parts.append("Traits: " + ", ".join(persona.traits) + ".")
    if persona.values:
        parts.append("Values: " + ", ".join(persona.values) + ".")
    if persona.style:
        parts.append("Speaks: " + persona.style.strip())
    return " ".join(p for p in parts if p)[:800]


def format_characterbox(report: dict) -> str:
    if report.get("cb") is None:
        return f"characterbox ({report.get('judge')}): no reply could be judged ({len(report['failed'])} failed)"
    dims = "  ".join(f"{k} {report['means'][k]:.2f}" if k in report["means"] else f"{k} -" for k in DIMENSIONS)
    return (f"characterbox (judge {report['judge']}): CB {report['cb']:.3f} over {report['judged']}/{report['n']} replies "
            f"({report['complete']} with all seven)\n  {dims}")
