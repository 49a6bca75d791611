"""Learning from ratings: a session's 1-5 rating split into per-reply rewards (Mio 6.2.1, eq. 19-21).

    features = [TurnFeatures(text, prosody(audio, sr)) for each user turn]   # m_t = [v_t, p_t, e_t]
    steps = trajectory(pairs, features)          # (user turn, the character's reply, the user's reaction)
    result = decompose(steps, rating=4)          # offline oracle, or LLMOracle(config)(steps, 4)
    rate_session(world, session_id, 4, features) # the same, read from and stored in the world database

Convention. The global reward is the rating itself, R_Global = r in {1..5}. Each of the character's
replies a_t gets R_t >= 0 with sum_t R_t = r (eq. 21; exactly for the offline oracle, renormalised
for the LLM's answer). Replies the user reacted well to get a larger share; a low-rated session has
little to share. A consumer that wants signed rewards uses R_t - r / T (the share above an even
split).

Credit. The user's reaction to reply a_t is their next turn, u_{t+1}: its words, its prosody
against the same user's session baseline, and the camera's cues where there is a camera. The last
reply has no observed reaction (valence 0: it shares evenly). Each reaction becomes plain-language
descriptors (f_desc, ``describe``) and a valence score (``THRESHOLDS`` documents each threshold;
they were set on the benchmark's tuning seeds 0-99 and reported on held-out seeds 1000+).

Offline oracle: R_t = r * softmax(valence_t / temperature). LLM oracle: the trajectory with the
descriptors and r go to the OpenAI-compatible slot (``ChatClient``), which answers JSON
``{"rewards": [...]}``; negative values are clipped, the sum is renormalised to r, and any failure
(unreachable, malformed, wrong length) falls back to the offline oracle with the reason in
``Decomposition.note``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from anima.embed import Embedder, get_embedder
from anima.thinker.llm import ChatClient, LLMConfig, LLMError, _json_object
from anima.thinker.prosody import Baseline, Prosody
from anima.thinker.world import World, transaction

log = logging.getLogger(__name__)
RATINGS = range(1, 6)


class RatingError(ValueError):
    """A rating that is not an integer from 1 to 5, or a session that cannot be rated."""


def check_rating(value: object) -> int:
    """The rating as an int, or a RatingError saying what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in RATINGS:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise RatingError(f"rating must be an integer from 1 to 5, got {shown}")
    return value


@dataclass(frozen=True)
class VisualCues:
    """v_t: what a camera saw while the user reacted (probabilities in [0, 1])."""

    gaze: float  # looking at the character
    smile: float  # smiling
    motion: float  # nodding / leaning in

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"VisualCues.{name} must be a probability in [0, 1], got {value!r}")


@dataclass
class TurnFeatures:
    """m_t = [v_t, p_t, e_t] of one user turn: visual cues (None: no camera), prosody (None: typed or
    unvoiced), the text and its embedding (filled in by ``embed_turns``)."""

    text: str
    prosody: Prosody | None = None
    visual: VisualCues | None = None
    embedding: np.ndarray | None = None  # (D,) unit vector

    def vector(self, baseline: Baseline | None) -> np.ndarray:
        """m_t as one vector: v (3), p relative to the baseline (5), e (D); absent parts are NaN."""
        v = np.array([self.visual.gaze, self.visual.smile, self.visual.motion]) if self.visual else np.full(3, np.nan)
        if self.prosody is not None and baseline is not None:
            p = np.array(list(baseline.relative(self.prosody).values()))
        else:
            p = np.full(5, np.nan)
        e = self.embedding if self.embedding is not None else np.zeros(0)
        return np.concatenate([v, p, e]).astype(np.float32)


@dataclass(frozen=True)
class Thresholds:
    """f_desc and the offline valence. Cue thresholds are relative to the user's session baseline."""

    pitch_st: float = 1.5  # "higher/lower than their usual": median F0 this many semitones off
    loudness_db: float = 3.0  # "louder/quieter": this many dB off
    range_st: float = 1.5  # "lively intonation" / "flat": F0 spread this many semitones wider/narrower
    rate: float = 0.15  # "faster/slower": syllable rate this fraction off
    jitter: float = 1.6  # "shaky voice": jitter this many times the usual
    short_words: int = 2  # "short answer": this many words or fewer
    prosody_weight: float = 0.4  # valence per unit of arousal (pitch, loudness, range, rate against their scales)
    short_weight: float = 0.6  # valence lost for a short answer without a positive word
    smile_weight: float = 1.0  # valence per unit of smile probability above 0.5 (x2)
    gaze_away: float = 0.3  # gaze probability below this reads "looked away" (valence -0.5)
    temperature: float = 1.0  # offline oracle: softmax temperature over valences


