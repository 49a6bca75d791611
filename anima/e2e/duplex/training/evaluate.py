"""Score the duplex decoder G against the cascade on the dialogue corpus (issue 15, "Acceptance").

    python -m anima.e2e.duplex.training.evaluate --weights out/duplex/weights --talker out/mot/talker \\
        --dialogues out/dialogues --split test --json out/duplex/eval.json [--limit N]

Driven by the user side only: each test conversation's recorded ``user.flac`` is played into a fresh
``DuplexAgent`` 80 ms at a time (the user does not react to G), and G's audio, face and joints are
recorded. ``user_speaking`` is set from the corpus's user segments (what a perfect VAD would say) and
``agent_speaking`` from G's own audio by the runtime's energy rule, as ``DuplexStage`` sets them, so
the safety cap works as it does live. Step i returns the agent's frame i-1 (the delay pattern): G's
timeline is the outputs of steps 1.. (one extra silent step flushes the last frame), so G's frame j
lies at the same media time as the user's frame j.

One speech-activity rule for both agents (G's audio and the corpus's ``agent.flac``, the cascade):
a 40 ms tick is loud when its RMS exceeds ``SPEAKING_RMS``; speech starts at a loud tick and ends at
the end of the last loud tick once ``SPEAKING_HANGOVER_S`` of quiet followed (shorter pauses are
bridged). The engine's constants, imported. Then, per system:

1. reply onset: over user turn ends (``user_stop`` events not cut by the agent; backchannels left
   out: the user does not give up the turn), the share with an agent onset in
   [t_stop - 0.2, t_stop + 1.0] s; and the delay to the first onset after t_stop - 0.2 (before the
   next user turn), median and p95. Goal >= 80 %.
2. barge-in: every user speech onset (a user segment's start) that falls inside an agent speech
   stretch; stopped if that stretch ends within 0.3 s of the onset. Goal >= 90 %; per user turn kind
   too (backchannels are in it: the cascade pauses for them).
3. agent interruptions: an agent onset at least 0.3 s into a user segment (and before its end);
   matched one-to-one, in time order, to the corpus's ``agent_cut_in`` events (which include the
   script's ``agent_interrupts_s`` cut-ins) within +-1 s; precision and recall over all conversations.
4. overlap: agent speech inside user speech, each user segment counted only up to the system's first
   interruption onset in it, over all user speech time. Goal < 5 %.
5. motion: FID (the behaviour evaluator of issue 16, 4 s windows) of G's face + body263 (joints back
   to HumanML3D-263 with ``features_from_video_joints``, as the corpus was made) against the corpus's
   motion of the same conversations, beside the corpus's own test-vs-train FID (goal: G within 2x);
   lip sync (``metrics.lip_sync``, jaw vs energy over the speech ticks of the rule) of G's face on its
   own audio and of the corpus face on the corpus audio.
6. speech: the Talker's phoneme judge on every agent speech stretch: phonemes per second, and a
   stretch is speech-like when the judge hears at least ``SPEECH_PHONEMES_PER_S``. Measured with the
   Talker's judge on 3 test conversations: the cascade's 29 stretches hear median 11.1, 5th
   percentile 7.0 phonemes/s; white noise at the same level 0-0.4 (the judge hears non-speech as
   silence), so 4/s sits well between; the cascade's rate is reported beside G's as the check.
   PER: in every cascade agent turn's window [start, end] (the transcript's heard text,
   phonemized), the judge's phonemes of G's audio in that window, and of the cascade's audio as the
   judge's own floor (0.05 on those 3 conversations; noise scores 0.98); corpus PER (edit distance
   over reference phonemes).
7. speed: wall time of ``agent.step`` (median, p95; the goal p95 <= 40 ms per 80 ms step); first
   agent audio after a user turn end = G's reply delay of (1) in media time. Live, the stage plays a
   step's output two steps after the user audio it heard (``LIVE_OFFSET_S``): reported beside it.
"""

