"""Conversation files: a two-party script the runtime renders (YAML).

Example::

    title: On board the Nautilus
    agent: {name: Captain Nemo, voice: en-gb+m3}
    user: {name: Visitor, voice: en-us+f3}
    pause_s: 0.6               # how long the user waits after the agent stops
    turns:
      - user: Good evening, Captain.            # text: spoken with the user's voice
      - agent: Welcome aboard the Nautilus.
        emotion: happy                          # optional: emotion, gesture, gaze
        gesture: bow
      - user: {wav: question.wav, text: What is this room?}   # a recording (+ its transcript)
      - agent: This is the salon, where I keep ...
      - user: Wait, what was that noise?
        barge_in_s: 2.5        # cut in 2.5 s after the previous agent turn started playing
      - agent: It is only the pumps ...
      - user: Do you agree?
      - agent: ""              # a silent reply: no words, only the gesture (it needs one)
        gesture: nod
      - user: Let me tell you everything about my uncle's farm, it all began when ...
        agent_interrupts_s: 3  # the agent cuts the user off 3 s into this turn (and the user stops)

User and agent turns alternate, starting with the user; each user turn is answered by the agent
turn after it (the scripted thinker). Paths are relative to the YAML file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from anima.core.plan import ActionPlan

MAX_TURN_CHARS = 10_000
TOP_KEYS = {"title", "agent", "user", "pause_s", "turns", "seed"}
PARTY_KEYS = {"name", "voice"}
USER_TURN_KEYS = {"user", "barge_in_s", "pause_s", "agent_interrupts_s"}
AGENT_TURN_KEYS = {"agent", "emotion", "gesture", "gaze"}


class ConversationError(ValueError):
    """A conversation file is missing, malformed or inconsistent; the message says where."""


@dataclass
class Party:
    name: str
    voice: str


@dataclass
class UserTurnSpec:
    text: str
    wav: Path | None = None
    barge_in_s: float | None = None
    agent_interrupts_s: float | None = None  # the agent cuts in this many seconds into this user turn
    pause_s: float | None = None


@dataclass
class Conversation:
    title: str
    agent: Party
    user: Party
    user_turns: list[UserTurnSpec]
    agent_turns: list[ActionPlan]
    pause_s: float = 0.6
    seed: int = 0
    source: Path | None = field(default=None, repr=False)


def _fail(where: str, message: str) -> ConversationError:
    return ConversationError(f"{where}: {message}")


def _check_keys(where: str, data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")


def _text(where: str, value: Any) -> str:
    if isinstance(value, bool):
        raise _fail(where, f"expected text, got the YAML boolean {value}; quote it (e.g. 'yes')")
    if not isinstance(value, str):
        raise _fail(where, f"expected text, got {type(value).__name__}")
    text = " ".join(value.split())
    if not text:
        raise _fail(where, "text is empty")
    if len(text) > MAX_TURN_CHARS:
        raise _fail(where, f"text is {len(text)} characters; the limit is {MAX_TURN_CHARS} per turn")
    return text


def _number(where: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"expected a number, got {value!r}")
    if not lo <= float(value) <= hi:
        raise _fail(where, f"{value} is outside [{lo}, {hi}]")
    return float(value)


def _party(where: str, data: Any, default_name: str, default_voice: str) -> Party:
    if data is None:
        return Party(default_name, default_voice)
    if not isinstance(data, dict):
        raise _fail(where, f"expected a mapping with name/voice, got {type(data).__name__}")
    _check_keys(where, data, PARTY_KEYS)
    return Party(str(data.get("name", default_name)), str(data.get("voice", default_voice)))


def parse_conversation(data: Any, base_dir: Path | None = None, source: Path | None = None, scripted: bool = True) -> Conversation:
    """Validate a parsed YAML document into a Conversation (raises ConversationError).

    ``scripted=False`` is for thinkers that write the agent's replies themselves: user turns may
    follow each other, and agent turns in the file are optional (kept, but not needed).
    """
    where = str(source) if source else "conversation"
    if not isinstance(data, dict):
        raise _fail(where, f"expected a mapping at the top level, got {type(data).__name__}")
    _check_keys(where, data, TOP_KEYS)
    if "turns" not in data:
        raise _fail(where, "missing 'turns'")
    turns = data["turns"]
    if not isinstance(turns, list) or not turns:
        raise _fail(where, "'turns' must be a non-empty list")
    base = base_dir or Path.cwd()
    user_turns: list[UserTurnSpec] = []
    agent_turns: list[ActionPlan] = []
    expect = "user"
    for i, turn in enumerate(turns, start=1):
        tw = f"{where}: turn {i}"
        if not isinstance(turn, dict) or not ({"user", "agent"} & set(turn)):
            raise _fail(tw, "each turn needs a 'user' or an 'agent' key")
        if "user" in turn and "agent" in turn:
            raise _fail(tw, "a turn has either 'user' or 'agent', not both")
        kind = "user" if "user" in turn else "agent"
        if kind != expect and (scripted or kind == "agent" and i == 1):
            first = " (the conversation starts with the user)" if i == 1 else ""
            raise _fail(tw, f"expected a {expect} turn{first}; user and agent turns alternate")
        expect = "agent" if kind == "user" else "user"
        if kind == "user":
            _check_keys(tw, turn, USER_TURN_KEYS)
            spec = _user_turn(tw, turn["user"], base)
            if "barge_in_s" in turn:
                if not (agent_turns if scripted else user_turns):
                    raise _fail(tw, "barge_in_s needs an agent turn before it to interrupt")
                spec.barge_in_s = _number(f"{tw}: barge_in_s", turn["barge_in_s"], 0.0, 600.0)
            if "pause_s" in turn:
                spec.pause_s = _number(f"{tw}: pause_s", turn["pause_s"], 0.0, 60.0)
            if "agent_interrupts_s" in turn:
                spec.agent_interrupts_s = _number(f"{tw}: agent_interrupts_s", turn["agent_interrupts_s"], 0.0, 600.0)
            user_turns.append(spec)
        else:
            _check_keys(tw, turn, AGENT_TURN_KEYS)
            silent = turn["agent"] in ("", None) and "gesture" in turn  # a reply without words: only the gesture
            speech = "" if silent else _text(f"{tw}: agent", turn["agent"])
            try:
                plan = ActionPlan(
                    speech=speech,
                    emotion=turn.get("emotion", "neutral"),
                    gesture=turn.get("gesture", "beat"),
                    gaze=turn.get("gaze", "user"),
                )
            except ValueError as exc:
                raise _fail(tw, str(exc)) from None
            agent_turns.append(plan)
    if scripted and len(agent_turns) < len(user_turns) - 1:
        raise _fail(where, "every user turn but the last needs an agent reply")
    return Conversation(
        title=str(data.get("title", "conversation")),
        agent=_party(f"{where}: agent", data.get("agent"), "Agent", "en-gb+m3"),
        user=_party(f"{where}: user", data.get("user"), "User", "en-us+f3"),
        user_turns=user_turns,
        agent_turns=agent_turns,
        pause_s=_number(f"{where}: pause_s", data.get("pause_s", 0.6), 0.0, 60.0),
        seed=int(_number(f"{where}: seed", data.get("seed", 0), 0, 2**31)),
        source=source,
    )


def _user_turn(where: str, value: Any, base: Path) -> UserTurnSpec:
    if isinstance(value, str):
        return UserTurnSpec(_text(f"{where}: user", value))
    if isinstance(value, dict):
        _check_keys(f"{where}: user", value, {"text", "wav"})
        if "wav" not in value:
            return UserTurnSpec(_text(f"{where}: user.text", value.get("text")))
        wav = Path(str(value["wav"]))
        wav = wav if wav.is_absolute() else base / wav
        if not wav.is_file():
            raise _fail(f"{where}: user.wav", f"file not found: {wav}")
        text = _text(f"{where}: user.text", value["text"]) if "text" in value else ""
        return UserTurnSpec(text, wav=wav)
    raise _fail(f"{where}: user", f"expected text or {{wav, text}}, got {type(value).__name__}")


def load_conversation(path: str | Path, scripted: bool = True) -> Conversation:
    """Read and validate a conversation YAML file (see ``parse_conversation`` for ``scripted``)."""
    path = Path(path)
    if not path.is_file():
        raise ConversationError(f"{path}: conversation file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConversationError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError as exc:
        raise ConversationError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse_conversation(data, base_dir=path.parent, source=path, scripted=scripted)