THRESHOLDS = Thresholds()

# Text cues: what a pleased or an annoyed visitor says. Whole words or phrases, lower case.
POSITIVE = ("thanks", "thank you", "great", "wonderful", "amazing", "fascinating", "interesting", "love", "lovely",
            "cool", "awesome", "brilliant", "beautiful", "incredible", "excellent", "perfect", "nice", "wow",
            "tell me more", "exactly", "marvellous", "marvelous", "splendid", "glad", "fantastic", "bravo",
            "how exciting", "that's right", "good answer", "well said", "i like")
NEGATIVE = ("wrong", "boring", "bored", "not what i asked", "you already said", "that makes no sense", "nonsense",
            "stupid", "useless", "whatever", "annoying", "ugh", "no idea what you", "doesn't answer", "didn't answer",
            "not true", "you're not listening", "you are not listening", "i don't care", "meh", "dull", "rubbish",
            "terrible", "awful", "hate", "stop", "enough", "confusing", "off topic", "not helpful", "pointless")
LAUGHS = ("haha", "hahaha", "hehe", "lol", "lmao", "(laughs)", "[laughs]", "*laughs*")
NEGATORS = ("not", "n't", "never", "no")


def _phrase(text: str, phrase: str) -> int | None:
    """Where ``phrase`` starts in ``text`` as whole words, else None."""
    m = re.search(r"(?<![a-z'])" + re.escape(phrase) + r"(?![a-z'])", text)
    return m.start() if m else None


def text_cues(text: str) -> tuple[float, list[str], bool]:
    """(score in [-2, 2], descriptor phrases, laughed) from the user's words. A positive word right
    after a negator ("not great", "isn't interesting") counts as negative."""
    low = " " + " ".join(text.lower().replace("\u2019", "'").split()) + " "
    score, phrases = 0.0, []
    for phrase in POSITIVE:
        at = _phrase(low, phrase)
        if at is None:
            continue
        before = low[max(0, at - 12):at].split()
        if before and any(before[-1].endswith(n) for n in NEGATORS):
            score -= 1
            phrases.append(f'said "{before[-1]} {phrase}"')
        else:
            score += 1
            phrases.append(f'said "{phrase}"')
    for phrase in NEGATIVE:
        if _phrase(low, phrase) is not None:
            score -= 1
            phrases.append(f'complained ("{phrase}")')
    laughed = any(_phrase(low, w) is not None for w in LAUGHS)
    if laughed:
        score += 1
    return float(np.clip(score, -2, 2)), phrases, laughed


@dataclass
class Descriptor:
    """d_t = f_desc(m_t): the reaction in words, its valence, and the numbers behind them."""

    text: str
    valence: float
    cues: dict = field(default_factory=dict)


