"""The layering of docs/architecture.md holds: every alignlab import points down (or within a package).

    cli -> testbeds -> diagnostics -> train -> losses / models -> ops -> data / assets -> cache
    (errors: everyone)

cli is the package alignlab/cli/ (one module per command), the top layer, and the only place with argparse
parsers and user-facing prints: the library takes arguments and returns results.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alignlab"
RANK = {"cli": 6, "testbeds": 5, "online": 5, "diagnostics": 4, "train": 3, "losses": 2, "models": 2, "judges": 2,
        "ops": 1, "data": 0, "assets": 0, "cache": -1, "errors": -2}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "alignlab" and len(parts) > 1 else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
CLI = PACKAGE / "cli"
# Generator scripts run by hand (`python -m ...`) to rebuild shipped files; they print the paths they wrote.
PRINT_ALLOWED = {"assets/_make_corpus.py", "data/samples/_make_samples.py"}


def _layer_of(path: Path) -> str:
    # alignlab/<layer>.py or alignlab/<layer>/...: a package's modules share its layer and may import each other
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_cli_is_the_top_layer_package():
    assert (CLI / "__init__.py").is_file() and (CLI / "__main__.py").is_file()
    assert not (PACKAGE / "cli.py").exists(), "alignlab/cli.py beside alignlab/cli/ is dead code: the package is what imports"
    assert RANK["cli"] > max(rank for layer, rank in RANK.items() if layer != "cli")
    assert {_layer_of(p) for p in CLI.rglob("*.py")} == {"cli"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    own = _layer_of(path)
    if own == "__init__":
        return
    if own == "__main__":  # `python -m alignlab`: the command line, so cli's rank
        own = "cli"
    assert own in RANK, f"alignlab/{own} has no layer: add it to RANK and docs/architecture.md"
    for name in _imports(path):
        layer = _layer(name)
        if layer is None or layer == own:
            continue
        assert layer in RANK, f"{path.name} imports {name}: unknown layer"
        assert RANK[layer] < RANK[own], f"{path.relative_to(PACKAGE)} ({own}) imports {name} ({layer}): not downward"


def _argparse_and_prints(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "argparse" for a in node.names):
            found.append(f"line {node.lineno}: import argparse")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "argparse":
            found.append(f"line {node.lineno}: from argparse import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append(f"line {node.lineno}: print(...)")
    return found


LIBRARY = [p for p in MODULES if CLI not in p.parents and p != PACKAGE / "__main__.py"]


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_argparse_and_print_only_in_cli(path):
    found = _argparse_and_prints(path)
    if path.relative_to(PACKAGE).as_posix() in PRINT_ALLOWED:
        found = [f for f in found if not f.endswith("print(...)")]
    assert not found, f"alignlab/{path.relative_to(PACKAGE)}: {found}; parsers and prints belong in alignlab/cli/"


def test_the_scan_sees_cli_code():
    # guards the scan itself: the CLI does parse and print, so a scan that finds nothing there is broken
    assert _argparse_and_prints(CLI / "validate.py")
