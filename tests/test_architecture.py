"""The package's layout rules (docs/architecture.rst), kept true by reading its imports.

A capability (advisor/, nplusone/, cache/) imports the shared floor, never another
capability: only the edges (commands, middleware, toolbar, checks, the pytest plugin)
combine them. No module imports another module's private name. No module grows past what
one sitting can read.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "django_dbtune"
CAPABILITIES = ("advisor", "nplusone", "cache")
MAX_LINES = 460


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imports(path):
    """(module imported, names taken from it) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def capability_of(module):
    parts = module.split(".")
    if len(parts) > 1 and parts[0] == "django_dbtune" and parts[1] in CAPABILITIES:
        return parts[1]
    return None


@pytest.mark.parametrize(("name", "path"), list(modules()), ids=lambda value: str(value))
def test_a_capability_imports_only_the_shared_floor(name, path):
    own = capability_of(name)
    if own is None:
        return
    for module, names in imports(path):
        targets = [module, *(f"{module}.{n}" for n in names)]
        others = {capability_of(t) for t in targets} - {None, own}
        assert not others, f"{name} imports {module} ({', '.join(names)}): {others}"


@pytest.mark.parametrize(("name", "path"), list(modules()), ids=lambda value: str(value))
def test_no_private_name_is_imported_from_another_module(name, path):
    for module, names in imports(path):
        if not module.startswith("django_dbtune"):
            continue
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{name} imports {', '.join(private)} from {module}"


@pytest.mark.parametrize(("name", "path"), list(modules()), ids=lambda value: str(value))
def test_a_module_stays_readable_in_one_sitting(name, path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by its concerns"
