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
    querysets adds to its chain: read only from a body that returns one chain on ``self``
    (``return self.filter(...)``, ``return super().get_queryset().exclude(...)``), and only
    the calls of that chain. A body with branches or several returns may not filter every
    time, and what it filters elsewhere (a subquery, ``Other.objects``) is not its chain's:
    then nothing is read. Nothing either when the source cannot be read."""
    for owner in chain_classes(model):
        defined = next((cls for cls in owner.__mro__ if method in vars(cls)), None)
        if defined is None or defined.__module__.startswith("django."):
            continue
        function = getattr(vars(defined)[method], "__func__", vars(defined)[method])
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        except (OSError, TypeError, SyntaxError):
            return ()
        body = tree.body[0].body if tree.body and hasattr(tree.body[0], "body") else []
        returns = [node for node in ast.walk(tree) if isinstance(node, ast.Return)]
        if len(returns) != 1 or returns[0] is not body[-1] or returns[0].value is None:
            return ()
        return tuple(_chain_lookups(returns[0].value))
    return ()


def _chain_lookups(node: ast.expr) -> list[BodyLookup]:
    """The keyword filters along one chain of calls on ``self`` or ``super()``; none when the
    chain starts anywhere else (``self.model.objects``, another model)."""
    found: list[BodyLookup] = []
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr in ("filter", "exclude", "get"):
            excluded = node.func.attr == "exclude"
            found += [(k.arg, k.value, excluded) for k in node.keywords if k.arg]
        node = node.func.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return found if node.func.id == "super" else []
    return found if isinstance(node, ast.Name) and node.id in ("self", "cls") else []