from __future__ import annotations

import argparse
import bisect
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anima.e2e.duplex.engine import SPEAKING_HANGOVER_S, SPEAKING_RMS, STEP_SAMPLES, TICK_SAMPLES

SAMPLE_RATE = 24_000
TICK_S = TICK_SAMPLES / SAMPLE_RATE  # 0.04
HANGOVER_TICKS = int(round(SPEAKING_HANGOVER_S / TICK_S))  # 10 quiet ticks end speech
REPLY_EARLY_S, REPLY_LATE_S = 0.2, 1.0  # a reply onset counts in [t_stop - 0.2, t_stop + 1.0]
BARGE_IN_STOP_S = 0.3  # the agent must stop this soon after a user onset
INTERRUPT_AFTER_S = 0.3  # an agent onset this far into a user segment is an interruption
MATCH_S = 1.0  # an interruption matches a corpus cut-in within this
SPEECH_PHONEMES_PER_S = 4.0  # a speech stretch is speech-like when the judge hears at least this rate
JUDGE_CHUNK_S = 20.0  # the judge hears long stretches in pieces of at most this (bounded attention memory)
LIVE_OFFSET_S = 2 * STEP_SAMPLES / SAMPLE_RATE  # live: user chunk i is heard, frame i-1 plays after it ends
NOT_A_TURN_END = ("backchannel",)  # user turns after which the agent is not expected to reply

Segment = tuple[float, float]


# -- the speech-activity rule -------------------------------------------------------------------------

def tick_rms(audio: np.ndarray) -> np.ndarray:
    """RMS of each 40 ms tick (the last partial one zero-padded). (N,) -> (ceil(N / 960),)"""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"tick_rms: audio must be (N,) samples, got shape {audio.shape}")
    n = -(-audio.size // TICK_SAMPLES)
    padded = np.zeros(n * TICK_SAMPLES)
    padded[:audio.size] = audio
    return np.sqrt((padded.reshape(n, TICK_SAMPLES) ** 2).mean(axis=1))


def segments_from_loud(loud: np.ndarray) -> list[Segment]:
    """Speech stretches [onset, end) in seconds from per-tick loudness (T,) bool: a stretch starts at a
    loud tick and ends at the end of its last loud tick once HANGOVER_TICKS quiet ticks followed (or
    the audio ended); quieter gaps are bridged."""
    idx = np.flatnonzero(np.asarray(loud, dtype=bool))
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > HANGOVER_TICKS)  # a gap of >= HANGOVER_TICKS quiet ticks
    starts = np.concatenate([idx[:1], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], idx[-1:]]) + 1
    return [(float(a * TICK_S), float(b * TICK_S)) for a, b in zip(starts, ends, strict=True)]


def speech_segments(audio: np.ndarray) -> list[Segment]:
    """The agent's speech stretches in (N,) float audio at 24 kHz by the one rule (engine.SPEAKING_RMS, hangover)."""
    return segments_from_loud(tick_rms(audio) > SPEAKING_RMS)


def activity_mask(segments: Sequence[Segment], frames: int, fps: float = 25.0) -> np.ndarray:
    """(frames,) bool: frame k speaks when a segment covers its start time k / fps."""
    t = np.arange(frames) / fps
    mask = np.zeros(frames, dtype=bool)
    for a, b, *_ in segments:
        mask |= (t >= a - 1e-9) & (t < b - 1e-9)
    return mask


class SpeakingRule:
    """The same rule online, tick by tick (what ``DuplexStage`` does to set ``agent.agent_speaking``)."""

    def __init__(self) -> None:
        self.speaking = False
        self.quiet = 0

    def push(self, tick: np.ndarray) -> bool:
        loud = float(np.sqrt(np.mean(np.asarray(tick, np.float64) ** 2))) > SPEAKING_RMS
        self.quiet = 0 if loud else self.quiet + 1
        if loud:
            self.speaking = True
        elif self.speaking and self.quiet >= HANGOVER_TICKS:
            self.speaking = False
        return self.speaking


