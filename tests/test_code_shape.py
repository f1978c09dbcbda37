"""The shape of the product code: no function over 100 lines, no module over 600.

Ruff has no rule for either.  A function may be longer where the line just before its
``def`` (or its first decorator) is a comment containing ``long:`` that says why; a module
where one of its first lines is such a comment.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("earwitness", "edge", "fusion", "simulator")
MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 600
MODULE_WAIVER_LINES = 30  # a module's `long:` comment is among its first lines


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _waived(lines: list[str], lineno: int) -> bool:
    """Whether the line above 1-based line ``lineno`` is a comment saying why it is long."""
    above = lines[lineno - 2].strip() if lineno >= 2 else ""
    return above.startswith("#") and "long:" in above


def long_functions(path: Path) -> list[str]:
    """``path:line name (N lines)`` of each function in ``path`` over the limit, unwaived."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        length = node.end_lineno - first + 1
        if length > MAX_FUNCTION_LINES and not _waived(lines, first):
            found.append(f"{_shown(path)}:{node.lineno} {node.name} ({length} lines)")
    return found


def long_module(path: Path) -> str | None:
    lines = path.read_text().splitlines()
    if len(lines) <= MAX_MODULE_LINES:
        return None
    if any(line.strip().startswith("#") and "long:" in line for line in lines[:MODULE_WAIVER_LINES]):
        return None
    return f"{_shown(path)} ({len(lines)} lines)"


def test_the_checks_see_what_they_should(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    short = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 2))
    (tmp_path / "m.py").write_text(
        f"def long_one():\n{body}\n\n"
        f"# long: a table written out, clearer whole\ndef waived():\n{body}\n\n"
        f"@staticmethod\ndef decorated():\n{short}\n")
    offenders = long_functions(tmp_path / "m.py")
    assert [o.split(" ")[1] for o in offenders] == ["long_one"]
    (tmp_path / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert long_module(tmp_path / "big.py") is not None
    (tmp_path / "big_ok.py").write_text("# long: generated table\n" + "x = 1\n" * MAX_MODULE_LINES)
    assert long_module(tmp_path / "big_ok.py") is None


def test_no_function_over_the_limit():
    offenders = [o for path in _modules() for o in long_functions(path)]
    assert not offenders, (f"functions over {MAX_FUNCTION_LINES} lines (split them, or say why above the def "
                           f"in a '# long: ...' comment):\n  " + "\n  ".join(offenders))


def test_no_module_over_the_limit():
    offenders = [o for o in map(long_module, _modules()) if o]
    assert not offenders, (f"modules over {MAX_MODULE_LINES} lines (move a coherent part out, or say why "
                           f"in a '# long: ...' comment near the top):\n  " + "\n  ".join(offenders))
