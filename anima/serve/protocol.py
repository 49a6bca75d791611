"""The wire protocol between the browser client and ``anima serve`` (version 1).

Text messages are JSON objects with a ``type``. Binary messages carry audio and motion, with a
12-byte header followed by a payload::

    offset 0  u8   kind      (BinaryKind)
    offset 1  u8   version   (PROTOCOL_VERSION)
    offset 2  u16  reserved  (0)
    offset 4  u32  id        (user audio: sequence number; agent audio: turn id; motion: tick index)
    offset 8  f32  pts_s     (media time of the first sample / of the frame; user audio: 0, the
                              server stamps it on arrival)
    payload:  USER_AUDIO / AGENT_AUDIO: int16 little-endian PCM, mono, 24 kHz
              MOTION: 112 float32 face parameters then 22x3 float32 joint positions

Client -> server JSON: ``hello`` (first message: version, character, story_time, token, visitor),
``text`` (typed user text), ``ping``, ``forget`` (delete this visitor's memory), ``rate`` (the
visitor's 1-5 rating of the session, ``{"rating": 4}``). Server -> client JSON: ``welcome`` (with
the visitor id the session runs under), ``state``, ``agent_started``, ``agent_stopped``,
``interrupt``, ``user_speaking``, ``words``, ``transcript``, ``forgotten``, ``rated`` (the turn
rewards: ``rating``, ``rewards``, ``oracle``, ``stored``), ``error``, ``pong``. Every message a client can send is validated here with a clear error.
"""

from __future__ import annotations

import enum
import json
import math
import re
import secrets
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from anima.body.skeleton import NUM_JOINTS
from anima.face.params import FACE_DIM as FACE_PARAMS

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBHIf")  # kind, version, reserved, id, pts_s
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TEXT_CHARS = 2000
VISITOR_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")  # what a browser keeps to be remembered next time
FACE_DIM = FACE_PARAMS  # anima.face.params layout
JOINT_VALUES = NUM_JOINTS * 3  # x, y, z of each HumanML3D joint


class BinaryKind(enum.IntEnum):
    USER_AUDIO = 1
    AGENT_AUDIO = 2
    MOTION = 3


class ProtocolError(ValueError):
    """A client message broke the protocol; the text is sent back to the client."""


@dataclass
class Hello:
    character: str = "nemo"
    story_time: int | None = None
    token: str | None = None
    visitor: str | None = None  # the client's visitor id; None = a new visitor (the server makes one)


def new_visitor_id() -> str:
    """A random visitor id (128 bits): unguessable, so one visitor cannot name another's memory."""
    return secrets.token_urlsafe(16)


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ProtocolError(message)


def parse_json(text: str) -> dict[str, Any]:
    _require(len(text.encode()) <= MAX_MESSAGE_BYTES, f"message too large ({len(text)} bytes; limit {MAX_MESSAGE_BYTES})")
    try:
        msg = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise ProtocolError("not valid JSON: nested too deeply") from None
    _require(isinstance(msg, dict), f"a message must be a JSON object, got {type(msg).__name__}")
    _require(isinstance(msg.get("type"), str), "a message needs a string field 'type'")
    return msg


def _no_constant(name: str) -> Any:
    raise ProtocolError(f"not valid JSON: {name} is not a JSON number")


def _keys(msg: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(msg) - allowed - {"type"})
    _require(not unknown, f"{msg['type']}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def parse_hello(msg: dict[str, Any]) -> Hello:
    _require(msg.get("type") == "hello", f"the first message must be 'hello', got {msg.get('type')!r}")
    _keys(msg, {"version", "character", "story_time", "token", "visitor"})
    _require(msg.get("version") == PROTOCOL_VERSION, f"hello: protocol version {msg.get('version')!r} is not supported; this server speaks {PROTOCOL_VERSION}")
    character = msg.get("character", "nemo")
    _require(isinstance(character, str) and 0 < len(character) <= 40, "hello: 'character' must be a short string")
    story_time = msg.get("story_time")
    _require(story_time is None or (isinstance(story_time, int) and not isinstance(story_time, bool)), "hello: 'story_time' must be an integer")
    token = msg.get("token")
    _require(token is None or isinstance(token, str), "hello: 'token' must be a string")
    visitor = msg.get("visitor")
    _require(visitor is None or (isinstance(visitor, str) and VISITOR_ID.fullmatch(visitor) is not None),
             "hello: 'visitor' must be 8-64 characters of letters, digits, '-' or '_'")
    return Hello(character, story_time, token, visitor)


def parse_ping(msg: dict[str, Any]) -> float | None:
    """The client's timestamp ``t`` (echoed back in ``pong``): a finite number or absent."""
    _keys(msg, {"t"})
    t = msg.get("t")
    _require(t is None or (isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t)),
             "ping: field 't' must be a finite number")
    return t