def describe(features: TurnFeatures, baseline: Baseline | None, t: Thresholds = THRESHOLDS) -> Descriptor:
    """Plain-language descriptors of one user turn and its valence (see ``Thresholds``)."""
    score, phrases, laughed = text_cues(features.text)
    cues: dict = {"text_score": score, "laughed": laughed, "words": len(features.text.split())}
    voice: list[str] = []
    arousal = 0.0
    if features.prosody is not None and baseline is not None:
        rel = baseline.relative(features.prosody)
        cues.update(rel)
        if rel["loudness_db"] >= t.loudness_db:
            voice.append(f"louder ({rel['loudness_db']:+.1f} dB)")
        elif rel["loudness_db"] <= -t.loudness_db:
            voice.append(f"quieter ({rel['loudness_db']:+.1f} dB)")
        if rel["pitch_st"] >= t.pitch_st:
            voice.append(f"higher ({rel['pitch_st']:+.1f} semitones)")
        elif rel["pitch_st"] <= -t.pitch_st:
            voice.append(f"lower ({rel['pitch_st']:+.1f} semitones)")
        if rel["rate_ratio"] >= 1 + t.rate:
            voice.append("faster")
        elif rel["rate_ratio"] <= 1 - t.rate:
            voice.append("slower")
        arousal = (0.5 * np.clip(rel["pitch_st"] / t.pitch_st, -2, 2) + 0.5 * np.clip(rel["loudness_db"] / t.loudness_db, -2, 2)
                   + 0.25 * np.clip(rel["range_st"] / t.range_st, -2, 2) + 0.25 * np.clip((rel["rate_ratio"] - 1) / t.rate, -2, 2))
        cues["arousal"] = round(float(arousal), 3)
    parts = []
    if voice:
        parts.append("The user spoke " + " and ".join(voice) + " than their usual")
    elif features.prosody is not None and baseline is not None:
        parts.append("The user spoke at their usual pitch and loudness")
    elif features.prosody is None:
        parts.append("The user typed or made no voiced sound (no prosody)")
    if "range_st" in cues:
        if cues["range_st"] <= -t.range_st:
            parts.append("flat intonation")
        elif cues["range_st"] >= t.range_st:
            parts.append("lively intonation")
        if cues["jitter_ratio"] >= t.jitter:
            parts.append("a shaky voice")
    if laughed:
        parts.append("laughed")
    parts += phrases
    short = cues["words"] <= t.short_words
    if short:
        parts.append("short answer")
    # Loud and high with complaints is anger, not delight: arousal sharpens the words' sign.
    valence = score + (-abs(arousal) if score < 0 else arousal) * t.prosody_weight
    if short and score <= 0:
        valence -= t.short_weight
    if "jitter_ratio" in cues and cues["jitter_ratio"] >= t.jitter:
        valence -= 0.25
    if features.visual is None:
        parts.append("no camera")
    else:
        v = features.visual
        cues.update(gaze=v.gaze, smile=v.smile, motion=v.motion)
        if v.smile >= 0.5:
            parts.append("smiling")
        if v.gaze < t.gaze_away:
            parts.append("looked away")
            valence -= 0.5
        if v.motion >= 0.6:
            parts.append("nodding or leaning in")
            valence += 0.25
        valence += t.smile_weight * 2 * (v.smile - 0.5)
    cues["valence"] = round(float(valence), 3)
    return Descriptor(", ".join(parts) + ".", float(valence), cues)


@dataclass
class Step:
    """One step of the trajectory: the user's turn, the character's reply, the user's reaction to it."""

    user: str
    agent: str
    reaction: Descriptor | None  # the next user turn's descriptors; None after the last reply
    features: TurnFeatures | None = None  # the reaction turn's m_t (stored with the reward)


def trajectory(pairs: list[tuple[str, str]], features: list[TurnFeatures | None], t: Thresholds = THRESHOLDS) -> list[Step]:
    """Steps from (user text, reply) pairs and each user turn's features (same order; None: unknown).
    The baseline is this session's voiced user turns."""
    if len(features) != len(pairs):
        raise ValueError(f"trajectory: {len(pairs)} turns but features for {len(features)}")
    baseline = Baseline.of([f.prosody if f else None for f in features])
    steps = []
    for i, (user, agent) in enumerate(pairs):
        nxt = features[i + 1] if i + 1 < len(features) else None
        if nxt is None and i + 1 < len(pairs):
            nxt = TurnFeatures(pairs[i + 1][0])
        steps.append(Step(user, agent, describe(nxt, baseline, t) if nxt is not None else None, nxt))
    return steps


@dataclass
class Decomposition:
    """Turn rewards R_t (one per reply, sum = rating) and how they were obtained."""

    rating: int
    rewards: list[float]
    oracle: str  # "offline" or "llm"
    note: str = ""  # the LLM's fallback reason or repair, else ""

    @property
    def total(self) -> float:
        return float(sum(self.rewards))


def offline_oracle(steps: list[Step], rating: int, t: Thresholds = THRESHOLDS) -> Decomposition:
    """R_t = rating * softmax(valence_t / temperature); a reply without a reaction has valence 0."""
    rating = check_rating(rating)
    if not steps:
        raise RatingError("a session with no turns cannot be rated")
    v = np.array([s.reaction.valence if s.reaction else 0.0 for s in steps]) / t.temperature
    w = np.exp(v - v.max())
    return Decomposition(rating, [float(x) for x in rating * w / w.sum()], "offline")


