"""``anima serve``: run the live duplex server and its web client."""

from __future__ import annotations

import argparse
from pathlib import Path

from anima.registry import add_backend_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the live server and web client (FastAPI + WebSockets)",
                       description="Serve the live avatar: open http://HOST:PORT/ in a browser, pick a character, type or talk. "
                                   "Binds 127.0.0.1 by default; any other address requires --token.")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--token", default=None, help="shared secret clients must send (?token=... in the page URL)")
    p.add_argument("--world", type=Path, default=None, help="story thinker's world database (default: the shipped one)")
    add_backend_arguments(p, body_default="procedural")
    p.add_argument("--asr", default="pocketsphinx", choices=["pocketsphinx", "none"],
                   help="speech recognition: pocketsphinx (offline, adapted to the story's names; default) or none")
    p.add_argument("--asr-url", default=None, help="OpenAI-compatible transcription server base URL, e.g. http://127.0.0.1:9000/v1 "
                                                   "(a Whisper-class server; replaces --asr)")
    p.add_argument("--asr-model", default="whisper-1", help="model name sent to the transcription server")
    p.add_argument("--no-agent-interrupts", dest="agent_interrupts", action="store_false",
                   help="the character never cuts a visitor off (by default it does past its patience, or on its urgent words)")
    p.add_argument("--max-sessions", type=int, default=16, help="concurrent sessions (default 16)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                   help="a page origin (http://host:port) besides this server's own that may open the WebSocket; repeatable")
    p.add_argument("--api-docs", action="store_true", help="serve the API docs at /docs (off by default)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes sharing the port, one per core to use (default 1); --max-sessions counts per worker")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from anima.serve.app import WORKER_CONFIG_ENV, ServeConfig, config_to_env, create_app, warm_up
    from anima.serve.server import serve_forever

    config = ServeConfig(host=args.host, port=args.port, token=args.token, world=args.world, engine=args.engine, talker=args.talker, face=args.face, body=args.body,
                         asr=args.asr, asr_url=args.asr_url, asr_model=args.asr_model, max_sessions=args.max_sessions,
                         agent_interrupts=args.agent_interrupts,
                         allow_origins=tuple(args.allow_origin), api_docs=args.api_docs)
    if not 1 <= args.workers <= 64:
        print(f"error: --workers must be 1..64, got {args.workers}", file=sys.stderr)
        return 2
    try:
        config.check()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = f"http://{args.host}:{args.port}/" + (f"?token={args.token}" if args.token else "")
    if args.workers > 1:
        os.environ[WORKER_CONFIG_ENV] = config_to_env(config)
        print(f"anima: {args.workers} workers warming up ({config.thinker} thinker, {config.face} face, {config.body} body); "
              f"then open {url}", flush=True)
        serve_forever("anima.serve.app:worker_app", args.host, args.port, args.workers)
        return 0
    print(f"anima: warming up ({config.thinker} thinker, {config.face} face, {config.body} body) ...", flush=True)
    try:
        seconds = warm_up(config)
    except (FileNotFoundError, ValueError) as exc:  # weights a backend needs are missing or do not fit
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"anima: ready in {seconds:.1f} s; open {url}", flush=True)
    serve_forever(create_app(config), args.host, args.port)
    return 0
