"""Echo: with no headset, does the agent interrupt itself, and is a real barge-in still heard?

    python benchmarks/echo.py [--minutes 2] [--barge-ins 10] [--json benchmarks/results/echo.json]

The runtime (echo canceller, turn-taking with the default detector and false-interruption
recovery, scripted Thinker, espeak-ng Talker, playout) runs offline with ``EchoingSource``: the
microphone picks up everything the agent plays, 120 ms later, through a small room, 10 dB down
(a laptop speaker next to its microphone), on top of a quiet room's noise.

1. Self-interruption: the agent speaks for ``--minutes`` (long replies, the user only says "Go on."
   between them); every pause and interruption during its speech is a self-interruption (goal: 0).
   The same run without the canceller shows what it prevents.
2. Barge-ins over the echo: ``--barge-ins`` sessions in which the user cuts in 2-6 s into a long
   reply ("Wait, stop, I have a question."); detected share, latency from the user's onset to the
   agent's silence and to the confirmed interruption.
3. Cost: the canceller's compute per second of microphone audio (one thread).
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

PARAGRAPHS = [
    "The Nautilus carries us through the deep water of the southern seas, past forests of kelp and the ruins "
    "of drowned cities, while the captain plays his organ late into the night. Nobody on board speaks of the "
    "land any more. We eat what the sea gives us, we read the books of the great library, and every morning "
    "the panels open on a world that no other man has seen.",
    "Conseil classifies every fish that passes the window, and Ned Land counts the days. I confess that I "
    "share neither his impatience nor his anger. Where else could a naturalist study the currents of the "
    "ocean from within, watch the coral grow, and follow the whales to the edge of the ice?",
    "Yesterday we walked on the floor of the sea in the diving suits of the Nautilus. The light of our lamps "
    "fell on shells as large as a man, on sponges and anemones, on the white bones of a ship that sank a "
    "hundred years ago. The captain stopped and knelt beside a grave of coral, and we understood that he had "
    "brought us there to bury one of his men.",
]


def _session(turns, replies, canceller: bool, seed: int, delay_s: float = 0.12):
    from anima.core.clock import MediaClock
    from anima.core.echo import EchoCancellation
    from anima.core.history import ConversationHistory
    from anima.core.playout import Playout
    from anima.core.scripted_user import ScriptedUser
    from anima.core.session import Session
    from anima.registry import make_turn_taking
    from anima.talker.espeak import EspeakTTS
    from anima.talker.stage import TalkerStage
    from anima.testing import FrameRecorder
    from anima.testing.echo import EchoingSource
    from anima.thinker.scripted import ScriptedThinker
    from anima.thinker.stage import ThinkerStage

    voice = ["en-us", "en-gb", "en-us+f3"][seed % 3]
    user_tts = EspeakTTS(voice=voice)

    def synthesize(text):
        chunk = user_tts.synthesize(text, voice=voice)
        return chunk.samples, list(chunk.events)

    history = ConversationHistory()
    out = FrameRecorder("out")
    echo = EchoCancellation() if canceller else None
    stages = ([echo] if echo else []) + [
        make_turn_taking(), ThinkerStage(ScriptedThinker(replies), history), TalkerStage(EspeakTTS(voice="en-gb")), Playout(), out,
    ]
    source = EchoingSource(ScriptedUser(turns, synthesize, lambda p: np.zeros(0), pause_s=0.6, tail_s=1.0, seed=seed, reply_timeout_s=300.0),
                           delay_s=delay_s, gain_db=-10.0, seed=seed)
    result = asyncio.run(Session(stages, source, MediaClock(realtime=False), history).run())
    return result, out, source, echo


def self_interruption(minutes: float, canceller: bool) -> dict:
    from anima.core.conversation import UserTurnSpec
    from anima.core.frames import AgentStoppedSpeakingFrame, InterruptionFrame, PauseFrame
    from anima.core.plan import ActionPlan

    n = max(1, int(np.ceil(minutes * 60 / 17)))  # a paragraph is ~18 s of espeak speech
    replies = [ActionPlan(PARAGRAPHS[i % len(PARAGRAPHS)]) for i in range(n)]
    turns = [UserTurnSpec("Tell me about the voyage.")] + [UserTurnSpec("Go on.") for _ in range(n - 1)]
    result, out, _, echo = _session(turns, replies, canceller, seed=0)
    stopped = out.of_type(AgentStoppedSpeakingFrame)
    return {
        "canceller": canceller,
        "agent_speech_s": float(sum(s.played_s for s in stopped)),
        "agent_turns": len(stopped),
        "pauses": len(out.of_type(PauseFrame)),
        "interruptions": len(out.of_type(InterruptionFrame)),
        "interrupted_turns": sum(s.interrupted for s in stopped),
        "canceller_ms_per_s": None if echo is None else 1000 * result.metrics.compute_s.get("echo", 0.0) / result.media_s,
        "media_s": result.media_s,
    }


def barge_ins(count: int) -> dict:
    from anima.core.conversation import UserTurnSpec
    from anima.core.frames import NS_PER_S, AgentStoppedSpeakingFrame, InterruptionFrame
    from anima.core.plan import ActionPlan

    rng = np.random.default_rng(0)
    rows = []
    for i in range(count):
        at = float(rng.uniform(2.0, 6.0))
        turns = [UserTurnSpec("Tell me about the voyage."), UserTurnSpec("Wait, stop, I have a question.", barge_in_s=at)]
        replies = [ActionPlan(PARAGRAPHS[i % len(PARAGRAPHS)]), ActionPlan("Yes?")]
        result, out, source, _ = _session(turns, replies, True, seed=i + 1)
        stopped = out.of_type(AgentStoppedSpeakingFrame)
        onset = source.clips[1].start_ns
        confirm = out.of_type(InterruptionFrame)
        rows.append({
            "detected": bool(stopped) and stopped[0].interrupted,
            "silence_ms": 1000 * result.metrics.barge_in_latency_s[0] if result.metrics.barge_in_latency_s else None,
            "confirm_ms": (confirm[0].pts_ns - onset) / NS_PER_S * 1000 if confirm else None,
        })
    silence = [r["silence_ms"] for r in rows if r["silence_ms"] is not None]
    confirm = [r["confirm_ms"] for r in rows if r["confirm_ms"] is not None]
    return {"trials": rows, "detected": float(np.mean([r["detected"] for r in rows])),
            "silence_ms_median": float(np.median(silence)) if silence else None,
            "confirm_ms_median": float(np.median(confirm)) if confirm else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--barge-ins", type=int, default=10)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "echo.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = [self_interruption(args.minutes, True), self_interruption(args.minutes, False)]
    print(f"{'canceller':10} {'agent speech s':>15} {'turns':>6} {'pauses':>7} {'interruptions':>14} {'cut turns':>10} {'cost ms/s':>10}")
    for r in runs:
        cost = "-" if r["canceller_ms_per_s"] is None else f"{r['canceller_ms_per_s']:.1f}"
        print(f"{'on' if r['canceller'] else 'off':10} {r['agent_speech_s']:15.1f} {r['agent_turns']:6d} {r['pauses']:7d} "
              f"{r['interruptions']:14d} {r['interrupted_turns']:10d} {cost:>10}")
    b = barge_ins(args.barge_ins)
    print(f"\nbarge-ins over the echo: {b['detected']:.0%} detected of {len(b['trials'])}; onset -> agent silent "
          f"{b['silence_ms_median']:.0f} ms median, -> confirmed {b['confirm_ms_median']:.0f} ms median")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"self_interruption": runs, "barge_ins": b, "seconds": time.perf_counter() - t0}, indent=1))
    print(f"wrote {args.json} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