# -- one conversation's ground truth -----------------------------------------------------------------

@dataclass
class Timeline:
    """What the corpus says about the user (it does not react to the agent, so it holds for G too)."""

    user: list[tuple[float, float, str]]  # the user's voiced segments (start, end, turn kind)
    turn_ends: list[float]  # user_stop times not cut by the agent, backchannels left out
    user_starts: list[float]  # user_start event times (a reply is looked for until the next one)
    cut_ins: list[float]  # the corpus agent's interruptions (agent_cut_in events)
    duration_s: float = float("inf")


def timeline(meta: dict[str, Any]) -> Timeline:
    """The user's side and the reference interruptions of one conversation's meta.json."""
    user = [(float(s[0]), float(s[1]), str(s[3]) if len(s) > 3 else "") for s in meta.get("segments", {}).get("user", [])]
    events = meta.get("events", [])
    ends = [float(e["t"]) for e in events if e.get("type") == "user_stop" and not e.get("cut_by_agent")
            and e.get("kind") not in NOT_A_TURN_END]
    starts = sorted(float(e["t"]) for e in events if e.get("type") == "user_start")
    cut_ins = sorted(float(e["t"]) for e in events if e.get("type") == "agent_cut_in")
    return Timeline(sorted(user), sorted(ends), starts, cut_ins, float(meta.get("duration_s", float("inf"))))


# -- the four turn-taking measures (raw counts per conversation; ``summarise`` pools them) -------------

def reply_onsets(agent: Sequence[Segment], tl: Timeline) -> dict[str, Any]:
    """(1) per turn end: was there an agent onset in [t - 0.2, t + 1.0]; the delay to the first onset
    from t - 0.2 on, before the next user turn starts (None if none)."""
    onsets = sorted(a for a, _ in agent)
    hits, delays = 0, []
    for t in tl.turn_ends:
        i = bisect.bisect_left(onsets, t - REPLY_EARLY_S - 1e-9)
        nxt = next((s for s in tl.user_starts if s > t), tl.duration_s)
        first = onsets[i] if i < len(onsets) and onsets[i] < nxt else None
        hits += first is not None and first <= t + REPLY_LATE_S + 1e-9
        delays.append(None if first is None else first - t)
    return {"reply_turns": len(tl.turn_ends), "reply_hits": int(hits), "reply_delays": delays}


def barge_ins(agent: Sequence[Segment], tl: Timeline) -> dict[str, Any]:
    """(2) per user onset inside an agent speech stretch: the time the stretch went on after it."""
    rows = []
    for start, _, kind in tl.user:
        for a, b in agent:
            if a < start < b:
                rows.append({"t": start, "kind": kind, "stop_s": b - start,
                             "stopped": b - start <= BARGE_IN_STOP_S + 1e-9})
                break
    return {"barge_ins": rows}


def interruptions(agent: Sequence[Segment], tl: Timeline) -> list[float]:
    """(3) agent onsets at least INTERRUPT_AFTER_S into a user segment (and before it ends)."""
    return [a for a, _ in agent if any(s + INTERRUPT_AFTER_S - 1e-9 <= a < e for s, e, _ in tl.user)]


def match_events(detected: Sequence[float], reference: Sequence[float], tol: float = MATCH_S) -> int:
    """How many detected times pair one-to-one with reference times within +-tol (greedy, in time order)."""
    used = [False] * len(reference)
    matched = 0
    for t in sorted(detected):
        best = None
        for j, r in enumerate(reference):
            if not used[j] and abs(t - r) <= tol + 1e-9 and (best is None or abs(t - r) < abs(t - reference[best])):
                best = j
        if best is not None:
            used[best] = True
            matched += 1
    return matched


