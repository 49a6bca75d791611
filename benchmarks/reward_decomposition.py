"""Reward decomposition on simulated rated sessions: does a reply the visitor liked get more of the rating?

    python benchmarks/reward_decomposition.py [--sessions 200] [--tune] [--json benchmarks/results/reward_decomposition.json]

Each simulated session (6-12 turns) has a visitor with their own voice (an espeak-ng voice, base
pitch, loudness and speed) and a hidden label per character reply: pleased, annoyed or neutral.
The visitor's next turn is their reaction, rendered as real audio by espeak-ng and read back
through the runtime feature extractor (``anima.thinker.prosody``) plus its words:

- pleased: higher (espeak-ng pitch +3..12), louder (x1.1-1.5), faster (+0..20 wpm) than the
  visitor's usual; annoyed: lower (-2..10), quieter (x0.6-0.95), slower (-0..20); a quarter of the
  annoyed reactions that say so are angry instead (louder and higher, with complaining words);
  neutral: the usual voice +-5 pitch, x0.85-1.15. On every turn, noise (pitch sd 4, loudness
  x0.85-1.15, speed sd 8), and 15 % of reactions are unexpressive (the usual voice whatever the label).
- words: half the reactions say it (e.g. "Thanks, that's fascinating!", "That's not what I asked."),
  a third of those in phrasings the oracle's word list does not contain ("You make the sea sound
  magical.", "Can we talk about something else?"); the other half are neutral follow-up questions
  (or, for an annoyed visitor, a short "Okay."), so only the voice tells.
- the rating: round(3 + 2.5 * (pleased - annoyed) / labelled + noise), clipped to 1..5.

Measured with the offline oracle (``anima.thinker.reward``): pairwise accuracy (over every pleased
and annoyed reply pair of a session, the share where the pleased one got the larger reward; goal
>= 80 %), sessions where the pleased replies' mean reward beats the annoyed ones', and the relative
error |sum R_t - rating| / rating (goal <= 5 %). Ablations: words only, voice only.

Frozen split: thresholds were chosen on seeds 0-99 (``--tune`` prints that grid) and written into
``anima.thinker.reward.THRESHOLDS``; the reported numbers are on held-out seeds 1000+.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anima.thinker.prosody import Prosody, prosody  # noqa: E402
from anima.thinker.reward import THRESHOLDS, Thresholds, TurnFeatures, offline_oracle, trajectory  # noqa: E402

VOICES = ["en-us", "en-gb", "en-us+f3", "en+m3", "en-gb+f2", "en-us+m7", "en+f4"]
OPENINGS = ["Hello, Captain. Who are you?", "Good evening. Where am I?", "Hello there, what is this ship?",
            "Hi. Can you tell me about yourself?"]
PLEASED_LEXICON = ["Thanks, that's fascinating!", "Wow, tell me more about that.", "Haha, I love that story!",
                   "That's wonderful, Captain.", "How exciting! What happened next?", "Brilliant answer, thank you."]
PLEASED_OTHER = ["Oh, I could listen to this all day.", "What a story!", "You make the sea sound magical."]
ANNOYED_LEXICON = ["That's wrong.", "This is boring.", "That's not what I asked.", "You already said that.",
                   "Ugh, whatever."]
ANNOYED_OTHER = ["Can we talk about something else?", "I asked about the ship, not the fish.", "Hmm, no."]
NEUTRAL = ["And what about the crew?", "Where are we going now?", "Tell me about the ship.", "What do you eat on board?",
           "How deep can we dive?", "Why did you leave the land?", "What is that light outside?",
           "How long have you been at sea?"]
SHORT = ["Okay.", "Right.", "Sure."]
REPLY = "The sea is everything, and the Nautilus is my home."
TUNING_SEEDS = range(0, 100)
HELD_OUT_FROM = 1000


@dataclass
class Turn:
    text: str
    pitch: int  # espeak-ng -p (0-99)
    amplitude: int  # espeak-ng -a (0-200)
    speed: int  # espeak-ng -s (words a minute)


@dataclass
class Session:
    seed: int
    voice: str
    turns: list[Turn]  # user turns: the opening, then the reaction to each reply but the last
    labels: list[str]  # per reply with a reaction: pleased / annoyed / neutral
    rating: int


def simulate(seed: int) -> Session:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 13))
    voice = str(rng.choice(VOICES))
    p0, a0, s0 = int(rng.integers(25, 66)), int(rng.integers(70, 131)), int(rng.integers(145, 186))
    labels = list(rng.choice(["pleased", "annoyed", "neutral"], size=n - 1, p=[0.35, 0.35, 0.3]))
    labels[int(rng.integers(0, n - 1))] = "pleased"  # every session has one of each to rank
    while "annoyed" not in labels:
        labels[int(rng.integers(0, n - 1))] = "annoyed"

    def turn(text: str, dp: float, ka: float, ds: float) -> Turn:
        return Turn(text, int(np.clip(p0 + dp + rng.normal(0, 4), 0, 99)), int(np.clip(a0 * ka * rng.uniform(0.85, 1.15), 10, 200)),
                    int(np.clip(s0 + ds + rng.normal(0, 8), 90, 260)))

    turns = [turn(str(rng.choice(OPENINGS)), 0, 1, 0)]
    for label in labels:
        says = rng.random() < 0.5
        other = rng.random() < 1 / 3
        flat_voice = rng.random() < 0.15  # an unexpressive reaction: the voice tells nothing
        if label == "pleased":
            text = str(rng.choice(PLEASED_OTHER if other else PLEASED_LEXICON)) if says else str(rng.choice(NEUTRAL))
            voice_shift = (rng.uniform(3, 12), rng.uniform(1.1, 1.5), rng.uniform(0, 20))
        elif label == "annoyed":
            angry = says and rng.random() < 0.25
            if says:
                text = str(rng.choice(ANNOYED_OTHER if other else ANNOYED_LEXICON))
            else:
                text = str(rng.choice(SHORT if rng.random() < 0.5 else NEUTRAL))
            if angry:
                voice_shift = (rng.uniform(3, 12), rng.uniform(1.2, 1.6), rng.uniform(0, 15))
            else:
                voice_shift = (-rng.uniform(2, 10), rng.uniform(0.6, 0.95), -rng.uniform(0, 20))
        else:
            text = str(rng.choice(NEUTRAL))
            voice_shift = (rng.uniform(-5, 5), rng.uniform(0.85, 1.15), rng.uniform(-10, 10))
        turns.append(turn(text, *((0.0, 1.0, 0.0) if flat_voice else voice_shift)))
    score = (labels.count("pleased") - labels.count("annoyed")) / len(labels)
    rating = int(np.clip(round(3 + 2.5 * score + rng.normal(0, 0.5)), 1, 5))
    return Session(seed, voice, turns, labels, rating)


def speak(turn: Turn, voice: str) -> tuple[np.ndarray, int]:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-p", str(turn.pitch), "-a", str(turn.amplitude), "-s", str(turn.speed),
                          "--stdout", turn.text], capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return audio, rate


def features(session: Session) -> list[Prosody | None]:
    out = []
    for turn in session.turns:
        audio, rate = speak(turn, session.voice)
        out.append(prosody(audio, rate))
    return out


def evaluate(sessions: list[Session], prosodies: list[list[Prosody | None]], t: Thresholds,
             words: bool = True, voice: bool = True) -> dict:
    pairs_ok = pairs = sessions_ok = 0
    errors = []
    for s, ps in zip(sessions, prosodies, strict=True):
        feats = [TurnFeatures(turn.text if words else "", p if voice else None) for turn, p in zip(s.turns, ps, strict=True)]
        steps = trajectory([(f.text, REPLY) for f in feats], feats, t)
        result = offline_oracle(steps, s.rating, t)
        r = np.array(result.rewards[:-1])  # the last reply has no reaction (and no label)
        labels = np.array(s.labels)
        good, bad = r[labels == "pleased"], r[labels == "annoyed"]
        diff = good[:, None] - bad[None, :]
        pairs_ok += float((diff > 1e-12).sum() + 0.5 * (np.abs(diff) <= 1e-12).sum())
        pairs += diff.size
        sessions_ok += int(good.mean() > bad.mean())
        errors.append(abs(result.total - s.rating) / s.rating)
    return {"pair_accuracy": pairs_ok / pairs, "session_accuracy": sessions_ok / len(sessions), "pairs": pairs,
            "sessions": len(sessions), "sum_rel_error_max": float(max(errors)), "sum_rel_error_mean": float(np.mean(errors))}


def tune(sessions: list[Session], prosodies: list[list[Prosody | None]]) -> tuple[Thresholds, list[dict]]:
    grid = {"pitch_st": [1.0, 1.5, 2.5], "loudness_db": [2.0, 3.0, 4.5], "prosody_weight": [0.4, 0.8, 1.2],
            "short_weight": [0.3, 0.6, 1.0]}
    rows = []
    for values in itertools.product(*grid.values()):
        t = dataclasses.replace(THRESHOLDS, **dict(zip(grid, values, strict=True)))
        rows.append({**dict(zip(grid, values, strict=True)), **evaluate(sessions, prosodies, t)})
    best = max(rows, key=lambda row: (row["pair_accuracy"], row["session_accuracy"]))
    return dataclasses.replace(THRESHOLDS, **{k: best[k] for k in grid}), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200, help="held-out sessions (seeds 1000..)")
    parser.add_argument("--tune", action="store_true", help="also run the threshold grid on tuning seeds 0-99")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "reward_decomposition.json")
    args = parser.parse_args()
    start = time.perf_counter()
    report: dict = {"thresholds": dataclasses.asdict(THRESHOLDS), "split": {"tuning_seeds": "0-99",
                    "held_out_seeds": f"{HELD_OUT_FROM}-{HELD_OUT_FROM + args.sessions - 1}"}}
    if args.tune:
        tuning = [simulate(s) for s in TUNING_SEEDS]
        tuning_p = [features(s) for s in tuning]
        best, rows = tune(tuning, tuning_p)
        report["tuning"] = {"best": dataclasses.asdict(best), "grid_size": len(rows),
                            "best_pair_accuracy": max(r["pair_accuracy"] for r in rows),
                            "current_thresholds": evaluate(tuning, tuning_p, THRESHOLDS)}
        print(f"tuning (seeds 0-99): best of {len(rows)} = {report['tuning']['best']}, "
              f"pair accuracy {report['tuning']['best_pair_accuracy']:.3f}; current thresholds "
              f"{report['tuning']['current_thresholds']['pair_accuracy']:.3f}")
    sessions = [simulate(HELD_OUT_FROM + i) for i in range(args.sessions)]
    prosodies = [features(s) for s in sessions]
    voiced = sum(p is not None for ps in prosodies for p in ps) / sum(len(ps) for ps in prosodies)
    rows = {"full (words + voice)": evaluate(sessions, prosodies, THRESHOLDS),
            "words only": evaluate(sessions, prosodies, THRESHOLDS, voice=False),
            "voice only": evaluate(sessions, prosodies, THRESHOLDS, words=False)}
    report.update(held_out=rows, turns=sum(len(s.turns) for s in sessions), voiced_fraction=voiced,
                  ratings={str(r): sum(s.rating == r for s in sessions) for r in range(1, 6)},
                  oracle="offline", llm_oracle="not measured (no LLM server offline)",
                  seconds=round(time.perf_counter() - start, 1))
    print(f"held-out seeds {report['split']['held_out_seeds']}: {args.sessions} sessions, {report['turns']} user turns "
          f"(espeak-ng audio, {voiced:.0%} with prosody), offline oracle")
    print(f"{'condition':<22} {'pair acc':>9} {'sessions':>9} {'sum err max':>12} {'sum err mean':>13}")
    for name, row in rows.items():
        print(f"{name:<22} {row['pair_accuracy']:>9.3f} {row['session_accuracy']:>9.3f} {row['sum_rel_error_max']:>12.2e} "
              f"{row['sum_rel_error_mean']:>13.2e}")
    print(f"goal: pair accuracy >= 0.80 and sum error <= 5 %  ({report['seconds']} s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
