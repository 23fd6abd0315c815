"""The layering: ``policies`` and ``federation`` import nothing of ours; ``sandbox`` composes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"sandbox", "policies", "federation", "benchmarks"}


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["policies", "federation"])
def test_a_lower_package_imports_nothing_of_ours(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    wrong = {str(f.relative_to(ROOT)): sorted((_imported(f) & OURS) - {package}) for f in files}
    assert not {f: w for f, w in wrong.items() if w}