ORACLE_PROMPT = """You assign credit in a conversation between a visitor and a story character.
The visitor rated the whole conversation {rating} on a scale of 1 to 5. Split that rating over the
character's {n} replies: each reply gets a reward >= 0, the rewards must add up to exactly {rating},
and a reply the visitor reacted well to (in words, voice or face) gets more than one they reacted
badly to. The visitor's reaction to reply t is what they did in the next turn (described below);
the last reply has no observed reaction. Answer with JSON only: {{"rewards": [r_0, ..., r_{last}]}}."""


class LLMOracle:
    """M_oracle through the OpenAI-compatible slot; falls back to the offline oracle on any failure."""

    def __init__(self, llm: LLMConfig | ChatClient, thresholds: Thresholds = THRESHOLDS) -> None:
        self.client = llm if isinstance(llm, ChatClient) else ChatClient(llm)
        self.thresholds = thresholds

    def messages(self, steps: list[Step], rating: int) -> list[dict]:
        turns = [{"t": i, "visitor": s.user, "character": s.agent,
                  "reaction": s.reaction.text if s.reaction else "(none: the conversation ended)"}
                 for i, s in enumerate(steps)]
        system = ORACLE_PROMPT.format(rating=rating, n=len(steps), last=len(steps) - 1)
        return [{"role": "system", "content": system}, {"role": "user", "content": json.dumps({"turns": turns})}]

    def __call__(self, steps: list[Step], rating: int) -> Decomposition:
        rating = check_rating(rating)
        offline = offline_oracle(steps, rating, self.thresholds)
        try:
            reply = self.client.complete(self.messages(steps, rating), temperature=0.0)
            rewards, note = repair(reply, len(steps), rating)
        except (LLMError, ValueError) as exc:
            log.warning("reward oracle fell back to the offline one: %s", exc)
            offline.note = f"llm failed: {exc}"
            return offline
        return Decomposition(rating, rewards, "llm", note)


def repair(reply: str, n: int, rating: int) -> tuple[list[float], str]:
    """The LLM's rewards, clipped at 0 and renormalised to sum to ``rating``; ValueError if unusable."""
    data = _json_object(reply)
    values = None
    if data is not None:
        values = next((data[k] for k in ("rewards", "turn_rewards", "R", "r") if isinstance(data.get(k), list)), None)
    elif reply.strip().startswith("["):
        try:
            values = json.loads(reply)
        except json.JSONDecodeError:
            values = None
    if not isinstance(values, list):
        raise ValueError(f"no 'rewards' list in the reply {reply[:80]!r}")
    values = [v.get("reward") if isinstance(v, dict) else v for v in values]
    if len(values) != n:
        raise ValueError(f"{len(values)} rewards for {n} replies")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError("a reward is not a finite number")
    clipped = [max(0.0, float(v)) for v in values]
    total = sum(clipped)
    if total <= 0:
        raise ValueError("every reward is zero or negative")
    notes = []
    if clipped != [float(v) for v in values]:
        notes.append("negative rewards clipped to 0")
    if abs(total - rating) > 1e-6 * rating:
        notes.append(f"sum {total:.3g} renormalised to {rating}")
    return [v * rating / total for v in clipped], "; ".join(notes)


def decompose(steps: list[Step], rating: int, llm: LLMConfig | ChatClient | None = None,
              thresholds: Thresholds = THRESHOLDS) -> Decomposition:
    """M_oracle(trajectory, rating): the LLM oracle when ``llm`` is given, else the offline one."""
    if llm is not None:
        return LLMOracle(llm, thresholds)(steps, rating)
    return offline_oracle(steps, rating, thresholds)


# -- storage -----------------------------------------------------------------------------------
def embed_turns(features: list[TurnFeatures | None], embedder: Embedder) -> None:
    """Fill in e_t for every turn that has none (one batch)."""
    todo = [f for f in features if f is not None and f.embedding is None]
    for f, e in zip(todo, embedder.encode([f.text for f in todo]) if todo else [], strict=True):
        f.embedding = e


