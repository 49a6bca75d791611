"""Thinker commands for the ``anima`` CLI: ``anima world build|info``, ``anima memory list|forget``,
``anima eval thinker`` and ``anima ask``.

    anima world build NOVEL_DIR -o world.db [--embedder minilm|hash] [--force] [--llm-url URL --llm-model M]
    anima world info world.db
    anima memory list [--world PATH] [--json]         # who is remembered: sessions, turns, facts, last seen
    anima memory forget VISITOR [--world PATH]        # delete everything of one visitor (or local user)
    anima eval thinker --suite DIR [--world world.db] [--no-gate] [--report out.json]
                       [--llm-url URL --llm-model M] [--judge-url URL --judge-model M]
    anima eval iis | characterbox ...                   # anima/iis/cli.py: the Interactive Intelligence Score, CB judge
    anima ask --character C --story-time T "QUESTION" [--json]     # one reply: speech, emotion, gesture
    anima ask --batch IN.jsonl -o OUT.jsonl [--world W] [--llm-url URL --llm-model M]

``register(subparsers)`` adds them; each parser's ``func(args)`` returns the exit code (2 = bad input,
with a one-line message naming it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _llm_config(url: str | None, model: str | None, timeout_s: float):
    if not url:
        return None
    from anima.thinker.llm import LLMConfig

    return LLMConfig(base_url=url, model=model or "default", api_key=os.environ.get("ANIMA_LLM_API_KEY") or None,
                     timeout_s=timeout_s)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _world_build(args: argparse.Namespace) -> int:
    from anima.embed import EmbedderError
    from anima.thinker.data.build import build_world
    from anima.thinker.data.extract import NovelError

    llm_extractor = None
    config = _llm_config(args.llm_url, args.llm_model, args.llm_timeout_s)
    if config is not None:
        from anima.thinker.data.extract_llm import LLMExtractor

        llm_extractor = LLMExtractor(config)
    try:
        result = build_world(args.novel_dir, args.output, embedder=args.embedder, force=args.force,
                             llm_extractor=llm_extractor, llm_name=config.model if config else None,
                             progress=not args.quiet)
    except (NovelError, EmbedderError, ValueError, OSError) as exc:
        return _error(str(exc))
    if result.skipped:
        print(f"{result.path} is up to date (build {result.build_id}); use --force to rebuild")
    else:
        c = result.counts
        print(f"wrote {result.path}: {c['entities']} entities, {c['facts']} facts, {c['lines']} lines, "
              f"{result.bytes / 1e6:.1f} MB in {result.seconds:.1f} s (build {result.build_id})")
    return 0


def _world_info(args: argparse.Namespace) -> int:
    from anima.thinker.world import World, WorldError, world_info

    try:
        with World.open(args.world, readonly=True) as world:
            print(json.dumps(world_info(world), indent=2))
    except WorldError as exc:
        return _error(str(exc))
    return 0


def _memory_world(path: Path | None):
    """The world file sessions write to for ``--world`` (as ``StoryThinker.create`` resolves it)."""
    from anima.thinker.world import World

    return World.open_memory(path)


def _memory_list(args: argparse.Namespace) -> int:
    from anima.thinker.memory import list_users
    from anima.thinker.world import WorldError

    try:
        with _memory_world(args.world) as world:
            users, where = list_users(world), world.path
    except WorldError as exc:
        return _error(str(exc))
    if args.json:
        print(json.dumps({"world": str(where), "users": users}, indent=2))
        return 0
    print(f"{where}: {len(users)} remembered")
    if users:
        width = max(len("visitor"), *(len(u["user"]) for u in users))
        print(f"{'visitor':<{width}}  sessions  turns  facts  last seen")
        for u in users:
            print(f"{u['user']:<{width}}  {u['sessions']:>8}  {u['turns']:>5}  {u['facts']:>5}  {u['last_seen'] or '-'}")
    return 0


def _memory_forget(args: argparse.Namespace) -> int:
    from anima.thinker.memory import check_user_id, forget
    from anima.thinker.world import WorldError

    try:
        check_user_id(args.visitor)
        with _memory_world(args.world) as world:
            gone, where = forget(world, args.visitor), world.path
    except (WorldError, ValueError) as exc:
        return _error(str(exc))
    if not gone.users:
        print(f"{where}: nothing remembered of {args.visitor}")
    else:
        print(f"{where}: forgot {args.visitor}: {gone.sessions} sessions, {gone.turns} turns, {gone.facts} facts, "
              f"{gone.ratings} ratings")
    return 0


def _eval_thinker(args: argparse.Namespace) -> int:
    from anima.thinker.training.evaluate import SUITE_DIR, Judge, SuiteError, format_report, load_suites, run_suites
    from anima.thinker.world import World, WorldError

    try:
        suites = load_suites(args.suite or SUITE_DIR)
        if args.only:
            suites = {k: v for k, v in suites.items() if k in args.only}
        world = World.open(args.world, readonly=True) if args.world else World.open_default(readonly=True)
    except (SuiteError, WorldError) as exc:
        return _error(str(exc))
    llm = _llm_config(args.llm_url, args.llm_model, args.llm_timeout_s)
    judge_config = _llm_config(args.judge_url, args.judge_model, args.llm_timeout_s)
    judge = Judge(judge_config) if judge_config else None
    if args.condition is None:
        runs = {"": (not args.no_gate, args.responder)}
    else:
        from anima.thinker.training.evaluate import CONDITIONS, default_responder

        responder = args.responder or default_responder()
        names = list(CONDITIONS) if args.condition == "all" else [args.condition]
        if any(CONDITIONS[n][1] for n in names) and responder is None:
            return _error("the self-trained conditions need a generator: --responder FOLDER (a Hugging Face causal "
                          "LM; train one with python -m anima.thinker.training.train_responder, then .grpo)")
        runs = {n: (CONDITIONS[n][0], responder if CONDITIONS[n][1] else None) for n in names}
    for _, responder in runs.values():
        if responder is not None and not (Path(responder) / "config.json").is_file():
            return _error(f"{responder}: not a language model folder (no config.json)")
    reports = {}
    for name, (gate, responder) in runs.items():
        report = run_suites(suites, world, gate=gate, llm=llm, judge=judge, progress=not args.quiet, responder=responder)
        report["condition"] = name or None
        reports[name] = report
        if name:
            print(f"condition {name}:")
        print(format_report(report))
    if len(reports) > 1:
        from anima.thinker.training.evaluate import format_conditions

        print(format_conditions(reports))
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        out = reports[""] if "" in reports else (next(iter(reports.values())) if len(reports) == 1 else reports)
        args.report.write_text(json.dumps(out, indent=2, ensure_ascii=False))
        print(f"report: {args.report}")
    return 0


def _ask(args: argparse.Namespace) -> int:
    from anima.thinker.ask import Asker, AskError, Question, answer_batch, answer_record, read_questions, write_jsonl
    from anima.thinker.persona import PersonaError, load_persona
    from anima.thinker.story import check_story_time
    from anima.thinker.world import World, WorldError

    if (args.question is None) == (args.batch is None):
        return _error("give one QUESTION, or --batch IN.jsonl -o OUT.jsonl")
    if args.batch is not None and args.output is None:
        return _error("--batch needs -o OUT.jsonl")
    if args.batch is None and args.output is not None:
        return _error("-o is for --batch; a single question prints its reply")
    try:
        world = World.open(args.world, readonly=True) if args.world else World.open_default(readonly=True)
    except WorldError as exc:
        return _error(str(exc))
    try:
        if args.batch is not None:
            questions = read_questions(args.batch, world.chapters)
        else:
            persona = load_persona(args.character)
            story_time = persona.default_story_time if args.story_time is None else args.story_time
            check_story_time(story_time, world.chapters)
            if not args.question.strip():
                raise AskError("the question is empty")
            questions = [Question("1", args.character, story_time, args.question)]
    except (AskError, PersonaError, ValueError) as exc:
        return _error(str(exc))
    asker = Asker(world, llm=_llm_config(args.llm_url, args.llm_model, args.llm_timeout_s), gate=not args.no_gate)
    if args.batch is not None:
        records = answer_batch(questions, asker)
        try:
            write_jsonl(args.output, records)
        except OSError as exc:
            return _error(f"{args.output}: cannot write ({exc})")
        print(f"answered {len(records)} questions: {args.output}")
        return 0
    q = questions[0]
    record = answer_record(q, asker.ask(q.character, q.story_time, q.question))
    if args.json:
        record.pop("id")
        print(json.dumps({"question": q.question, **record}, ensure_ascii=False, indent=2))
    else:
        print(record["answer"])
        print(f"[emotion: {record['emotion']}, gesture: {record['gesture']}, gaze: {record['gaze']}]")
    return 0


def _add_llm_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--llm-url", default=None, help=f"OpenAI-compatible server for {what} (e.g. http://localhost:8080/v1)")
    p.add_argument("--llm-model", default=None, help="model name on that server")
    p.add_argument("--llm-timeout-s", type=float, default=30.0, help="per-request timeout (default 30 s)")


def register(subparsers) -> None:
    """Add ``world`` (build, info), ``memory`` (list, forget), ``eval`` (thinker) and ``ask`` to the anima CLI."""
    world = subparsers.add_parser("world", help="build or inspect a story world database",
                                  description="Story worlds: a novel's knowledge graph with story times (SQLite).")
    world_sub = world.add_subparsers(dest="world_command", required=True)
    build = world_sub.add_parser("build", help="build a world database from a novel directory",
                                 description="Read a novel (one .txt per chapter, in reading order), extract entities, "
                                             "facts and quoted lines with their story times, embed them, and write the "
                                             "world database atomically.")
    build.add_argument("novel_dir", type=Path, help="directory of chapter .txt files")
    build.add_argument("-o", "--output", type=Path, required=True, help="world database to write (e.g. world.db)")
    build.add_argument("--embedder", default="minilm", help="minilm (default, offline MiniLM) or hash (no model, tests)")
    build.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_llm_options(build, "LLM extraction (optional)")
    build.set_defaults(func=_world_build)
    info = world_sub.add_parser("info", help="print a world's counts and metadata as JSON")
    info.add_argument("world", type=Path, help="world database")
    info.set_defaults(func=_world_info)

    memory = subparsers.add_parser("memory", help="list or forget what sessions remember of visitors",
                                   description="Session memory: what the story thinker remembers of each visitor "
                                               "(sessions, turns, what they said about themselves).")
    memory_sub = memory.add_subparsers(dest="memory_command", required=True)
    where = "world sessions write to (default: the user copy of the shipped world; a shipped path means its copy)"
    listing = memory_sub.add_parser("list", help="visitors remembered: sessions, turns, facts, last seen")
    listing.add_argument("--world", type=Path, default=None, help=where)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_memory_list)
    forget = memory_sub.add_parser("forget", help="delete everything remembered of one visitor",
                                   description="Delete a visitor's sessions, turns, facts and user node in one "
                                               "transaction.")
    forget.add_argument("visitor", help="visitor id (or a local user name, e.g. default)")
    forget.add_argument("--world", type=Path, default=None, help=where)
    forget.set_defaults(func=_memory_forget)

    evaluate = subparsers.add_parser("eval", help="evaluate a module against its suites",
                                     description="Evaluation suites of the modules.")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True)
    thinker = eval_sub.add_parser("thinker", help="timeline coherence, controls and robustness of the story thinker",
                                  description="Run the thinker suites (keyword scoring; optional LLM judge).")
    thinker.add_argument("--suite", type=Path, default=None, help="suite directory (default: the shipped suites)")
    thinker.add_argument("--world", type=Path, default=None, help="world database (default: the shipped world)")
    thinker.add_argument("--no-gate", action="store_true", help="switch the narrative-present gate off (ablation)")
    thinker.add_argument("--condition", choices=("baseline", "self-train", "diegetic", "full", "all"), default=None,
                         help="the paper's conditions (7.6): baseline = flat retrieval, rule responder; self-train = "
                              "flat retrieval, the generator; diegetic = gated memory, rule responder; full = both; "
                              "all = the four, one table")
    thinker.add_argument("--responder", type=Path, default=None,
                         help="a language model folder that writes the offline answers (the self-trained generator)")
    thinker.add_argument("--only", nargs="+", default=None, help="run only these suites (timeline controls robustness)")
    thinker.add_argument("--report", type=Path, default=None, help="write the full report (every item) as JSON")
    thinker.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_llm_options(thinker, "the thinker's answers (default: the offline responder)")
    thinker.add_argument("--judge-url", default=None, help="OpenAI-compatible server for an LLM judge (optional)")
    thinker.add_argument("--judge-model", default=None, help="judge model name")
    thinker.set_defaults(func=_eval_thinker)
    from anima.iis.cli import add_eval_commands  # `anima eval iis` and `anima eval characterbox` (docs/iis.md)

    add_eval_commands(eval_sub)

    ask = subparsers.add_parser("ask", help="ask a character of the story a question (or a JSONL file of them)",
                                description="Ask a character at a story time: prints the reply (speech, emotion, "
                                            "gesture, gaze). With --batch, answers one JSON object a line "
                                            '({"id", "character", "story_time", "question"}) into -o OUT.jsonl. Every '
                                            "answer starts a fresh conversation and nothing is remembered.")
    ask.add_argument("question", nargs="?", default=None, help="the question (or use --batch)")
    ask.add_argument("--character", default="nemo", help="nemo (default), aronnax, conseil or ned")
    ask.add_argument("--story-time", type=int, default=None,
                     help="the character's present chapter, 1..47 (default: the persona's)")
    ask.add_argument("--batch", type=Path, default=None, help="JSONL file of questions")
    ask.add_argument("-o", "--output", type=Path, default=None, help="JSONL file of answers (with --batch)")
    ask.add_argument("--json", action="store_true", help="print the single reply as JSON")
    ask.add_argument("--world", type=Path, default=None, help="world database (default: the shipped world)")
    ask.add_argument("--no-gate", action="store_true", help="switch the narrative-present gate off (ablation)")
    _add_llm_options(ask, "the answers (default: the offline responder)")
    ask.set_defaults(func=_ask)
