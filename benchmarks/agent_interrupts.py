"""When does the character cut a visitor off? False cut-ins on ordinary turns, cut-ins on turns that warrant one.

    python benchmarks/agent_interrupts.py [--json benchmarks/results/agent_interrupts.json]

Each turn is one offline session through the runtime: turn-taking with the character's interjector
(patience budget + urgent words + false claims against the world's canon at the story time,
``anima/thinker/interjector.py``), the scripted Thinker, the espeak-ng Talker and the playout; the
visitor's turn is spoken by espeak-ng voices, with a streaming transcript that lags each word by
0.3 s, as a recogniser's does.

- ordinary: the 60 in-domain questions of ``benchmarks/data/asr_questions.json`` plus 40 everyday
  lines, each put to one of the four characters at its default story time (100 turns): any cut-in
  is a false one (goal <= 5 %).
- true claims (30) and claims true but not known yet at the story time (10), from the frozen
  ``benchmarks/data/world_claims.json`` (written by another engineer who did not see the checker):
  any cut-in is a false one.
- warranted: 25 monologues longer than the character's patience (several sentences of a visitor's
  story), the 40 false claims of ``world_claims.json``, and 25 turns naming one of the character's
  urgent words mid-sentence (goal >= 80 % on the 50 of the acceptance: 25 monologues + the first 25
  false claims; every set is reported on its own too). Latency = agent speech start - (budget crossed
  | the urgent word's end | the end of the word from which the transcript contradicts the canon), in
  media time: offline the Thinker takes no media time, so this is the runtime's own delay
  (recognition lag, ticks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHARACTERS = ["ned", "nemo", "aronnax", "conseil"]
EVERYDAY = [
    "Good evening, how are you today?", "Thank you very much for the tour.", "Could you say that again, please?",
    "I am a little cold, is there a blanket?", "What time is dinner served on board?", "I like the colour of these shells.",
    "Do you sleep well down here?", "My name is Anna, I am a student from Lyon.", "That sounds wonderful.",
    "Is it always this quiet at night?", "I did not understand the last part.", "Can we go up to the platform later?",
    "Where can I wash my hands?", "I have never seen so many books in one room.", "Do you play chess?",
    "How long have you been at sea?", "The food here is strange but good.", "I think I am getting used to the motion.",
    "Please tell me more about the salon.", "Is the water very deep here?", "What is your favourite book?",
    "Goodbye for now, see you tomorrow.", "I would like to write a letter home.", "Are there other passengers aboard?",
    "That painting is beautiful.", "Can I borrow a pencil?", "What is that sound?", "I am sorry, I was distracted.",
    "Do you ever miss the land?", "What do you eat for breakfast?", "How fast are we going now?", "I feel much better today.",
    "Could we visit the engine room?", "That is a very old clock.", "What language is written on that map?",
    "Do you keep a diary?", "Is it safe to walk on the sea floor?", "Who cooks the meals?", "I slept badly last night.",
    "Thank you, that is all for now.",
]
STORY = ("Well, let me tell you how I came here. I left Paris in the spring with two trunks and a letter of "
         "introduction. In Brest I waited nine days for a ship, and the inn was full of sailors who talked all "
         "night about a monster in the sea. Then the captain of the frigate agreed to take me, and we sailed in "
         "the rain, and my cabin was so small that I could not stand up in it, and the cook was a man from "
         "Marseille who sang every morning, and one day")


def session(character: str, text: str, seed: int, word: str | None = None, story_time: int | None = None) -> dict:
    """One visitor turn to ``character`` at ``story_time``; whether, when and why the agent cut in."""
    from anima.core.clock import MediaClock
    from anima.core.conversation import UserTurnSpec
    from anima.core.frames import NS_PER_S, AgentStartedSpeakingFrame
    from anima.core.history import ConversationHistory
    from anima.core.plan import ActionPlan
    from anima.core.playout import Playout
    from anima.core.scripted_user import ScriptedUser
    from anima.core.session import Session
    from anima.registry import make_turn_taking
    from anima.talker.espeak import EspeakTTS
    from anima.talker.stage import TalkerStage
    from anima.testing import FrameRecorder
    from anima.thinker.claims import ClaimChecker, canon_for_world
    from anima.thinker.interjector import character_interjector
    from anima.thinker.persona import load_persona
    from anima.thinker.scripted import ScriptedThinker
    from anima.thinker.stage import ThinkerStage
    from anima.thinker.world import WORLD_ASSET

    voice = ["en-us", "en-gb", "en-us+f3", "en-gb-scotland"][seed % 4]
    tts = EspeakTTS(voice=voice)

    def synthesize(t):
        chunk = tts.synthesize(t, voice=voice)
        return chunk.samples, list(chunk.events)

    persona = load_persona(character)
    story_time = story_time or persona.default_story_time
    canon = canon_for_world(WORLD_ASSET)
    word_end_s = None  # when ``word`` (its last word) ends in this voice's rendering of ``text``
    samples, events = synthesize(text)
    events = [e for e in events if e.kind == "word"]
    if word is not None:
        last = word.split()[-1].lower()
        idx = next((k for k, e in enumerate(events) if e.text.lower().strip(",.") == last), None)
        word_end_s = events[idx + 1].time_s if idx is not None and idx + 1 < len(events) else None
    claim_end_s = None  # the end of the first word from which the words so far contradict the canon
    checker = ClaimChecker(canon)
    for k in range(len(events)):
        if checker.check(" ".join(e.text for e in events[:k + 1]), character, story_time):
            claim_end_s = events[k + 1].time_s if k + 1 < len(events) else len(samples) / 24000
            break
    spec = UserTurnSpec(text)
    spec.agent_interrupts_s = 1e9  # lets the scripted user stop talking if the agent cuts in (never fires by itself)
    history = ConversationHistory()
    out = FrameRecorder("out")
    turns = make_turn_taking()  # the cascade's own, with the character's interjector
    policy = character_interjector(persona, canon, story_time)
    reasons: list[str] = []

    class Recorded:  # the character's interjector, remembering why it cut in
        def consider(self, partial, floor_s):
            reason = policy.consider(partial, floor_s)
            if reason:
                reasons.append(reason)
            return reason

        def reset(self):
            policy.reset()

    turns.interjector = Recorded()
    stages = [turns, ThinkerStage(ScriptedThinker([ActionPlan("Yes.")]), history),
              TalkerStage(EspeakTTS(voice="en-gb")), Playout(), out]
    user = ScriptedUser([spec], synthesize, lambda p: np.zeros(0), pause_s=0.5, tail_s=0.6, seed=seed)
    asyncio.run(Session(stages, user, MediaClock(realtime=False), history).run())
    turn = next(t for t in history.turns if t.speaker == "user")
    clip = user.clips[0]
    start = out.of_type(AgentStartedSpeakingFrame)
    return {"character": character, "story_time": story_time, "cut": turn.interrupted, "heard": turn.text,
            "reason": reasons[0] if reasons else None, "claim_end_s": claim_end_s,
            "clip_start_s": clip.start_ns / NS_PER_S,
            "agent_start_s": start[0].pts_ns / NS_PER_S if start else None,
            "patience_s": persona.interrupts.patience_s, "word_end_s": word_end_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "agent_interrupts.json")
    args = ap.parse_args()
    import torch

    from anima.thinker.persona import load_persona

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    questions = json.loads((ROOT / "benchmarks" / "data" / "asr_questions.json").read_text())
    ordinary = [q for q in questions["tuning"] + questions["test"]] + EVERYDAY
    claims = json.loads((ROOT / "benchmarks" / "data" / "world_claims.json").read_text())
    rows = {"ordinary": [], "true_claims": [], "not_known_yet": [], "monologue": [], "false_claims": [], "urgent": []}
    for i, text in enumerate(ordinary[:100]):
        rows["ordinary"].append(session(CHARACTERS[i % 4], text, i))
    for i in range(25):
        character = CHARACTERS[i % 4]
        r = session(character, STORY + " " + STORY, 100 + i)  # ~40 s: past every character's patience
        r["latency_s"] = None if r["agent_start_s"] is None else r["agent_start_s"] - (r["clip_start_s"] + r["patience_s"])
        rows["monologue"].append(r)
    for name, key in (("true_claims", "true"), ("not_known_yet", "unknown_yet"), ("false_claims", "false")):
        for i, c in enumerate(claims[key]):
            r = session(c["character"], c["text"], 300 + i, story_time=c["story_time"])
            r["id"] = c["id"]
            r["latency_s"] = (None if r["agent_start_s"] is None or r["claim_end_s"] is None
                              else r["agent_start_s"] - (r["clip_start_s"] + r["claim_end_s"]))
            rows[name].append(r)
    for i in range(25):
        character = CHARACTERS[i % 4]
        urgent = load_persona(character).interrupts.urgent
        word = urgent[i % len(urgent)]
        text = f"Yesterday on the platform I thought I saw {word} out there, and I wanted to ask you about it"
        r = session(character, text, 200 + i, word)
        r["latency_s"] = (None if r["agent_start_s"] is None or r["word_end_s"] is None
                          else r["agent_start_s"] - (r["clip_start_s"] + r["word_end_s"]))
        rows["urgent"].append(r)
    summary = {}
    print(f"{'set':10} {'turns':>6} {'cut in':>8} {'latency median s':>17}")
    for name, rs in rows.items():
        rate = float(np.mean([r["cut"] for r in rs]))
        lat = [r["latency_s"] for r in rs if r.get("latency_s") is not None and r["cut"]]
        summary[name] = {"turns": len(rs), "cut_rate": rate, "latency_median_s": float(np.median(lat)) if lat else None,
                         "by_character": {c: float(np.mean([r["cut"] for r in rs if r["character"] == c] or [0])) for c in CHARACTERS}}
        print(f"{name:10} {len(rs):6d} {rate:8.0%} {'-' if not lat else f'{np.median(lat):.2f}':>17}")
    acceptance = rows["monologue"] + rows["false_claims"][:25]
    summary["acceptance_warranted_50"] = {"turns": len(acceptance), "cut_rate": float(np.mean([r["cut"] for r in acceptance]))}
    print(f"acceptance warranted set (25 monologues + first 25 false claims): {summary['acceptance_warranted_50']['cut_rate']:.0%}")
    for name in ("ordinary", "true_claims", "not_known_yet"):
        for r in rows[name]:
            if r["cut"]:
                print(f"  false cut-in [{name}] ({r['character']} @{r['story_time']}): {r['heard']!r} ({r['reason']})")
    for r in rows["false_claims"]:
        print(f"  false claim {r['id']} ({r['character']} @{r['story_time']}): {'CUT ' + str(r['reason']) if r['cut'] else 'let pass'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "rows": rows, "seconds": time.perf_counter() - t0}, indent=1))
    print(f"wrote {args.json} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
