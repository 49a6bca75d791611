"""The end-to-end duplex decoder G against the cascade: turn-taking, motion, speech, speed (issue 15).

    python benchmarks/e2e.py --weights out/duplex/weights [--talker out/mot/talker] [--limit N]
                             [--json benchmarks/results/e2e.json]

Runs ``anima.e2e.duplex.training.evaluate`` on the dialogue corpus's test conversations (all 29 by
default): each conversation's recorded user is played into G (the user does not react to it) and
G's speech, face and body are scored beside the corpus's own agent (the cascade) by one
speech-activity rule (the engine's: RMS per 40 ms tick > 0.01, 0.4 s hangover). The metric
definitions are that module's docstring. Speed is ``DuplexAgent.step``'s wall time on one thread:
run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:5.1f} %"


def _ms(x) -> str:
    return "-" if x is None else f"{1000 * x:5.0f} ms"


def _num(x, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def table(result: dict) -> str:
    """G vs cascade, one row per measure, with the acceptance goal."""
    g, c = result["g"], result["cascade"]
    rows = [
        ("reply onset within 1 s", _pct(g["reply_onset_rate"]), _pct(c["reply_onset_rate"]), ">= 80 %"),
        ("  reply delay median", _ms(g["reply_delay_median_s"]), _ms(c["reply_delay_median_s"]), ""),
        ("  user turn ends / no reply", f"{g['reply_turns']} / {g['reply_missing']}", f"{c['reply_turns']} / {c['reply_missing']}", ""),
        ("barge-in: stops within 300 ms", _pct(g["barge_in_stop_rate"]), _pct(c["barge_in_stop_rate"]), ">= 90 %"),
        ("  barge-ins (user onsets in agent speech)", str(g["barge_ins"]), str(c["barge_ins"]), ""),
        ("agent interruptions: precision", _pct(g["interrupt_precision"]), _pct(c["interrupt_precision"]), "report"),
        ("  recall", _pct(g["interrupt_recall"]), _pct(c["interrupt_recall"]), "report"),
        ("  detected / corpus cut-ins", f"{g['interrupts_detected']} / {g['interrupts_reference']}",
         f"{c['interrupts_detected']} / {c['interrupts_reference']}", ""),
        ("overlap outside interruptions", _pct(g["overlap_rate"]), _pct(c["overlap_rate"]), "< 5 %"),
        ("lip sync r (jaw vs own audio)", _num(g["lip_sync"]), _num(c["lip_sync"]), "report"),
    ]
    sp = result.get("speech")
    if sp:
        rows += [("speech-like stretches", _pct(sp["g"]["speech_like_rate"]), _pct(sp["cascade"]["speech_like_rate"]),
                  f">= {sp['threshold_phonemes_per_s']:g} ph/s"),
                 ("  phonemes per second (median)", _num(sp["g"]["phonemes_per_s_median"], ".1f"),
                  _num(sp["cascade"]["phonemes_per_s_median"], ".1f"), "")]
        if "per" in sp["g"]:
            rows.append((f"PER in the cascade's reply windows ({sp['per_windows']})", _num(sp["g"]["per"]),
                         _num(sp["cascade"]["per"]), "report"))
    lines = [f"{'':42s} {'G':>12s} {'cascade':>12s}  goal",
             *(f"{name:42s} {a:>12s} {b:>12s}  {goal}" for name, a, b, goal in rows)]
    m = result.get("motion")
    if m:
        line = f"motion FID (behaviour evaluator): G vs corpus {m['fid_g_vs_corpus']:.4g}"
        if "fid_corpus_test_vs_train" in m:
            line += (f"; corpus test vs train {m['fid_corpus_test_vs_train']:.4g}; ratio {m['fid_ratio']:.2f} "
                     "(goal <= 2)")
        lines.append(line)
    s = result["speed"]
    lines.append(f"speed: step median {s['step_ms_median']:.1f} ms, p95 {s['step_ms_p95']:.1f} ms (goal p95 <= 40 ms per 80 ms "
                 f"step); first audio after a turn end median {_ms(s['first_audio_median_s']).strip()}, p95 "
                 f"{_ms(s['first_audio_p95_s']).strip()} in media time (goal <= 500 ms; live adds {1000 * s['live_offset_s']:.0f} ms)")
    lines.append(f"{result['conversations']} conversations, {result['g']['capped_steps']} steps silenced by the safety cap, "
                 f"{result['seconds']:.0f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "anima" / "assets" / "weights" / "duplex",
                        help="g/ + motion/ (the engine's weights folder)")
    parser.add_argument("--talker", type=Path, default=Path("out/mot/talker"), help="Kodama weights: tokenizer/, judge/")
    parser.add_argument("--dialogues", type=Path, default=Path("out/dialogues"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N conversations (default: all)")
    parser.add_argument("--evaluator", type=Path, default=Path("out/mot/evaluator"))
    parser.add_argument("--no-fid", action="store_true")
    parser.add_argument("--fid-stride", type=float, default=4.0)
    parser.add_argument("--train-conversations", type=int, default=100, help="train conversations for the corpus FID reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "e2e.json")
    args = parser.parse_args()
    import torch

    from anima.e2e.duplex.training.evaluate import run

    torch.set_num_threads(args.threads)
    result = run(args.weights, args.talker, args.dialogues, args.split, args.limit,
                 None if args.no_fid else args.evaluator, None, args.train_conversations, args.seed,
                 fid_stride_s=args.fid_stride)
    result.update(machine=platform.processor() or platform.machine(), threads=args.threads)
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
