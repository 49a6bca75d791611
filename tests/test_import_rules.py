"""The package's import rules (docs/architecture.md), checked on the source itself.

- ``anima.core`` imports no module package (it is the runtime every module builds on);
- runtime code imports no training code (only ``training/`` packages, ``anima.train``, CLIs and the
  training-side preview tools may);
- ``anima --help`` does not import torch;
- no import cycles anywhere in ``anima`` (lazy imports inside functions count: a cycle through a
  function is still two modules that cannot be understood apart).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[1] / "anima"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """Every ``anima`` module this file imports, anywhere in it, except under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("anima"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("anima"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from anima.face import params`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        # keep only names that are modules (drop imported functions/classes), never the module itself
        edges[name] = {m for m in _imports(path) if m in modules and m != name}
    return edges


def _is_training(module: str) -> bool:
    parts = module.split(".")
    return "training" in parts or (parts[:2] == ["anima", "train"] and module != "anima.checkpoint")


# Tools that run training-side code on purpose (they are not loaded by render, demo or serve).
_TRAINING_SIDE = ("anima.render.face_dialogue", "anima.render.body_preview")


def _may_import_training(module: str) -> bool:
    return _is_training(module) or module.endswith(".cli") or module == "anima.cli" or module in _TRAINING_SIDE


def test_core_imports_no_module_package(graph: dict[str, set[str]]) -> None:
    offenders = {m: sorted(d for d in deps if not d.startswith("anima.core"))
                 for m, deps in graph.items() if m.startswith("anima.core")}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_runtime_code_imports_no_training_code(graph: dict[str, set[str]]) -> None:
    offenders = {m: sorted(d for d in deps if _is_training(d))
                 for m, deps in graph.items() if not _may_import_training(m)}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    # A parent package and its children import each other by construction (``__init__`` re-exports);
    # only edges between modules that are not ancestors of each other can form a real cycle.
    def related(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    edges = {m: {d for d in deps if not related(m, d)} for m, deps in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == []


def test_help_does_not_import_torch() -> None:
    code = ("import sys, anima.cli\n"
            "try:\n    anima.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "for sub in ('render', 'serve', 'body', 'face', 'world', 'memory'):\n"
            "    try:\n        anima.cli.main([sub, '--help'])\n    except SystemExit:\n        pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "NO-TORCH"


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    """The checker itself: a planted training import and a planted cycle are both seen."""
    (tmp_path / "a.py").write_text("def f():\n    from anima.body.training.train import main\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import anima.face.training.train\n")
    assert "anima.body.training.train" in _imports(tmp_path / "a.py")
    assert _imports(tmp_path / "b.py") == set()
    assert _is_training("anima.body.training.train") and _is_training("anima.train.loop")
    assert not _is_training("anima.checkpoint") and not _is_training("anima.body.model.vae")
