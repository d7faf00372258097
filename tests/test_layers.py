"""The layering of docs/architecture.md holds: every alignlab import points down (or within a package).

    cli -> testbeds -> diagnostics -> train -> losses / models -> ops -> data / assets     (errors: everyone)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alignlab"
RANK = {"cli": 6, "testbeds": 5, "diagnostics": 4, "train": 3, "losses": 2, "models": 2, "ops": 1, "data": 0,
        "assets": 0, "errors": -1}


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


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own == "__init__":
        return
    assert own in RANK, f"alignlab/{own} has no layer: add it to RANK and docs/architecture.md"
    for name in _imports(path):
        layer = _layer(name)
        if layer is None or layer == own:
            continue
        assert layer in RANK, f"{path.name} imports {name}: unknown layer"
        assert RANK[layer] < RANK[own], f"{path.relative_to(PACKAGE)} ({own}) imports {name} ({layer}): not downward"
