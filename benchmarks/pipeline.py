"""Benchmark the whole cascade: real-time factor (total and per stage), reply and barge-in latency,
peak memory. Prints a table and writes JSON.

    python benchmarks/pipeline.py [--conversation FILE] [--no-live] [--talker kodama] [--json benchmarks/results/pipeline.json]

Offline run: the conversation is rendered as fast as possible; RTF = wall seconds per media second.
Live run (--live, on by default): the same conversation paced by the wall clock, as a live session
would run, to measure latencies in wall time. Each run is a fresh process so peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_once(conversation: Path, realtime: bool, talker: str = "espeak") -> dict:
    """Render once in this process and return the measurements."""
    from anima.cascade import CascadeOptions, render_conversation

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.mp4"
        result = render_conversation(conversation, out, CascadeOptions(realtime=realtime, talker=talker), progress=False)
        size = out.stat().st_size
    m = result.metrics
    return {
        "mode": "live" if realtime else "offline",
        "talker": talker,
        "media_s": result.media_s,
        "wall_s": result.wall_s,
        "rtf_total": result.rtf,
        "rtf_stages": {k: v for k, v in m.rtf().items() if k != "total"},
        "reply_latency_s": m.reply_latency_s,
        "barge_in_latency_s": m.barge_in_latency_s,
        "barge_in_wall_latency_s": m.barge_in_wall_latency_s,
        "underrun_ticks": m.underrun_ticks,
        "late_ticks": m.late_ticks,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mp4_bytes": size,
        "errors": result.errors,
    }


def _fmt(xs: list[float]) -> str:
    return ", ".join(f"{x * 1000:.0f}" for x in xs) if xs else "-"


def main() -> None:
    from anima.cascade import demo_conversation_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversation", type=Path, default=demo_conversation_path())
    ap.add_argument("--no-live", action="store_true", help="skip the wall-clock run")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "pipeline.json")
    ap.add_argument("--talker", default="espeak", help="talker backend (espeak, kodama)")
    ap.add_argument("--child", choices=["offline", "live"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_once(args.conversation, args.child == "live", args.talker)))
        return

    runs = []
    for mode in ["offline"] + ([] if args.no_live else ["live"]):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--conversation", str(args.conversation),
                               "--talker", args.talker],
                              capture_output=True, text=True, check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    print(f"pipeline benchmark: {args.conversation.name}, talker {args.talker}, {platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores")
    print(f"{'mode':8} {'media s':>8} {'wall s':>8} {'RTF':>6} {'reply ms':>16} {'barge-in ms':>12} {'underruns':>9} {'late':>5} {'peak MB':>8}")
    for r in runs:
        barge = r["barge_in_wall_latency_s"] if r["mode"] == "live" else r["barge_in_latency_s"]
        print(f"{r['mode']:8} {r['media_s']:8.2f} {r['wall_s']:8.2f} {r['rtf_total']:6.3f} {_fmt(r['reply_latency_s']):>16} "
              f"{_fmt(barge):>12} {r['underrun_ticks']:9d} {r['late_ticks']:5d} {r['peak_rss_mb']:8.0f}")
    print("\nper-stage compute (seconds of compute per second of media, offline run):")
    for name, value in sorted(runs[0]["rtf_stages"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:10} {value:.4f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"conversation": args.conversation.name, "talker": args.talker, "runs": runs}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
