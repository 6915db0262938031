"""A skipped test says what it needs and how to run it, so that ``pytest -rs`` tells a
contributor which command runs the rest of the suite."""

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# "needs PostgreSQL: run with DBTUNE_DB=postgres", "needs django-debug-toolbar: install ..."
SAYS_HOW = re.compile(r"^needs [^:]+: .*\b(run|install)", re.DOTALL)


def _name(node):
    """``pytest.mark.skipif`` for the call's function, as written."""
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _reason(call):
    """The call's reason (a node), or None; ``pytest.skip`` also takes it first."""
    for keyword in call.keywords:
        if keyword.arg in ("reason", "msg"):
            return keyword.value
    if _name(call.func) == "pytest.skip" and call.args:
        return call.args[0]
    return None


def _problems():
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            name = _name(call.func)
            if name not in {
                "pytest.skip",
                "pytest.importorskip",
                "pytest.mark.skip",
                "pytest.mark.skipif",
            }:
                continue
            where = f"{path.relative_to(TESTS)}:{call.lineno} {name}"
            reason = _reason(call)
            if reason is None:
                yield f"{where} gives no reason"
            elif isinstance(reason, ast.Constant) and not SAYS_HOW.match(str(reason.value)):
                yield f"{where}: {reason.value!r} does not say 'needs X: run/install ...'"


def test_every_skip_says_what_it_needs_and_how_to_run_it():
    assert list(_problems()) == []
