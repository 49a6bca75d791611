"""Server memory per session: process RSS with N live ``--face unils --body flood`` sessions.

Builds sessions one at a time in one process (``UniLSFace.load`` + ``FloodBody.load``, as the
server does for each connection), steps each through a few seconds of media so its streaming
state has grown to its working size, and reads the resident set size after 1, 2, 4 and 8
sessions. With the weights shared, each extra session costs its streaming state only.

    python benchmarks/serve_memory.py                       # writes benchmarks/results/serve_memory.json
    python benchmarks/serve_memory.py --sessions 1,2 --seconds 2 --json /tmp/m.json   # a quick run

It also runs against an older tree (``PYTHONPATH=/path/to/tree``) whose backends live at
``anima.face.unils_face`` and ``anima.body.flood_body``, for a before/after comparison.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serve_memory.json"
SAMPLE_RATE = 24000
FACE_FPS = 25
BODY_FPS = 20


def rss_mib() -> float:
    """Resident set size of this process (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def backends():
    """The two backend classes, from this tree or an older one."""
    try:
        from anima.body.flood import FloodBody
        from anima.face.unils import UniLSFace
    except ImportError:  # the tree before the reorganisation
        from anima.body.flood_body import FloodBody
        from anima.face.unils_face import UniLSFace
    return UniLSFace, FloodBody


def open_session(index: int, seconds: float) -> tuple[object, object]:
    """One session's face and body, stepped through ``seconds`` of media (speech, then a gesture)."""
    UniLSFace, FloodBody = backends()
    face, body = UniLSFace.load(seed=index), FloodBody.load(seed=index)
    tick = SAMPLE_RATE // FACE_FPS
    t = np.arange(tick) / SAMPLE_RATE
    for f in range(round(seconds * FACE_FPS)):
        voice = (0.3 * np.sin(2 * np.pi * 150 * (t + f / FACE_FPS)) * (f % 50 < 30)).astype(np.float32)
        face.step(f / FACE_FPS, voice, np.zeros(tick, np.float32))
    body.push_prompt("bow", 0.5)
    for _ in range(round(seconds * BODY_FPS)):
        body.next_frame()
    return face, body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Process RSS with N live UniLS face + FloodDiffusion body sessions.")
    parser.add_argument("--sessions", default="1,2,4,8", help="session counts to measure at (comma-separated)")
    parser.add_argument("--seconds", type=float, default=4.0, help="media each session is stepped through")
    parser.add_argument("--label", default="", help="a name for this tree in the JSON (e.g. before / after)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    counts = sorted({int(n) for n in args.sessions.split(",")})
    if not counts or counts[0] < 1:
        raise SystemExit(f"--sessions: expected positive counts, got {args.sessions!r}")

    import torch

    torch.set_num_threads(1)  # as the server sets at start-up
    backends()  # imports (torch, the packages) before the baseline reading
    gc.collect()
    baseline = rss_mib()
    sessions, rows = [], []
    start = time.perf_counter()
    for n in range(1, counts[-1] + 1):
        sessions.append(open_session(n - 1, args.seconds))
        if n in counts:
            gc.collect()
            rows.append({"sessions": n, "rss_mib": rss_mib()})
    per_session = math.nan
    if len(rows) > 1:
        per_session = (rows[-1]["rss_mib"] - rows[0]["rss_mib"]) / (rows[-1]["sessions"] - rows[0]["sessions"])
    result = {
        "label": args.label,
        "machine": {"cpu_count": __import__("os").cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "platform": platform.platform()},
        "media_s_per_session": args.seconds,
        "baseline_rss_mib": baseline,
        "rows": rows,
        "per_additional_session_mib": per_session,
        "wall_s": time.perf_counter() - start,
    }
    print(f"process RSS with N sessions (--face unils --body flood, {args.seconds:g} s of media each); "
          f"after imports: {baseline:.0f} MiB")
    print("| sessions | RSS MiB | over imports MiB |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['sessions']} | {row['rss_mib']:.0f} | {row['rss_mib'] - baseline:.0f} |")
    print(f"per additional session: {per_session:.1f} MiB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
