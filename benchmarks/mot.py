"""The mixture of transformers, measured: lip sync, silent commands, schedules, guidance, speech ability, speed.

    python benchmarks/mot.py --mot out/mot/runs/expert [--ablation out/mot/runs/dense out/mot/runs/lora]
                             [--sentences 16] [--command-seeds 4] [--json benchmarks/results/mot.json]

Quality parts run ``anima.e2e.mot.training.evaluate`` (docs/mot.md) on the dialogue corpus's test
conversations and the talker corpus's test sentences; ``--ablation`` adds the speech-ability and
behaviour rows of other modes (full fine-tuning, LoRA) for the paper's Table 3. Speed: the engine's
talker (``MoTAgent.talker.stream``: speech expert + tokenizer decode + behaviour windows) over whole
sentences, one thread: behaviour compute per second of speech (the acceptance: <= 0.5 s for 1 s)
and the whole talker's real-time factor. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = [
    "Where is the Nautilus bound tonight, captain?",
    "The sea is calm, and the lamps are lit.",
    "I have never seen such creatures in all my life.",
    "Ned Land wants to leave the ship as soon as he can.",
    "Professor, look at the coral forest below us!",
    "The pressure at this depth would crush a whale.",
]


def speed(mot_dir: Path, talker_dir: Path, steps: int) -> dict:
    """Behaviour seconds and talker real-time factor of the engine over whole sentences."""
    from anima.e2e.mot.engine import MoTAgent
    from anima.e2e.mot.sampling import SamplerSettings

    agent = MoTAgent.load(mot_dir, talker_dir, settings=SamplerSettings(steps=steps))
    list(agent.talker.stream("Ready."))  # first-call allocations
    rows = []
    for text in SENTENCES:
        before = agent.stats.seconds
        t0 = time.perf_counter()
        first = None
        audio_s = 0.0
        for chunk in agent.talker.stream(text):
            if first is None and chunk.samples.size:
                first = time.perf_counter() - t0
            audio_s += chunk.samples.size / 24000
        total = time.perf_counter() - t0
        rows.append({"text": text, "audio_s": audio_s, "first_chunk_s": first, "rtf": total / max(audio_s, 1e-9),
                     "behaviour_s_per_s": (agent.stats.seconds - before) / max(audio_s, 1e-9)})
    import statistics

    return {"sentences": rows, "steps": steps,
            "behaviour_s_per_s_median": statistics.median(r["behaviour_s_per_s"] for r in rows),
            "behaviour_s_per_s_max": max(r["behaviour_s_per_s"] for r in rows),
            "talker_rtf_median": statistics.median(r["rtf"] for r in rows),
            "first_chunk_s_median": statistics.median(r["first_chunk_s"] for r in rows if r["first_chunk_s"] is not None)}


def table(result: dict) -> str:
    lines = []
    lip = result["quality"].get("lip_sync")
    if lip:
        lines += ["lip sync (r, jaw vs speech energy)  generated speech  given audio  corpus face, same audio",
                  f"                                     {lip['generated_speech']:.3f}            {lip['given_audio']:.3f}"
                  f"        {lip['corpus_face_on_same_audio']:.3f}"]
    cmd = result["quality"].get("commands")
    if cmd:
        lines.append(f"silent commands (held-out phrasings, {cmd['generations']} generations): right {cmd['right']:.2f} "
                     f"wrong {cmd['wrong']:.2f} none {cmd['none']:.2f}")
    for part in ("schedules", "guidance"):
        rows = result["quality"].get(part)
        if rows:
            lines.append(f"{part:10s} FID    body jerk  face jerk  lip sync  forwards/s  compute s/s")
            for name, r in rows.items():
                lines.append(f"{name:10s} {r['fid']:6.2f} {r['body_jerk_mean']:9.1f} {r['face_param_jerk_mean']:9.1f} "
                             f"{r['lip_sync']:8.3f} {r['forwards_per_s']:10.1f} {r['compute_s_per_s']:10.3f}")
    if result.get("speech_alone"):
        sp = result["speech_alone"]
        lines.append(f"speech expert (TTS alone, before): audio-code NLL {sp['audio_code_nll']:.4f}  PER {sp['per_generated']:.3f}"
                     f"  weights {sp['digest']} (after training the expert mode's: {result['frozen_expert_digest']})")
    for mode, q in [("expert", result["quality"]), *result.get("ablation", {}).items()]:
        sp = q.get("speech")
        if sp:
            lines.append(f"speech expert ({mode:6s}): audio-code NLL {sp['audio_code_nll']:.4f}  PER {sp['per_generated']:.3f}")
    s = result.get("speed")
    if s:
        lines.append(f"speed ({s['steps']} steps): behaviour {s['behaviour_s_per_s_median']:.3f} s per s of speech "
                     f"(max {s['behaviour_s_per_s_max']:.3f}), talker RTF {s['talker_rtf_median']:.3f}, "
                     f"first chunk {s['first_chunk_s_median'] * 1000:.0f} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mot", type=Path, required=True)
    parser.add_argument("--talker", type=Path, default=Path("out/mot/talker"), help="the Kodama weights folder of its speech expert")
    parser.add_argument("--ablation", type=Path, nargs="*", default=[])
    parser.add_argument("--sentences", type=int, default=16)
    parser.add_argument("--command-seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--parts", nargs="+", default=["lip", "commands", "schedules", "guidance", "speech", "speed"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "mot.json")
    args = parser.parse_args()
    import torch

    from anima.e2e.mot.training.evaluate import evaluate

    torch.set_num_threads(args.threads)
    quality_parts = tuple(p for p in args.parts if p != "speed")
    common = dict(data=Path("out/mot/data"), evaluator_dir=Path("out/mot/evaluator"),
                  tokenizer_dir=args.talker / "tokenizer", judge_dir=args.talker / "judge",
                  talker_corpus=Path("out/talker/corpus"), sentences=args.sentences, command_seeds=args.command_seeds,
                  steps=args.steps)
    result = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
              "quality": evaluate(args.mot, parts=quality_parts, **common) if quality_parts else {}}
    if args.ablation:
        result["ablation"] = {}
        for run in args.ablation:
            q = evaluate(run, parts=("speech", "lip", "schedules"), **common)
            result["ablation"][q["mode"]] = q
    if "speech" in args.parts:  # the TTS alone, before any behaviour was trained beside it, on the same measures
        from anima.e2e.mot.model import load_mot, speech_digest
        from anima.e2e.mot.training.evaluate import speech_ability
        from anima.talker.model.kodama_tts import load_kodama_tts
        from anima.talker.model.phoneme_judge import PhonemeJudge
        from anima.talker.model.tokenizer import SpeechTokenizer

        alone, _ = load_kodama_tts(args.talker / "tts")
        result["speech_alone"] = speech_ability(alone, SpeechTokenizer.from_pretrained(args.talker / "tokenizer"),
                                                PhonemeJudge.from_pretrained(args.talker / "judge"), common["talker_corpus"])
        result["speech_alone"]["digest"] = speech_digest(alone)
        result["frozen_expert_digest"] = speech_digest(load_mot(args.mot, speech=alone).speech)
    if "speed" in args.parts:
        result["speed"] = speed(args.mot, args.talker, args.steps)
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
