"""Where an import the codemod adds goes: where isort and ruff put it, so that a written
fix passes the project's linter."""

from __future__ import annotations

import libcst as cst


def where_isort_puts(before: cst.Module, after: cst.Module) -> cst.Module:
    """The import just added, moved where isort and ruff put it: among the module's other
    ``django`` imports in order of their names, else after the last absolute import (libcst
    adds it after every import, ``from .models import ...`` included). A written fix must not
    fail the project's linter."""
    old = [statement.with_changes(leading_lines=()) for statement in before.body]
    body = list(after.body)
    added = [
        n
        for n, s in enumerate(body)
        if _import_level(s) == 0
        and not any(s.with_changes(leading_lines=()).deep_equals(o) for o in old)
    ]
    if len(added) != 1:
        return after
    statement = body.pop(added[0])
    name = _module_name(statement)
    imports = [n for n in range(added[0]) if _import_level(body[n]) is not None]
    absolute = [n for n in imports if _import_level(body[n]) == 0]
    family = [n for n in absolute if _module_name(body[n]).split(".")[0] == name.split(".")[0]]
    later = [n for n in family if _module_name(body[n]) > name]
    if later:  # before the first of its family that sorts after it, in its place
        place = later[0]
        statement = statement.with_changes(leading_lines=body[place].leading_lines)
        body[place] = body[place].with_changes(leading_lines=())
    elif family or absolute:
        place = (family or absolute)[-1] + 1
        statement = statement.with_changes(leading_lines=())
    else:
        place = imports[0] if imports else added[0]
    body.insert(place, statement)
    return after.with_changes(body=body)


def _module_name(statement: cst.CSTNode) -> str:
    """The dotted module an absolute import statement names (``django.db.models``)."""
    node = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) else None
    if isinstance(node, cst.ImportFrom) and node.module is not None:
        return cst.Module([]).code_for_node(node.module)
    if isinstance(node, cst.Import):
        return cst.Module([]).code_for_node(node.names[0].name)
    return ""


def _import_level(statement: cst.CSTNode) -> int | None:
    """How many dots an import statement's module has (0: absolute); None for anything
    else."""
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return None
    node = statement.body[0]
    if isinstance(node, cst.Import):
        return 0
    if isinstance(node, cst.ImportFrom):
        return len(node.relative)
    return None
