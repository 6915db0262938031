"""Under which names a models module can write ``Index(...)``, ``Q(...)`` and ``F(...)``, and
the import to add when it has none, so that ``--write`` never leaves code that does not
import.

A module reaches them through Django's models module (``from django.db import models as m``
-> ``m.Index``) or by importing the classes (``from django.db.models import Index``). Only
the module's top level is read, in order: a later binding of a name wins, as it does when
Python runs the file.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from django_dbtune.errors import WriteError

MODELS = "django.db.models"
_CLASSES = {
    "Index": {"django.db.models.Index", "django.db.models.indexes.Index"},
    "Q": {"django.db.models.Q", "django.db.models.query_utils.Q"},
    "F": {"django.db.models.F", "django.db.models.expressions.F"},
}
_UNKNOWN = "?"


@dataclass(frozen=True)
class ModuleNames:
    """How the models module spells ``Index``, ``Q`` and ``F``, and the import line it
    lacks."""

    index: str
    q: str
    missing_import: str | None = None
    """The line to add (``from django.db import models``), or None when nothing is missing."""
    f: str = "F"


def module_names(source: str, path: str, *, needs_q: bool, needs_f: bool = False) -> ModuleNames:
    """The names ``source`` reaches ``Index`` (and ``Q``, ``F``, when needed) under; raises
    ``WriteError`` when adding an import could change what the module's own names mean."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise WriteError(f"{path} does not parse ({exc.msg}, line {exc.lineno})") from None
    bound, unknown_star = _bindings(tree)
    spelled = {
        name: _spelling(bound, name) if needed else name
        for name, needed in (("Index", True), ("Q", needs_q), ("F", needs_f))
    }
    if all(spelled.values()):
        return ModuleNames(spelled["Index"] or "", spelled["Q"] or "", f=spelled["F"] or "")
    if unknown_star is not None:
        raise WriteError(
            f"{path} takes names from '{unknown_star}', so which 'models' or 'Index' it "
            "sees cannot be told without running it; add 'from django.db import models' "
            "to it and run again"
        )
    if "models" not in bound:
        return ModuleNames(
            spelled["Index"] or "models.Index",
            spelled["Q"] or "models.Q",
            "from django.db import models",
            f=spelled["F"] or "models.F",
        )
    wanted = [name for name, spelling in spelled.items() if spelling is None]
    taken = [name for name in wanted if name in bound]
    if taken:
        raise WriteError(
            f"{path} uses the names 'models' and '{taken[0]}' for something other than "
            "Django's, so an index cannot be written that imports; import "
            "django.db.models under another name (from django.db import models as dj) "
            "and run again"
        )
    return ModuleNames(
        spelled["Index"] or "Index",
        spelled["Q"] or "Q",
        f"from django.db.models import {', '.join(wanted)}",
        f=spelled["F"] or "F",
    )


def with_import(source: str, line: str) -> str:
    """``source`` with the import ``line`` after its leading imports (else after the
    docstring, else first): before any class that uses it, even when the module imports
    more further down (``from . import signals`` at its end)."""
    tree = ast.parse(source)
    after = 0
    for number, node in enumerate(tree.body):
        is_docstring = (
            number == 0
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        if not (is_docstring or isinstance(node, ast.Import | ast.ImportFrom)):
            break
        after = node.end_lineno or node.lineno
    lines = source.splitlines(keepends=True)
    head = "".join(lines[:after])
    if head and not head.endswith("\n"):
        head += "\n"
    return head + line + "\n" + "".join(lines[after:])


def _spelling(bound: dict[str, str], name: str) -> str | None:
    """How the module writes Django's ``name`` class, or None when it cannot."""
    for local, target in bound.items():
        if target in _CLASSES[name]:
            return local
    for local, target in bound.items():
        if target == MODELS:
            return f"{local}.{name}"
    if bound.get("django") == "django":
        return f"django.db.models.{name}"
    return None


def _bindings(tree: ast.Module) -> tuple[dict[str, str], str | None]:
    """Each top-level name and what it is bound to last (a dotted import path, or ``?``);
    and the first module a ``*`` import takes unknown names from."""
    bound: dict[str, str] = {}
    unknown_star = None
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.partition(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            for alias in node.names:
                if alias.name == "*":
                    if node.level == 0 and module == MODELS:
                        bound.update({name: f"{MODELS}.{name}" for name in _CLASSES})
                    elif unknown_star is None:
                        unknown_star = "." * node.level + module
                    continue
                target = f"{module}.{alias.name}" if node.level == 0 else _UNKNOWN
                bound[alias.asname or alias.name] = target
        else:
            for name in _assigned(node):
                bound[name] = _UNKNOWN
    return bound, unknown_star


def _assigned(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
