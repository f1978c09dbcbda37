"""The import contracts of README's Layout ([tool.importlinter] in pyproject.toml) hold and bite.

Each contract is checked on a copy of the product packages with one forbidden import added:
lint-imports must name that contract broken there (and kept on the unchanged copy).  The
real tree must keep every contract.  lint-imports comes with the `test` extra.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COPIED = ("earwitness", "edge", "fusion", "simulator", "bench")


def _lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert found is not None, "lint-imports is not installed: pip install -e '.[test]'"
    return found


def _run(cwd: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = [_lint_imports(), "--no-cache", *(a for c in contracts for a in ("--contract", c))]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def tree(tmp_path):
    """A copy of the product packages and of pyproject.toml, sources only."""
    for package in COPIED:
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.o", "scenarios"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


# (contract id, its name as lint-imports prints it, module to edit, the import to add)
BREACHES = [
    ("edge-fusion", "edge and fusion never import each other", "fusion/server/alerts.py", "import edge.keys"),
    ("edge-fusion", "edge and fusion never import each other", "edge/keys.py", "from fusion.locator import sensors"),
    ("fusion-layers", "fusion layers: commands > transport > server > tracking > locator",
     "fusion/locator/sensors.py", "import fusion.server.registry"),
    ("fusion-layers", "fusion layers: commands > transport > server > tracking > locator",
     "fusion/server/alerts.py", "from fusion import report"),
    ("core", "the core earwitness imports none of the programs", "earwitness/units.py", "import edge.keys"),
    ("product", "no product package imports the simulator, the benchmarks or the tests",
     "fusion/server/store.py", "import simulator.arrays"),
    ("product", "no product package imports the simulator, the benchmarks or the tests",
     "edge/keys.py", "import tests.broker"),
]


@pytest.mark.parametrize("contract, name, module, statement", BREACHES,
                         ids=[f"{c}:{m}" for c, _, m, _ in BREACHES])
def test_a_forbidden_import_breaks_its_contract(tree, contract, name, module, statement):
    dotted = module.removesuffix(".py").replace("/", ".")
    before = _run(tree, contract)
    # Kept, or broken by something already there (while a known violation is being removed),
    # but not by the module about to be edited.
    assert f"{name} KEPT" in before.stdout or f"- {dotted} ->" not in before.stdout, before.stdout + before.stderr

    path = tree / module
    lines = path.read_text().splitlines(keepends=True)
    # Before the first import (after the docstring and any `from __future__`).
    at = next(i for i, line in enumerate(lines) if line.startswith(("import ", "from ")) and "__future__" not in line)
    path.write_text("".join(lines[:at]) + statement + "\n" + "".join(lines[at:]))

    after = _run(tree, contract)
    assert after.returncode != 0
    assert f"{name} BROKEN" in after.stdout, after.stdout + after.stderr
    assert dotted in after.stdout.split("Broken contracts", 1)[1]


def test_the_tree_keeps_every_contract():
    result = _run(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
