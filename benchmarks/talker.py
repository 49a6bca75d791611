"""Measure speech codecs on the talker corpus: quality side by side on the same clips, and speed.

    python benchmarks/talker.py [--corpus out/talker/corpus] [--max-clips 20] [--tokenizer DIR ...]
                                [--judge DIR] [--speaker DIR] [--json benchmarks/results/talker.json]

The baselines (Codec2 1200 / 700C / 3200 bit/s, Opus 6 kbit/s) always run; each ``--tokenizer``
checkpoint adds the learned tokenizer (e.g. with and without its semantic branch). Per split (test
sentences of the training voices; held-out voices) and voice kind: STOI, PESQ-NB, PESQ-WB, pitch
agreement, and with ``--judge`` / ``--speaker`` the phoneme error rate and speaker similarity. Speed:
each codec's real-time factor (round-trip seconds per second of audio, one thread). The metric
definitions are in anima/talker/training/speech_metrics.py, the harness in .../evaluate.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from anima.talker.training import evaluate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_arguments(ap)
    ap.set_defaults(json=ROOT / "benchmarks" / "results" / "talker.json", corpus=str(ROOT / evaluate.DEFAULT_CORPUS))
    args = ap.parse_args()
    result = evaluate.run(args)
    print(f"\nspeed on {result['audio_s']:.0f} s of audio (one thread):")
    print(f"{'codec':16} {'kbit/s':>7} {'RTF':>8} {'x real time':>12}")
    for name, info in result["codecs"].items():
        rtf = info["rtf"]
        print(f"{name:16} {info['bitrate'] / 1000:7.2f} {rtf:8.4f} {1 / rtf if rtf else float('inf'):12.0f}")


if __name__ == "__main__":
    main()
