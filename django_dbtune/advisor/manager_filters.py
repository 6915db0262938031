"""What a model's own managers and querysets filter before the caller adds to it.

A manager's ``get_queryset``: Oscar's ``Basket.open`` returns
``super().get_queryset().filter(status="Open")``, a soft-delete manager
``filter(deleted_at=None)``. Read from the query the manager builds (building a queryset
runs no query), so a value held on the manager (``status=self.status_filter``) is known.

A custom method (``Product.objects.active()``) may take arguments or run queries, so it is
never called: its body is read, for the filters it adds to its own chain.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from typing import Any

from django.db import models
from django.db.models.expressions import Col
from django.db.models.lookups import Lookup
from django.db.models.sql.where import AND, WhereNode

from django_dbtune.advisor.model_names import chain_classes

Filter = tuple[str, str, Any]
"""(field name on the manager's model, lookup name, value or ``Ellipsis``)."""


@functools.cache
def manager_filters(model: type[models.Model], name: str) -> tuple[Filter, ...]:
    """The filters the manager ``name`` of ``model`` adds in its ``get_queryset``: the
    plain, AND-ed comparisons of the model's own columns to constants; nothing for a
    Django manager, or one that cannot build its queryset alone."""
    manager = next((m for m in model._meta.managers if m.name == name), None)
    if manager is None or type(manager).get_queryset is models.Manager.get_queryset:
        return ()
    try:
        where = manager.get_queryset().query.where
    except Exception:  # a library's manager may need more than its model to build one
        return ()
    return tuple(_filters(where, model))


def _filters(node: WhereNode, model: type[models.Model]) -> list[Filter]:
    if node.negated or (node.connector != AND and len(node.children) > 1):
        return []  # an OR or a NOT: no index column of its own
    found: list[Filter] = []
    for child in node.children:
        if isinstance(child, WhereNode):
            found.extend(_filters(child, model))
        elif isinstance(child, Lookup) and isinstance(child.lhs, Col):
            target = child.lhs.target
            if target.model._meta.concrete_model is model._meta.concrete_model:
                value = child.rhs if _is_constant(child.rhs) else ...
                found.append((target.name, str(child.lookup_name), value))
    return found


def _is_constant(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


BodyLookup = tuple[str, ast.expr, bool]
"""(lookup key, its value as written, excluded): one keyword of a method body's filter."""


@functools.cache
def method_lookups(model: type[models.Model], method: str) -> tuple[BodyLookup, ...]:
    """The keyword filters the project's own ``method`` of ``model``'s managers or
    querysets adds to its own chain (``self.filter(...)``, ``self.get_queryset().filter``,
    ``super().get_queryset().exclude``); nothing when its source cannot be read. Filters on
    other querysets the body builds (``Other.objects.filter``) are not its chain's."""
    for owner in chain_classes(model):
        defined = next((cls for cls in owner.__mro__ if method in vars(cls)), None)
        if defined is None or defined.__module__.startswith("django."):
            continue
        function = getattr(vars(defined)[method], "__func__", vars(defined)[method])
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        except (OSError, TypeError, SyntaxError):
            return ()
        return tuple(
            (keyword.arg, keyword.value, node.func.attr == "exclude")
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("filter", "exclude", "get")
            and _on_self(node.func.value)
            for keyword in node.keywords
            if keyword.arg
        )
    return ()


def _on_self(node: ast.expr) -> bool:
    """Whether a chain starts at ``self`` or ``super()``."""
    while isinstance(node, ast.Call | ast.Attribute):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return node.func.id == "super"
        node = node.func if isinstance(node, ast.Call) else node.value
    return isinstance(node, ast.Name) and node.id in ("self", "cls")
