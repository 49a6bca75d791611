"""An OpenAI-compatible chat-completions client (streaming SSE) and action-plan parsing.

Works with any server that speaks ``POST /v1/chat/completions``: llama.cpp's ``llama-server``,
vLLM, Ollama (``http://localhost:11434/v1``), LM Studio, OpenAI. Standard library only.

    client = ChatClient(LLMConfig(base_url="http://localhost:8080/v1", model="qwen2.5-7b-instruct"))
    for delta in client.stream([{"role": "user", "content": "Hello"}]):
        print(delta, end="")
    plan = parse_plan(client.complete(messages))   # ActionPlan, repaired where it can be

Timeouts: ``connect_timeout_s`` to connect, and ``timeout_s`` for the whole reply (checked between
streamed chunks and on every socket read). Every failure (refused, timed out, HTTP error, a body
that is not the protocol) is an ``LLMError`` with a one-line reason.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from anima.core.plan import EMOTIONS, GAZE_TARGETS, GESTURES, ActionPlan

MAX_SPEECH_CHARS = 600


class LLMError(RuntimeError):
    """The backend failed: not reachable, timed out, an HTTP error, or a malformed reply."""


class PlanError(ValueError):
    """A model's reply could not be read as an action plan."""


@dataclass
class LLMConfig:
    base_url: str  # http://host:port or http://host:port/v1
    model: str = "default"  # the server's model name (llama.cpp ignores it)
    api_key: str | None = None  # sent as a Bearer token when set
    timeout_s: float = 20.0  # whole reply, including streaming
    connect_timeout_s: float = 5.0
    temperature: float = 0.6
    max_tokens: int = 300
    stream: bool = True  # server-sent events; the plan is parsed when the stream ends
    json_mode: bool = True  # ask for response_format json_object (dropped if the server refuses it)


class ChatClient:
    """Chat completions over HTTP(S). One request at a time per call; safe to share across threads."""

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        url = urllib.parse.urlsplit(config.base_url.rstrip("/"))
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise ValueError(f"LLM base URL must be http(s)://host[:port][/v1], got {config.base_url!r}")
        self._scheme, self._host = url.scheme, url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        path = url.path.rstrip("/")
        self._path = (path if path.endswith("/v1") else path + "/v1") + "/chat/completions"
        self._json_mode = config.json_mode

    def _body(self, messages: list[dict], stream: bool, **overrides) -> dict:
        body = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens, "stream": stream}
        if self._json_mode:
            body["response_format"] = {"type": "json_object"}
        body.update(overrides)
        return body

    def _open(self, body: dict) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.config.connect_timeout_s)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        try:
            conn.connect()
            conn.sock.settimeout(self.config.timeout_s)
            conn.request("POST", self._path, body=json.dumps(body), headers=headers)
            response = conn.getresponse()
        except TimeoutError:
            conn.close()
            raise LLMError(f"LLM server {self._host}:{self._port} timed out") from None
        except OSError as exc:
            conn.close()
            raise LLMError(f"LLM server {self._host}:{self._port} not reachable: {exc}") from None
        if response.status >= 400:
            detail = response.read(2000).decode("utf-8", "replace")
            conn.close()
            if response.status == 400 and self._json_mode and "response_format" in detail:
                self._json_mode = False  # this server does not take json_object; ask in the prompt only
                raise _RetryWithoutJsonMode
            raise LLMError(f"LLM server answered HTTP {response.status}: {_error_text(detail)}")
        return conn, response

    def stream(self, messages: list[dict], **overrides) -> Iterator[str]:
        """Yield the reply's text as it arrives (server-sent events)."""
        deadline = time.monotonic() + self.config.timeout_s
        try:
            conn, response = self._open(self._body(messages, True, **overrides))
        except _RetryWithoutJsonMode:
            conn, response = self._open(self._body(messages, True, **overrides))
        try:
            content_type = response.getheader("Content-Type", "")
            if "text/event-stream" not in content_type:
                # Some servers ignore "stream": read a whole JSON reply instead.
                yield _message_text(_read_json(response))
                return
            while True:
                if time.monotonic() > deadline:
                    raise LLMError(f"LLM reply took longer than {self.config.timeout_s:.0f} s")
                try:
                    raw = response.readline()
                except TimeoutError:
                    raise LLMError(f"LLM stream stalled for {self.config.timeout_s:.0f} s") from None
                except OSError as exc:
                    raise LLMError(f"LLM stream broke: {exc}") from None
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").strip()
                if not line or line.startswith(":") or not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except json.JSONDecodeError:
                    raise LLMError(f"LLM stream sent a malformed event: {data[:80]!r}") from None
                if "error" in event:
                    raise LLMError(f"LLM server error: {_error_text(json.dumps(event))}")
                delta = _delta_text(event)
                if delta:
                    yield delta
        finally:
            conn.close()

    def complete(self, messages: list[dict], **overrides) -> str:
        """The whole reply text (streamed or not, per the config)."""
        if self.config.stream:
            return "".join(self.stream(messages, **overrides))
        try:
            conn, response = self._open(self._body(messages, False, **overrides))
        except _RetryWithoutJsonMode:
            conn, response = self._open(self._body(messages, False, **overrides))
        try:
            return _message_text(_read_json(response))
        finally:
            conn.close()


