"""Subcommands that hand their options to a module's own parser (``anima mot train ...``, ``anima talker eval ...``).

The module is imported only when its subcommand runs, so ``anima --help`` loads no torch. A module
exposes ``add_arguments(parser)`` + ``run(args)``, or ``main(argv)``; a FileNotFoundError or ValueError
it raises becomes ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys


def run_module(module_name: str, prog: str, rest: list[str]) -> int:
    """Run ``module_name`` on the command-line words ``rest``; its exit code (0 unless ``run`` returns an int)."""
    module = importlib.import_module(module_name)
    try:
        if hasattr(module, "add_arguments"):
            parser = argparse.ArgumentParser(prog=prog)
            module.add_arguments(parser)
            result = module.run(parser.parse_args(rest))
        else:
            result = module.main(rest)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def add_passthrough(sub: argparse._SubParsersAction, name: str, module_name: str, prog: str, help: str) -> None:
    """``prog`` (e.g. "anima mot train") as subcommand ``name``: every word after it, --help included,
    goes to the module's parser."""
    p = sub.add_parser(name, help=help, description=f"`{prog} --help` lists the options.", add_help=False, prefix_chars="+")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda a: run_module(module_name, prog, a.rest))