def _features_json(step: Step, reaction_turn: int | None) -> str:
    f = step.features
    out: dict = {"reaction_turn": reaction_turn, "camera": bool(f and f.visual)}
    if f is not None:
        out["visual"] = asdict(f.visual) if f.visual else None
        out["prosody"] = f.prosody.as_dict() if f.prosody else None
        if f.embedding is not None:
            out["embedding_f16"] = base64.b64encode(np.asarray(f.embedding, np.float16).tobytes()).decode()
    if step.reaction is not None:
        out["cues"] = step.reaction.cues
    return json.dumps(out)


def session_pairs(world: World, session_id: str) -> list[tuple[str, str]]:
    """(user text, reply) per turn of a stored session, in order (``SessionStore`` writes user turn k
    at idx 2k and its reply at 2k + 1)."""
    rows = world.conn.execute("SELECT idx, speaker, text FROM session_turns WHERE session_id = ? ORDER BY idx",
                              (session_id,)).fetchall()
    by_idx = {idx: text for idx, speaker, text in rows}
    return [(by_idx[i], by_idx.get(i + 1, "")) for i in sorted(by_idx) if i % 2 == 0]


def store(world: World, session_id: str, decomposition: Decomposition, steps: list[Step]) -> None:
    """Write the rating and the turn rewards of a session in one transaction (replacing earlier ones)."""
    if world.readonly:
        raise RatingError(f"{world.path}: opened read-only; ratings are stored in a writable world")
    if len(steps) != len(decomposition.rewards):
        raise ValueError(f"{len(decomposition.rewards)} rewards for {len(steps)} steps")
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    with transaction(world.conn) as c:
        row = c.execute("SELECT user_id FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise RatingError(f"session {session_id!r} is not in {world.path} (forgotten, or never remembered)")
        c.execute("DELETE FROM turn_rewards WHERE session_id = ?", (session_id,))
        c.execute("INSERT OR REPLACE INTO session_ratings VALUES (?,?,?,?,?,?)",
                  (session_id, row[0], decomposition.rating, decomposition.oracle, decomposition.note, now))
        c.executemany("INSERT INTO turn_rewards VALUES (?,?,?,?,?,?)", [
            (session_id, i, r, s.reaction.valence if s.reaction else 0.0,
             s.reaction.text if s.reaction else "No reaction: the conversation ended.",
             _features_json(s, i + 1 if s.reaction else None))
            for i, (s, r) in enumerate(zip(steps, decomposition.rewards, strict=True))])


def rate_session(world: World, session_id: str, rating: int, features: list[TurnFeatures | None] | None = None,
                 llm: LLMConfig | ChatClient | None = None, embedder: Embedder | None = None,
                 thresholds: Thresholds = THRESHOLDS) -> Decomposition:
    """Rate a stored session: its turns from the database, the user turns' features (``None``: text
    only), the oracle, and the result stored with the session. Raises RatingError on a bad rating
    or an unknown or empty session."""
    check_rating(rating)
    pairs = session_pairs(world, session_id)
    if not pairs:
        raise RatingError(f"session {session_id!r} has no turns to rate")
    given = list(features or [])
    features = [given[i] if i < len(given) and given[i] is not None else TurnFeatures(p[0]) for i, p in enumerate(pairs)]
    embed_turns(features, embedder or get_embedder(world.embedder_name))
    steps = trajectory(pairs, features, thresholds)
    result = decompose(steps, rating, llm, thresholds)
    store(world, session_id, result, steps)
    return result


def stored_rating(world: World, session_id: str) -> dict | None:
    """A session's stored rating and turn rewards (None if it was not rated)."""
    row = world.conn.execute("SELECT user_id, rating, oracle, note, created_at FROM session_ratings WHERE session_id = ?",
                             (session_id,)).fetchone()
    if row is None:
        return None
    turns = world.conn.execute("SELECT turn, reward, valence, descriptors, features FROM turn_rewards "
                               "WHERE session_id = ? ORDER BY turn", (session_id,)).fetchall()
    return {"user": row[0], "rating": row[1], "oracle": row[2], "note": row[3], "created_at": row[4],
            "turns": [{"turn": t, "reward": r, "valence": v, "descriptors": d, "features": json.loads(f)}
                      for t, r, v, d, f in turns]}
