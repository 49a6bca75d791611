"""Load benchmark for ``anima serve``: N concurrent WebSocket sessions on loopback for M minutes.

    python benchmarks/serve_load.py --sessions 4 --minutes 2 [--thinker repeat|story] [--body procedural|flood]

The server runs in its own process (as in production); each simulated client is a browser stand-in:
it streams microphone audio in real time (40 ms messages: room noise, and now and then the user
cutting in while the agent speaks), types a question every few seconds, and records what comes
back. Reported per session: real-time factor (motion frames received / frames due), late frames
(arriving > 100 ms after the clock says they are due), dropped frames (gaps in tick numbers),
reply latency (typed text sent -> first agent audio received), barge-in latency (the server's
measure, onset -> silent), and the server's memory growth. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = ["Tell me about the sea.", "What is the Nautilus made of?", "Where are we going now?", "Why do you avoid the land?"]
REPLY = ("The sea is everything. It covers seven tenths of the globe, its breath is pure and healthy, "
         "and in it I am free, far from the tyrants of the land.")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def serve_child(port: int, thinker: str, body: str = "procedural") -> None:
    """Run the server in this process until killed."""
    import uvicorn

    from anima.serve.app import ServeConfig, create_app
    from anima.testing.server import RepeatingThinker

    factory = (lambda hello: RepeatingThinker(REPLY)) if thinker == "repeat" else None
    app = create_app(ServeConfig(port=port, thinker_factory=factory, max_sessions=64, body=body))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws_max_size=64 * 1024)


async def client(address: str, index: int, seconds: float, speech: np.ndarray) -> dict:
    import websockets

    from anima.serve.protocol import HEADER, BinaryKind, decode_binary

    rng = np.random.default_rng(index)
    stats = {"motion": 0, "late": 0, "dropped": 0, "replies": [], "audio_msgs": 0, "interrupts": 0, "errors": 0, "barge_in": []}
    onset_pts: float | None = None
    async with websockets.connect(f"ws://{address}/ws", max_size=2**20) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "character": "nemo"}))
        json.loads(await ws.recv())
        t0 = time.monotonic()
        clock0: float | None = None  # wall time of media time 0, estimated from the earliest frame
        last_tick = None
        pending_text: float | None = None
        agent_speaking = False
        barge_plan: list[np.ndarray] = []

        async def receive() -> None:
            nonlocal clock0, last_tick, pending_text, agent_speaking, onset_pts
            async for msg in ws:
                now = time.monotonic()
                if isinstance(msg, bytes):
                    kind, ident, pts, _ = decode_binary(msg)
                    if kind == BinaryKind.MOTION:
                        stats["motion"] += 1
                        clock0 = now - pts if clock0 is None else min(clock0, now - pts)
                        if now - (clock0 + pts) > 0.1:
                            stats["late"] += 1
                        if last_tick is not None and ident > last_tick + 1:
                            stats["dropped"] += ident - last_tick - 1
                        last_tick = ident
                    elif kind == BinaryKind.AGENT_AUDIO:
                        stats["audio_msgs"] += 1
                        if pending_text is not None and ident:
                            stats["replies"].append(now - pending_text)
                            pending_text = None
                else:
                    m = json.loads(msg)
                    if m["type"] == "agent_started":
                        agent_speaking = True
                    elif m["type"] == "agent_stopped":
                        agent_speaking = False
                        if m["interrupted"] and onset_pts is not None:
                            stats["barge_in"].append(m["pts"] - onset_pts)  # the server's measure: onset -> silent
                            onset_pts = None
                    elif m["type"] == "interrupt":
                        stats["interrupts"] += 1
                        onset_pts = m["onset_pts"]
                    elif m["type"] == "error":
                        stats["errors"] += 1

        receiver = asyncio.create_task(receive())
        seq, next_text, cut_in_done = 0, 1.0 + index * 0.7, 0
        while time.monotonic() - t0 < seconds:
            elapsed = time.monotonic() - t0
            if elapsed >= next_text and pending_text is None and not agent_speaking:
                await ws.send(json.dumps({"type": "text", "text": QUESTIONS[seq % len(QUESTIONS)]}))
                pending_text = time.monotonic()
                next_text = elapsed + 9.0
            if agent_speaking and not barge_plan and cut_in_done < seconds // 20 and rng.random() < 0.01:
                barge_plan = [speech[i : i + 960] for i in range(0, speech.size, 960)]
                cut_in_done += 1
            chunk = barge_plan.pop(0) if barge_plan else (rng.standard_normal(960) * 7e-4).astype(np.float32)
            pcm = (np.clip(np.pad(chunk, (0, 960 - chunk.size)), -1, 1) * 32767).astype("<i2")
            await ws.send(HEADER.pack(int(BinaryKind.USER_AUDIO), 1, 0, seq, 0.0) + pcm.tobytes())
            seq += 1
            await asyncio.sleep(max(0.0, t0 + seq * 0.04 - time.monotonic()))
        duration = time.monotonic() - t0
        receiver.cancel()
    stats["duration_s"] = duration
    stats["rtf"] = stats["motion"] / (duration * 25)
    return stats


async def run_clients(address: str, sessions: int, seconds: float) -> list[dict]:
    from anima.talker.espeak import EspeakTTS

    speech = EspeakTTS().synthesize("Wait, wait, let me ask something else.", voice="en-us+f3").samples
    return await asyncio.gather(*[client(address, i, seconds, speech) for i in range(sessions)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--thinker", choices=["repeat", "story"], default="repeat",
                    help="repeat: a fixed reply (measures the runtime and transport); story: the embedded story thinker")
    ap.add_argument("--body", choices=["procedural", "flood"], default="procedural",
                    help="body animator of every session (flood: one FloodDiffusion stream per session)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    ap.add_argument("--serve-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_child:
        serve_child(args.serve_child, args.thinker, args.body)
        return
    if not 1 <= args.sessions <= 64 or not 0 < args.minutes <= 30:
        ap.error("--sessions must be 1..64 and --minutes 0..30 (bounded load on loopback only)")

    from anima.testing.server import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-child", str(port), "--thinker", args.thinker,
                               "--body", args.body])
    try:
        import httpx

        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        rss0 = rss_mb(server.pid)
        results = asyncio.run(run_clients(f"127.0.0.1:{port}", args.sessions, args.minutes * 60))
        rss1 = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(f"serve load: {args.sessions} sessions x {args.minutes:g} min on loopback, thinker={args.thinker}, "
          f"body={args.body}, {os.cpu_count()} cores")
    print(f"{'session':>7} {'RTF':>6} {'motion':>7} {'late %':>7} {'dropped':>8} {'reply ms (median)':>18} {'barge-ins':>9} {'barge-in ms':>12} {'errors':>6}")
    for i, r in enumerate(results):
        reply = f"{np.median(r['replies']) * 1000:.0f}" if r["replies"] else "-"
        barge = ", ".join(f"{x * 1000:.0f}" for x in r["barge_in"]) or "-"
        print(f"{i:7d} {r['rtf']:6.3f} {r['motion']:7d} {100 * r['late'] / max(1, r['motion']):7.2f} {r['dropped']:8d} {reply:>18} {r['interrupts']:9d} {barge:>12} {r['errors']:6d}")
    all_replies = [x for r in results for x in r["replies"]]
    late = sum(r["late"] for r in results) / max(1, sum(r["motion"] for r in results))
    print(f"\nlate frames overall {100 * late:.2f} %, dropped {sum(r['dropped'] for r in results)}, "
          f"reply latency median {np.median(all_replies) * 1000:.0f} ms p95 {np.percentile(all_replies, 95) * 1000:.0f} ms, "
          f"server RSS {rss0:.0f} -> {rss1:.0f} MB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"sessions": args.sessions, "minutes": args.minutes, "thinker": args.thinker, "body": args.body,
                                     "late_fraction": late, "rss_mb": [rss0, rss1], "clients": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
