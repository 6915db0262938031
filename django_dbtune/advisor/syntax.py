"""Small readers of syntax nodes the code scan shares: a class's own assignments, the
strings of a literal list, the keywords inside ``Q(...)`` objects and the lookups keywords
name, calls that fetch one row, a sort's other direction, what ``latest()`` sorts by, and
the value of a constant."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from typing import Any

QUERYSET_METHODS = frozenset(
    {
        *("filter", "exclude", "get", "order_by", "all", "first", "last", "count", "exists"),
        *("select_related", "prefetch_related", "only", "defer", "values", "values_list"),
        *("distinct", "annotate", "aggregate", "using", "earliest", "latest", "alias"),
        *("get_or_create", "update_or_create", "in_bulk", "iterator", "update", "delete"),
    }
)
"""The methods of Django's ``QuerySet`` (and its managers) a chain goes on through."""


def class_assignment(node: ast.ClassDef, name: str) -> ast.Assign | None:
    for statement in node.body:
        if isinstance(statement, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in statement.targets
        ):
            return statement
    return None


def string_items(node: ast.expr) -> list[str]:
    """The strings of a list or tuple literal (a dict's keys, as django-filter allows)."""
    if isinstance(node, ast.List | ast.Tuple):
        items = node.elts
    elif isinstance(node, ast.Dict):
        items = [key for key in node.keys if key is not None]
    else:
        return []
    return [
        item.value
        for item in items
        if isinstance(item, ast.Constant) and isinstance(item.value, str)
    ]


def q_keywords(node: ast.expr) -> Iterator[ast.keyword]:
    """The keyword lookups inside ``Q(...)`` objects combined with ``|``, ``&`` and ``~``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Q":
        yield from node.keywords
    elif isinstance(node, ast.BinOp):
        yield from q_keywords(node.left)
        yield from q_keywords(node.right)
    elif isinstance(node, ast.UnaryOp):
        yield from q_keywords(node.operand)


def keyword_lookups(
    keywords: list[ast.keyword], key_of: Callable[[ast.expr], str | None]
) -> Iterator[tuple[str, ast.expr]]:
    """(lookup, value) of each keyword argument: ``built__gte=day``, and each entry of a
    dict literal unpacked into them (``**{"built__gte": day}``) whose key ``key_of`` tells."""
    for keyword in keywords:
        if keyword.arg is not None:
            yield keyword.arg, keyword.value
        elif isinstance(keyword.value, ast.Dict):
            for key, value in zip(keyword.value.keys, keyword.value.values, strict=True):
                lookup = key_of(key) if key is not None else None  # None: **other inside
                if lookup:
                    yield lookup, value


def flip(name: str) -> str:
    """The other direction: latest() sorts get_latest_by descending."""
    return name[1:] if name.startswith("-") else f"-{name}"


def fetches_one(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in {"get", "get_or_create", "update_or_create", "get_object_or_404"}


def latest_sort(node: ast.Call, model: Any, descending: bool) -> list[str]:
    """What ``latest()``/``earliest()`` sorts by: their arguments, else the model's
    ``Meta.get_latest_by`` (a related path is left out)."""
    names: list[str] = [
        arg.value
        for arg in node.args
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
    ]
    if not node.args:
        latest_by = model._meta.get_latest_by
        names = [latest_by] if isinstance(latest_by, str) else list(latest_by or [])
    return [flip(name) if descending else name for name in names if "__" not in name]


def constant_value(node: ast.expr, models: dict[str, Any]) -> Any:
    """The value of a literal, or of ``Model.Choices.MEMBER`` for a model the file names in
    ``models``; Ellipsis otherwise."""
    if isinstance(node, ast.Constant):
        return node.value
    path = []
    while isinstance(node, ast.Attribute):
        path.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in models and path:
        value: Any = models[node.id]
        for attribute in reversed(path):
            value = getattr(value, attribute, ...)
        return getattr(value, "value", value)
    return ...
