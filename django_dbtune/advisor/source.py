"""Where a model's fields and indexes are written in its source file."""

from __future__ import annotations

import ast
import inspect
import textwrap
from functools import lru_cache

from django.db import models

from django_dbtune.call_sites import relative_path
from django_dbtune.findings import Evidence


@lru_cache(maxsize=1024)
def _class_source(model: type) -> tuple[str, int, list[str]] | None:
    try:
        filename = inspect.getsourcefile(model)
        lines, start = inspect.getsourcelines(model)
    except (OSError, TypeError):
        return None
    if filename is None:
        return None
    return filename, start, lines


@lru_cache(maxsize=1024)
def _class_tree(model: type) -> list[ast.AST]:
    source = _class_source(model)
    if source is None:
        return []
    try:
        return list(ast.walk(ast.parse(textwrap.dedent("".join(source[2])))))
    except SyntaxError:
        return []


def _evidence(model: type, want: str, match_index_name: bool) -> Evidence | None:
    source = _class_source(model)
    if source is None:
        return None
    filename, start, lines = source
    for node in _class_tree(model):
        if match_index_name and isinstance(node, ast.Call):
            for keyword in node.keywords:
                value = keyword.value
                if (
                    keyword.arg == "name"
                    and isinstance(value, ast.Constant)
                    and value.value == want
                ):
                    return _at(filename, start, lines, node.lineno)
        elif not match_index_name and isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == want for t in targets):
                return _at(filename, start, lines, node.lineno)
    return None


def _at(filename: str, start: int, lines: list[str], lineno: int) -> Evidence:
    return Evidence(relative_path(filename), start + lineno - 1, lines[lineno - 1].strip())


def field_evidence(model: type[models.Model], field_name: str) -> Evidence | None:
    """The line declaring a field, on the model's class or the abstract parent that has it."""
    for klass in model.__mro__:
        if (
            isinstance(klass, type)
            and issubclass(klass, models.Model)
            and klass is not models.Model
            and _declares(klass, field_name)
            and (found := _evidence(klass, field_name, match_index_name=False))
        ):
            return found
    return None


def _declares(klass: type[models.Model], field_name: str) -> bool:
    return any(f.name == field_name for f in klass._meta.local_fields)


def index_evidence(model: type[models.Model], index_name: str) -> Evidence | None:
    """The line of the ``models.Index(..., name=...)`` with this name, if any."""
    return _evidence(model, index_name, match_index_name=True)


def attribute_evidence(klass: type, name: str) -> Evidence | None:
    """The line assigning an attribute in a class, its Meta included (``ordering = [...]``,
    a ModelAdmin's ``list_filter = [...]``), or in the nearest parent that assigns it: a
    project's base admin or abstract model. Django's own defaults are no line of anybody's."""
    for parent in klass.__mro__:
        if _djangos(parent):
            continue
        if found := _evidence(parent, name, match_index_name=False):
            return found
    return None


def class_evidence(klass: type) -> Evidence | None:
    """The ``class ...:`` line itself, unless the class is Django's own."""
    source = None if _djangos(klass) else _class_source(klass)
    if source is None:
        return None
    filename, start, lines = source
    for offset, text in enumerate(lines):
        if text.lstrip().startswith("class "):  # decorators come first
            return Evidence(relative_path(filename), start + offset, text.strip())
    return None


def _djangos(klass: type) -> bool:
    return klass is object or klass.__module__.split(".", 1)[0] == "django"