def parse_forget(msg: dict[str, Any]) -> None:
    """``{"type": "forget"}``: delete everything the server remembers of this visitor."""
    _keys(msg, set())


def parse_rate(msg: dict[str, Any]) -> int:
    """``{"type": "rate", "rating": N}``: the visitor's rating of this session, an integer 1..5."""
    _keys(msg, {"rating"})
    rating = msg.get("rating")
    _require(isinstance(rating, int) and not isinstance(rating, bool) and 1 <= rating <= 5,
             f"rate: 'rating' must be an integer from 1 to 5, got {json.dumps(rating)[:40]}")
    return rating


def parse_text(msg: dict[str, Any]) -> str:
    _keys(msg, {"text"})
    text = msg.get("text")
    _require(isinstance(text, str), "text: field 'text' must be a string")
    text = " ".join(text.split())
    _require(bool(text), "text: empty text")
    _require(len(text) <= MAX_TEXT_CHARS, f"text: {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    return text


def parse_user_audio(data: bytes) -> np.ndarray:
    """Decode a USER_AUDIO message into float32 samples in [-1, 1]."""
    _require(len(data) <= MAX_MESSAGE_BYTES, f"binary message too large ({len(data)} bytes; limit {MAX_MESSAGE_BYTES})")
    _require(len(data) >= HEADER.size, f"binary message shorter than its {HEADER.size}-byte header")
    kind, version, _, _, _ = HEADER.unpack_from(data)
    _require(kind == BinaryKind.USER_AUDIO, f"binary message kind {kind} is not user audio ({int(BinaryKind.USER_AUDIO)})")
    _require(version == PROTOCOL_VERSION, f"binary message version {version}; this server speaks {PROTOCOL_VERSION}")
    payload = data[HEADER.size :]
    _require(len(payload) > 0, "user audio message carries no samples")
    _require(len(payload) % 2 == 0, "user audio payload must be int16 samples (even byte count)")
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0


def encode_audio(kind: BinaryKind, ident: int, pts_s: float, samples: np.ndarray) -> bytes:
    pcm = (np.clip(np.nan_to_num(samples), -1.0, 1.0) * 32767.0).astype("<i2")
    return HEADER.pack(int(kind), PROTOCOL_VERSION, 0, ident & 0xFFFFFFFF, pts_s) + pcm.tobytes()


def encode_motion(tick: int, pts_s: float, face: np.ndarray, joints: np.ndarray) -> bytes:
    payload = np.concatenate([np.asarray(face, "<f4").reshape(FACE_DIM), np.asarray(joints, "<f4").reshape(JOINT_VALUES)])
    return HEADER.pack(int(BinaryKind.MOTION), PROTOCOL_VERSION, 0, tick & 0xFFFFFFFF, pts_s) + payload.astype("<f4").tobytes()


def decode_binary(data: bytes) -> tuple[BinaryKind, int, float, np.ndarray]:
    """Decode any binary message (used by tests and the load benchmark's clients)."""
    kind, version, _, ident, pts = HEADER.unpack_from(data)
    payload = data[HEADER.size :]
    if kind == BinaryKind.MOTION:
        return BinaryKind.MOTION, ident, pts, np.frombuffer(payload, "<f4")
    return BinaryKind(kind), ident, pts, np.frombuffer(payload, "<i2").astype(np.float32) / 32768.0
