"""What a model's own manager filters before any call adds to it: Oscar's ``Basket.open``
returns ``super().get_queryset().filter(status="Open")``, a soft-delete manager
``filter(deleted_at=None)``. Read from the query the manager builds (building a queryset
runs no query), so a value held on the manager (``status=self.status_filter``) is known."""

from __future__ import annotations

import functools
from typing import Any

from django.db import models
from django.db.models.expressions import Col
from django.db.models.lookups import Lookup
from django.db.models.sql.where import AND, WhereNode

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