def overlap(agent: Sequence[Segment], tl: Timeline, interrupts: Sequence[float]) -> dict[str, float]:
    """(4) agent speech inside user speech, each user segment cut at the first interruption onset in it."""
    over = total = 0.0
    for s, e, _ in tl.user:
        total += e - s
        cut = min([t for t in interrupts if s <= t < e], default=e)
        over += sum(max(0.0, min(b, cut) - max(a, s)) for a, b in agent)
    return {"overlap_s": over, "user_speech_s": total}


def turn_taking(agent: Sequence[Segment], tl: Timeline) -> dict[str, Any]:
    """The four measures of one agent (its speech stretches) on one conversation: raw counts."""
    found = interruptions(agent, tl)
    return {**reply_onsets(agent, tl), **barge_ins(agent, tl), "interrupts": found,
            "interrupt_reference": list(tl.cut_ins), "interrupt_matched": match_events(found, tl.cut_ins),
            **overlap(agent, tl, found)}


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _rate(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool ``turn_taking`` rows of many conversations into rates (None where nothing was counted)."""
    turns = sum(r["reply_turns"] for r in rows)
    hits = sum(r["reply_hits"] for r in rows)
    delays = [d for r in rows for d in r["reply_delays"] if d is not None]
    barge = [b for r in rows for b in r["barge_ins"]]
    kinds: dict[str, list[int]] = {}
    for b in barge:
        k = kinds.setdefault(b["kind"], [0, 0])
        k[0] += 1
        k[1] += b["stopped"]
    found = sum(len(r["interrupts"]) for r in rows)
    ref = sum(len(r["interrupt_reference"]) for r in rows)
    matched = sum(r["interrupt_matched"] for r in rows)
    over, user_s = sum(r["overlap_s"] for r in rows), sum(r["user_speech_s"] for r in rows)
    return {
        "reply_onset_rate": _rate(hits, turns), "reply_turns": turns, "reply_missing": sum(
            d is None for r in rows for d in r["reply_delays"]),
        "reply_delay_median_s": _pct(delays, 50), "reply_delay_p95_s": _pct(delays, 95),
        "barge_in_stop_rate": _rate(sum(b["stopped"] for b in barge), len(barge)), "barge_ins": len(barge),
        "barge_in_stop_median_s": _pct([b["stop_s"] for b in barge], 50),
        "barge_in_by_kind": {k: {"count": n, "stopped": s, "rate": s / n} for k, (n, s) in sorted(kinds.items())},
        "interrupt_precision": _rate(matched, found), "interrupt_recall": _rate(matched, ref),
        "interrupts_detected": found, "interrupts_reference": ref, "interrupts_matched": matched,
        "overlap_rate": _rate(over, user_s), "overlap_s": over, "user_speech_s": user_s,
    }


# -- driving G ---------------------------------------------------------------------------------------

@dataclass
class Recording:
    """What G did in one conversation, on the corpus's media timeline."""

    audio: np.ndarray  # (N,) float32 at 24 kHz
    face: np.ndarray  # (T, 112) at 25 fps
    joints: np.ndarray  # (T, 22, 3) at 25 fps
    step_s: np.ndarray  # (S,) wall time of each agent.step
    capped: int = 0  # steps the safety cap silenced


def user_speaking_steps(user: Sequence[tuple[float, float, str]], steps: int) -> np.ndarray:
    """(steps,) bool: the user speaks in some part of step i's 80 ms (the ground truth a VAD would report)."""
    step_s = STEP_SAMPLES / SAMPLE_RATE
    t0 = np.arange(steps) * step_s
    out = np.zeros(steps, dtype=bool)
    for s, e, *_ in user:
        out |= (t0 < e) & (t0 + step_s > s)
    return out


def drive(agent, user_audio: np.ndarray, user: Sequence[tuple[float, float, str]]) -> Recording:
    """Play ``user_audio`` (N,) into a fresh ``agent`` step by step; G's audio, face and joints, aligned.

    ``agent.user_speaking`` comes from ``user`` (segments), ``agent.agent_speaking`` from the agent's
    own played ticks by ``SpeakingRule``. Step i returns frame i-1: the outputs of steps 1..S (S + 1
    steps, the last on silence) are frames 0..S-1.
    """
    user_audio = np.asarray(user_audio, np.float32)
    if user_audio.ndim != 1 or user_audio.size == 0:
        raise ValueError(f"drive: user audio must be (N > 0,) samples, got shape {user_audio.shape}")
    steps = -(-user_audio.size // STEP_SAMPLES)
    padded = np.zeros((steps + 1) * STEP_SAMPLES, np.float32)
    padded[:user_audio.size] = user_audio
    speaking_user = user_speaking_steps(user, steps + 1)
    rule = SpeakingRule()
    agent.reset()
    audio, face, joints, wall, capped = [], [], [], [], 0
    for i in range(steps + 1):
        agent.user_speaking = bool(speaking_user[i])
        t0 = time.perf_counter()
        res = agent.step(padded[i * STEP_SAMPLES:(i + 1) * STEP_SAMPLES])
        wall.append(time.perf_counter() - t0)
        capped += bool(res.capped)
        audio.append(res.audio)
        face.append(res.face)
        joints.append(res.joints)
        for k in range(STEP_SAMPLES // TICK_SAMPLES):  # played tick by tick: the runtime's agent_speaking
            agent.agent_speaking = rule.push(res.audio[k * TICK_SAMPLES:(k + 1) * TICK_SAMPLES])
    frames = -(-user_audio.size // TICK_SAMPLES)
    return Recording(audio=np.concatenate(audio[1:])[:user_audio.size],
                     face=np.concatenate(face[1:])[:frames].astype(np.float32),  # (T, 112)
                     joints=np.concatenate(joints[1:])[:frames].astype(np.float32),  # (T, 22, 3)
                     step_s=np.asarray(wall), capped=capped)


# -- speech ------------------------------------------------------------------------------------------

def _clip(audio: np.ndarray, a: float, b: float) -> np.ndarray:
    return audio[max(0, int(round(a * SAMPLE_RATE))):max(0, int(round(b * SAMPLE_RATE)))]


def recognize(judge, clip: np.ndarray) -> list[str]:
    """The judge's phonemes of (N,) samples, heard JUDGE_CHUNK_S at a time; [] for no samples."""
    n = int(JUDGE_CHUNK_S * SAMPLE_RATE)
    return [p for i in range(0, clip.size, n) for p in judge.recognize(clip[i:i + n])]


def speech_likeness(judge, audio: np.ndarray, segments: Sequence[Segment]) -> list[dict[str, float]]:
    """(6) per speech stretch: its length and the judge's non-silence phonemes per second."""
    rows = []
    for a, b in segments:
        clip = _clip(audio, a, b)
        n = len(recognize(judge, clip))
        rows.append({"duration_s": b - a, "phonemes_per_s": n / max(b - a, 1e-9)})
    return rows


def reference_phonemes(text: str) -> list[str]:
    """The phonemes of a transcript line (espeak-ng en-us), pauses left out: what the judge is scored against."""
    from anima.talker.data.phonemize import phonemize
    from anima.talker.model.phoneme_judge import is_silence

    return [p for p in phonemize(text) if not is_silence(p)]


def reply_windows(meta: dict[str, Any]) -> list[tuple[float, float, str]]:
    """The cascade agent's turns with words: (start, end, the text heard)."""
    return [(float(t["start"]), float(t["end"]), t["text"]) for t in meta.get("transcript", [])
            if t.get("speaker") == "agent" and str(t.get("text", "")).strip() and t["end"] > t["start"]]


def per_rows(judge, meta: dict[str, Any], g_audio: np.ndarray, c_audio: np.ndarray) -> list[dict[str, Any]]:
    """(6) per cascade reply window: reference phonemes, and the judge's phonemes of G and of the cascade there."""
    rows = []
    for a, b, text in reply_windows(meta):
        try:
            ref = reference_phonemes(text)
        except ValueError:
            continue
        if not ref:
            continue
        hyp = {}
        for name, audio in (("g", g_audio), ("cascade", c_audio)):
            clip = _clip(audio, a, b)
            hyp[name] = recognize(judge, clip)
        rows.append({"ref": ref, "g": hyp["g"], "cascade": hyp["cascade"]})
    return rows


def speech_summary(likeness: dict[str, list[dict]], pers: list[dict[str, Any]]) -> dict[str, Any]:
    """Speech-like rates (per system) and corpus PERs of G and of the cascade in the same windows."""
    from anima.talker.training.speech_metrics import error_rate

    out: dict[str, Any] = {"threshold_phonemes_per_s": SPEECH_PHONEMES_PER_S}
    for name, rows in likeness.items():
        rates = [r["phonemes_per_s"] for r in rows]
        out[name] = {"segments": len(rows), "speech_like_rate": _rate(sum(r >= SPEECH_PHONEMES_PER_S for r in rates), len(rates)),
                     "phonemes_per_s_median": _pct(rates, 50), "speech_s": float(sum(r["duration_s"] for r in rows))}
    if pers:
        refs = [r["ref"] for r in pers]
        for name in ("g", "cascade"):
            out[name]["per"] = error_rate(refs, [r[name] for r in pers])
        out["per_windows"] = len(pers)
    return out


# -- motion ------------------------------------------------------------------------------------------

def g_clip(rec: Recording) -> tuple[np.ndarray, np.ndarray]:
    """G's behaviour as the evaluator reads it: face (T, 112) at 25 fps, body263 (T20, 263) at 20 fps."""
    from anima.body.data.humanml3d import features_from_video_joints

    return rec.face, features_from_video_joints(rec.joints, 25.0)


def corpus_clip(conv_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A conversation's recorded agent behaviour: face (T, 112), body263 (T20, 263)."""
    with np.load(Path(conv_dir) / "motion.npz") as z:
        return z["face"].astype(np.float32), z["body263"].astype(np.float32)


def lip_sync_or_nan(face: np.ndarray, audio: np.ndarray, segments: Sequence[Segment]) -> float:
    """Jaw vs energy over the speech ticks of the rule (``metrics.lip_sync``); NaN without enough speech."""
    from anima.e2e.mot.training.metrics import lip_sync

    frames = min(len(face), -(-audio.size // TICK_SAMPLES))
    return lip_sync(face[:frames], audio[:frames * TICK_SAMPLES], speech=activity_mask(segments, frames))[0]


def _nanmean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


# -- the whole evaluation ----------------------------------------------------------------------------

def read_audio(path: str | Path) -> np.ndarray:
    import soundfile as sf

    audio, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if sr != SAMPLE_RATE or audio.ndim != 1:
        raise ValueError(f"{path}: expected mono {SAMPLE_RATE} Hz audio, got {sr} Hz shape {audio.shape}")
    return audio


def evaluate_conversation(agent, meta: dict[str, Any], judge=None) -> tuple[dict[str, Any], Recording]:
    """Drive G through one conversation and score it and the cascade (``meta``: corpus meta + ``dir``)."""
    conv = Path(meta["dir"])
    user_audio, cascade_audio = read_audio(conv / "user.flac"), read_audio(conv / "agent.flac")
    tl = timeline(meta)
    rec = drive(agent, user_audio, tl.user)
    seg = {"g": speech_segments(rec.audio), "cascade": speech_segments(cascade_audio)}
    face = {"g": rec.face, "cascade": corpus_clip(conv)[0]}
    audio = {"g": rec.audio, "cascade": cascade_audio}
    row: dict[str, Any] = {"conv": conv.name, "duration_s": len(user_audio) / SAMPLE_RATE, "capped_steps": rec.capped,
                           "step_s": rec.step_s.tolist()}
    for name in ("g", "cascade"):
        row[name] = {"turn_taking": turn_taking(seg[name], tl), "segments": seg[name],
                     "lip_sync": lip_sync_or_nan(face[name], audio[name], seg[name])}
        if judge is not None:
            row[name]["likeness"] = speech_likeness(judge, audio[name], seg[name])
    if judge is not None:
        row["per"] = per_rows(judge, meta, rec.audio, cascade_audio)
    return row, rec


def evaluate(agent, conversations: Sequence[dict[str, Any]], evaluator=None, judge=None,
             train_conversations: Sequence[dict[str, Any]] = (), fid_stride_s: float = 4.0,
             progress: bool = True) -> dict[str, Any]:
    """G vs the cascade on ``conversations`` (corpus metas with ``dir``): the table of the module docstring.

    ``evaluator``: a ``BehaviourEvaluator`` (None: no FID); ``judge``: a ``PhonemeJudge`` (None: no
    speech part); ``train_conversations``: the corpus reference for FID (test vs train).
    """
    if not conversations:
        raise ValueError("evaluate: no conversations to drive")
    t0 = time.perf_counter()
    rows, g_clips, c_clips = [], [], []
    for k, meta in enumerate(conversations):
        row, rec = evaluate_conversation(agent, meta, judge)
        rows.append(row)
        if evaluator is not None:
            g_clips.append(g_clip(rec))
            c_clips.append(corpus_clip(meta["dir"]))
        if progress:
            tt = summarise([row["g"]["turn_taking"]])
            print(f"[{time.perf_counter() - t0:6.0f} s] {k + 1}/{len(conversations)} {row['conv']}: "
                  f"reply {tt['reply_onset_rate']} overlap {tt['overlap_rate']}", flush=True)
    result: dict[str, Any] = {"conversations": len(rows), "rule": {
        "speaking_rms": SPEAKING_RMS, "hangover_s": SPEAKING_HANGOVER_S, "tick_s": TICK_S,
        "reply_window_s": [-REPLY_EARLY_S, REPLY_LATE_S], "barge_in_stop_s": BARGE_IN_STOP_S,
        "interrupt_after_s": INTERRUPT_AFTER_S, "match_s": MATCH_S}}
    for name in ("g", "cascade"):
        result[name] = summarise([r[name]["turn_taking"] for r in rows])
        result[name]["lip_sync"] = _nanmean([r[name]["lip_sync"] for r in rows])
        result[name]["speech_s"] = float(sum(b - a for r in rows for a, b in r[name]["segments"]))
    result["g"]["capped_steps"] = int(sum(r["capped_steps"] for r in rows))
    if evaluator is not None:
        motion: dict[str, Any] = {"fid_g_vs_corpus": evaluator.fid(c_clips, g_clips, fid_stride_s)}
        if train_conversations:
            motion["fid_corpus_test_vs_train"] = evaluator.fid([corpus_clip(m["dir"]) for m in train_conversations],
                                                               c_clips, fid_stride_s)
            motion["fid_ratio"] = motion["fid_g_vs_corpus"] / max(motion["fid_corpus_test_vs_train"], 1e-12)
            motion["train_conversations"] = len(train_conversations)
        motion["stride_s"] = fid_stride_s
        result["motion"] = motion
    if judge is not None:
        result["speech"] = speech_summary({n: [x for r in rows for x in r[n]["likeness"]] for n in ("g", "cascade")},
                                          [p for r in rows for p in r["per"]])
    steps = np.concatenate([r["step_s"] for r in rows])
    delays = [d for r in rows for d in r["g"]["turn_taking"]["reply_delays"] if d is not None]
    result["speed"] = {"steps": int(steps.size), "step_ms_median": float(np.median(steps) * 1e3),
                       "step_ms_p95": float(np.percentile(steps, 95) * 1e3), "step_budget_ms": 40.0,
                       "first_audio_median_s": _pct(delays, 50), "first_audio_p95_s": _pct(delays, 95),
                       "first_audio_within_0_5_s": _rate(sum(d <= 0.5 for d in delays), len(delays)),
                       "live_offset_s": LIVE_OFFSET_S}
    result["per_conversation"] = [{"conv": r["conv"], "duration_s": r["duration_s"], "capped_steps": r["capped_steps"],
                                   **{n: {k: v for k, v in summarise([r[n]["turn_taking"]]).items() if k != "barge_in_by_kind"}
                                      | {"lip_sync": r[n]["lip_sync"]} for n in ("g", "cascade")}} for r in rows]
    result["seconds"] = time.perf_counter() - t0
    return result


def select(dialogues: str | Path, split: str, limit: int | None, train_limit: int, seed: int = 0
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The split's conversations (first ``limit``) and a seeded sample of ``train_limit`` train ones."""
    from anima.e2e.data.format import open_corpus

    corpus = open_corpus(dialogues)
    test = [m for m in corpus.conversations if m.get("split") == split]
    if not test:
        raise ValueError(f"{dialogues}: no usable {split!r} conversations")
    train = [m for m in corpus.conversations if m.get("split") == "train"]
    if train_limit < len(train):
        pick = np.sort(np.random.default_rng(seed).choice(len(train), size=train_limit, replace=False))
        train = [train[i] for i in pick]
    return test[:limit] if limit else test, train


def run(weights: str | Path, talker: str | Path, dialogues: str | Path, split: str = "test", limit: int | None = None,
        evaluator_dir: str | Path | None = "out/mot/evaluator", judge_dir: str | Path | None = None,
        train_limit: int = 100, seed: int = 0, temperature: float = 0.8, top_k: int = 50, fid_stride_s: float = 4.0,
        progress: bool = True) -> dict[str, Any]:
    """Load G (``weights``: g/ + motion/), the talker's tokenizer and judge, the evaluator; ``evaluate``."""
    from anima.e2e.duplex.engine import DuplexAgent

    agent = DuplexAgent.load(weights, talker, seed=seed, temperature=temperature, top_k=top_k)
    evaluator = judge = None
    if evaluator_dir is not None:
        from anima.e2e.mot.training.evaluator import BehaviourEvaluator

        evaluator = BehaviourEvaluator.from_pretrained(evaluator_dir)
    judge_dir = Path(talker) / "judge" if judge_dir is None else judge_dir
    if Path(judge_dir).is_dir():
        from anima.talker.model.phoneme_judge import PhonemeJudge

        judge = PhonemeJudge.from_pretrained(judge_dir)
    test, train = select(dialogues, split, limit, train_limit if evaluator is not None else 0, seed)
    result = evaluate(agent, test, evaluator, judge, train, fid_stride_s, progress)
    result.update(weights=str(weights), talker=str(talker), split=split, seed=seed, temperature=temperature, top_k=top_k)
    return result


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="a folder with g/ and motion/ (like the engine's)")
    parser.add_argument("--talker", type=Path, default=Path("out/mot/talker"), help="Kodama weights: tokenizer/ (and judge/)")
    parser.add_argument("--dialogues", type=Path, default=Path("out/dialogues"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N conversations of the split")
    parser.add_argument("--evaluator", type=Path, default=Path("out/mot/evaluator"), help="the behaviour evaluator (FID)")
    parser.add_argument("--no-fid", action="store_true")
    parser.add_argument("--judge", type=Path, default=None, help="phoneme judge (default TALKER/judge)")
    parser.add_argument("--train-conversations", type=int, default=100, help="train conversations for the corpus FID reference")
    parser.add_argument("--fid-stride", type=float, default=4.0, help="seconds between the 4 s FID windows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args.weights, args.talker, args.dialogues, args.split, args.limit, None if args.no_fid else args.evaluator,
                 args.judge, args.train_conversations, args.seed, args.temperature, args.top_k, args.fid_stride)
    print(json.dumps({k: v for k, v in result.items() if k != "per_conversation"}, indent=1, default=float))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
