"""The visitor's reactions in a live session, and the session's rating split into turn rewards.

``ReactionTap`` sits right after the turn-taking stage: it sees the user's (echo-cancelled) audio,
the speech start/stop events and each finished user turn (``UserTurnFrame``). Per user turn it keeps
the prosody of what the user said (``anima.thinker.prosody``: features only; the audio is dropped
when the turn ends, and at most the last ``max_s`` of it is held meanwhile). A typed turn has no
prosody.

``rate_live`` answers the client's ``rate`` message: the offline oracle, or the LLM slot when the
thinker has one (``anima.thinker.reward``), over the session's turns: from the world database with
the session when the thinker remembers (and the result is stored there), else from the heard
history (computed and sent back, not stored).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque

import numpy as np

from anima.core.frames import (
    NS_PER_S,
    SAMPLE_RATE,
    Frame,
    SystemFrame,
    UserAudioFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    UserTurnFrame,
)
from anima.core.history import ConversationHistory
from anima.core.stage import DOWN, Direction, Stage
from anima.embed import get_embedder
from anima.thinker.prosody import prosody
from anima.thinker.reward import (
    Decomposition,
    RatingError,
    TurnFeatures,
    check_rating,
    decompose,
    embed_turns,
    rate_session,
    session_pairs,
    trajectory,
)


class ReactionTap(Stage):
    """Per user turn: its text and the prosody of its speech (``turns``, in order).

    The speech of a turn is the audio inside the VAD's speech stretches since the previous turn,
    picked by media time: the start/stop events are system frames and overtake the queued audio,
    so their order of arrival says nothing.
    """

    def __init__(self, max_s: float = 12.0, preroll_s: float = 0.1) -> None:
        super().__init__(name="reactions")
        self.turns: list[TurnFeatures] = []
        self.max_samples = int(max_s * SAMPLE_RATE)  # audio held at most (the last seconds of a long turn)
        self.preroll_ns = int(preroll_s * NS_PER_S)
        self._audio: deque[UserAudioFrame] = deque()
        self._held = 0
        self._stretches: list[list[int | None]] = []  # [onset, end or None] of this turn's speech

    async def process_frame(self, frame: Frame, direction: Direction) -> None:
        await self.push_frame(frame, direction)  # nothing waits on this stage
        if direction is not DOWN:
            return
        match frame:
            case UserAudioFrame():
                self._audio.append(frame)
                self._held += frame.samples.size
                while self._held > self.max_samples and len(self._audio) > 1:
                    self._held -= self._audio.popleft().samples.size
            case UserTurnFrame():
                audio = self._speech(frame.end_pts_ns)
                features = None
                if audio.size:
                    with self.timed():
                        features = await asyncio.to_thread(prosody, audio, SAMPLE_RATE)
                self.turns.append(TurnFeatures(frame.text, features))

    def _speech(self, end_ns: int) -> np.ndarray:
        """The speech of the turn that ended at ``end_ns``: the held audio up to then inside the
        stretches that began by then. That audio is dropped; later audio and stretches stay."""
        mine = [(onset, stop) for onset, stop in self._stretches if onset <= end_ns]
        self._stretches = [s for s in self._stretches if s[0] > end_ns or s[1] is None]
        chunks, later = [], deque()
        for f in self._audio:
            if f.pts_ns >= end_ns:
                later.append(f)
                continue
            f_end = f.pts_ns + f.samples.size * NS_PER_S // SAMPLE_RATE
            if any(f_end > onset - self.preroll_ns and (stop is None or f.pts_ns < stop) for onset, stop in mine):
                chunks.append(f.samples)
        self._audio = later
        self._held = sum(f.samples.size for f in later)
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    async def process_system(self, frame: SystemFrame, direction: Direction) -> None:
        if direction is DOWN and isinstance(frame, UserStartedSpeakingFrame):
            self._stretches.append([frame.onset_pts_ns, None])
        elif direction is DOWN and isinstance(frame, UserStoppedSpeakingFrame) and self._stretches:
            self._stretches[-1][1] = frame.end_pts_ns
        await self.push_frame(frame, direction)


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def align(turns: list[TurnFeatures], user_texts: list[str]) -> list[TurnFeatures | None]:
    """The captured turn for each user text: in order, matched on the words (a turn the thinker saw
    that the tap did not, or the other way round, is skipped); by position when the counts agree."""
    if len(turns) == len(user_texts):
        return list(turns)
    out: list[TurnFeatures | None] = []
    cursor = 0
    for text in user_texts:
        match = next((j for j in range(cursor, min(cursor + 4, len(turns))) if _norm(turns[j].text) == _norm(text)), None)
        out.append(None if match is None else turns[match])
        cursor = cursor if match is None else match + 1
    return out


def history_pairs(history: ConversationHistory) -> list[tuple[str, str]]:
    """(user turn, the reply heard after it) from a session's heard history (backchannels left out)."""
    pairs: list[tuple[str, str]] = []
    for turn in history.turns:
        if turn.kind != "turn":
            continue
        if turn.speaker == "user":
            pairs.append((turn.text, ""))
        elif pairs and not pairs[-1][1]:
            pairs[-1] = (pairs[-1][0], turn.text)
    return pairs


def rate_live(thinker: object, tap: ReactionTap | None, history: ConversationHistory, rating: int) -> dict:
    """Split ``rating`` over this session's replies; store it with the session when the thinker
    remembers. Returns the ``rated`` message. Raises RatingError (a ValueError) on a bad rating or a
    session without turns."""
    captured = tap.turns if tap is not None else []
    llm = getattr(getattr(thinker, "llm", None), "client", None)  # the thinker's own LLM slot, if any
    session = getattr(thinker, "session", None)
    if session is not None and getattr(session, "remember", False):
        pairs = session_pairs(session.world, session.session_id)
        result = rate_session(session.world, session.session_id, rating, align(captured, [u for u, _ in pairs]), llm,
                              embedder=getattr(session, "embedder", None))
        return _message(result, stored=True)
    pairs = history_pairs(history)
    features = [f if f is not None else TurnFeatures(u) for f, (u, _) in zip(align(captured, [u for u, _ in pairs]), pairs,
                                                                                 strict=True)]
    check_rating(rating)
    if not pairs:
        raise RatingError("nothing to rate yet: say something to the character first")
    embed_turns(features, get_embedder("hash"))
    return _message(decompose(trajectory(pairs, features), rating, llm), stored=False)


def _message(result: Decomposition, stored: bool) -> dict:
    return {"type": "rated", "rating": result.rating, "rewards": [round(r, 4) for r in result.rewards],
            "oracle": result.oracle, "stored": stored}