class _RetryWithoutJsonMode(Exception):
    pass


def _read_json(response: http.client.HTTPResponse) -> dict:
    try:
        return json.loads(response.read().decode("utf-8", "replace"))
    except TimeoutError:
        raise LLMError("LLM reply timed out") from None
    except json.JSONDecodeError as exc:
        raise LLMError(f"LLM reply is not JSON ({exc.msg})") from None


def _message_text(body: dict) -> str:
    try:
        return body["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise LLMError(f"LLM reply has no choices[0].message.content: {json.dumps(body)[:120]}") from None


def _delta_text(event: dict) -> str:
    try:
        choice = event["choices"][0]
    except (KeyError, IndexError, TypeError):
        return ""
    delta = choice.get("delta") or choice.get("message") or {}
    return delta.get("content") or ""


def _error_text(detail: str) -> str:
    try:
        body = json.loads(detail)
        err = body.get("error", body)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:200]
    except (json.JSONDecodeError, AttributeError):
        return " ".join(detail.split())[:200]


# -- action plans ------------------------------------------------------------------------------
_EMOTION_SYNONYMS = {"joy": "happy", "joyful": "happy", "glad": "happy", "pleased": "happy", "amused": "happy",
                     "anger": "angry", "annoyed": "angry", "irritated": "angry", "furious": "angry",
                     "fear": "afraid", "scared": "afraid", "fearful": "afraid", "anxious": "afraid", "worried": "afraid",
                     "surprise": "surprised", "astonished": "surprised", "amazed": "surprised",
                     "sadness": "sad", "melancholy": "sad", "sorrowful": "sad", "serene": "calm", "composed": "calm",
                     "stern": "calm", "cold": "calm", "interested": "curious", "intrigued": "curious",
                     "pride": "proud", "dignified": "proud", "neutrality": "neutral"}
_GESTURE_SYNONYMS = {"wave": "bye", "waving": "bye", "farewell": "bye", "goodbye": "bye", "bowing": "bow",
                     "nodding": "nod", "head nod": "nod", "shake head": "shake", "head shake": "shake",
                     "shaking head": "shake", "pointing": "point", "shrugging": "shrug", "beckon": "call",
                     "beckoning": "call", "wave over": "call", "lead": "guide", "show": "guide", "gesture": "beat",
                     "gesturing": "beat", "talk": "beat", "explain": "beat", "idle": "none", "still": "none",
                     "walking": "walk", "answer": "respond", "reply": "respond", "": "none"}
_GAZE_SYNONYMS = {"visitor": "user", "listener": "user", "camera": "user", "you": "user", "at user": "user",
                  "sea": "away", "distance": "away", "floor": "down", "ground": "down", "sky": "up", "ceiling": "up"}


def _json_object(text: str) -> dict | None:
    """The first balanced {...} in ``text`` as a dict (tolerates code fences, prose, trailing commas)."""
    text = re.sub(r"```(?:json)?", "", text)
    start = text.find("{")
    while start != -1:
        depth, in_string, escape = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                escape = ch == "\\" and not escape
                if ch == '"' and not escape:
                    in_string = False
                continue
            if ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    candidate = text[start:i + 1]
                    for attempt in (candidate, re.sub(r",\s*([}\]])", r"\1", candidate)):
                        try:
                            value = json.loads(attempt)
                            if isinstance(value, dict):
                                return value
                        except json.JSONDecodeError:
                            pass
                    break
        start = text.find("{", start + 1)
    return None


def _choose(value: object, allowed: tuple[str, ...], synonyms: dict[str, str], default: str) -> str:
    if not isinstance(value, str):
        return default
    v = " ".join(value.lower().replace("_", " ").replace("-", " ").split())
    if v in allowed:
        return v
    if v in synonyms:
        return synonyms[v]
    for word in v.split():
        if word in allowed:
            return word
        if word in synonyms:
            return synonyms[word]
    return default


def parse_plan(text: str, default_emotion: str = "neutral") -> ActionPlan:
    """An ActionPlan from a model's reply: a JSON object {speech, emotion, gesture, gaze}, repaired
    (synonyms mapped, unknown values defaulted, speech capped); plain prose is taken as speech.
    Raises PlanError if there is no speech to be had."""
    if not isinstance(text, str) or not text.strip():
        raise PlanError("empty reply")
    data = _json_object(text)
    if data is None:
        if "{" in text or "}" in text:
            raise PlanError(f"malformed JSON plan: {text[:80]!r}")
        speech = text
        data = {}
    else:
        speech = next((data[k] for k in ("speech", "text", "say", "response", "reply", "utterance", "content")
                       if isinstance(data.get(k), str) and data[k].strip()), None)
        if speech is None:
            raise PlanError(f"JSON plan has no speech: {json.dumps(data)[:80]}")
    speech = " ".join(speech.split())[:MAX_SPEECH_CHARS]
    if not speech:
        raise PlanError("empty speech")
    return ActionPlan(
        speech=speech,
        emotion=_choose(data.get("emotion"), EMOTIONS, _EMOTION_SYNONYMS, default_emotion),
        gesture=_choose(data.get("gesture"), GESTURES, _GESTURE_SYNONYMS, "beat"),
        gaze=_choose(data.get("gaze"), GAZE_TARGETS, _GAZE_SYNONYMS, "user"),
    )
