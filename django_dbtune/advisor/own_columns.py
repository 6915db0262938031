"""The names an index on a model's own table can hold: a call site's filters and sorts,
read as the fields of that table (``pk`` is ``id``), without annotations, aliases, reverse
relations or a parent's columns; and what a call compares, by column, as a partial index's
condition is read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import F, OrderBy

from django_dbtune.advisor.code_scan import Usage
from django_dbtune.schema import Call


def column_field(model: type[models.Model], name: str) -> Any:
    """The field of ``model``'s own table that a filter or sort name (``pk``, ``-name``)
    stands for; None for an annotation or alias, a reverse relation, a many-to-many, or a
    parent model's column (it lives in the parent's table, where its index must go)."""
    name = name.lstrip("-")
    try:
        found = model._meta.pk if name == "pk" else model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    if found is None or found not in model._meta.local_concrete_fields:
        return None
    return found


def indexable(usage: Usage) -> Usage:
    """``usage`` with only the names an index on its model's table can hold, each as the
    field's own name (``pk`` is ``id``). The rest (annotations, aliases, reverse relations,
    a parent's columns) are left out, and a sort stops at the first of them: the columns
    after it no longer follow the index's order."""
    model = usage.model
    known = {n for n, _ in usage.equality} | {n for n, _ in usage.contains}
    known |= {*usage.ranges, *usage.patterns, *usage.single, *usage.sort}
    own = {name: own_name(model, name) for name in known}
    if all(own[name] == name for name in known):
        return usage
    clean = usage.copy()
    clean.equality = [(own[n], value) for n, value in usage.equality if own[n]]
    clean.ranges = [own[n] for n in usage.ranges if own[n]]
    clean.patterns = [own[n] for n in usage.patterns if own[n]]
    clean.single = [own[n] for n in usage.single if own[n]]
    clean.contains = [(own[n], i) for n, i in usage.contains if own[n]]
    clean.sort = sort_prefix(model, usage.sort)
    return clean


def own_name(model: type[models.Model], name: str) -> Any:
    """The name of the field of ``model``'s own table that ``name`` stands for, with its
    ``-``; None when it is no such field (see :func:`column_field`)."""
    found = column_field(model, name)
    if found is None:
        return None
    return f"-{found.name}" if name.startswith("-") else found.name


def sort_prefix(model: type[models.Model], sort: Sequence[Any]) -> list[str]:
    """The leading sort names that are columns of the model's own table, as its fields'
    names (``F("name").desc()`` in ``Meta.ordering`` is ``-name``)."""
    kept = []
    for item in sort:
        name = sort_name(item)
        own = own_name(model, name) if name is not None else None
        if own is None:
            break
        kept.append(own)
    return kept


def sort_name(item: Any) -> str | None:
    """A sort item as a name with its ``-``: a string, or ``F("x").asc()``/``.desc()``."""
    if isinstance(item, str):
        return item
    expression: Any = getattr(item, "expression", None)
    name = getattr(expression, "name", None) if isinstance(expression, F) else None
    if isinstance(item, OrderBy) and isinstance(name, str):
        return ("-" if item.descending else "") + name
    return None


def nulls_placed(model: type[models.Model], sort: Sequence[Any]) -> tuple[tuple[str, bool], ...]:
    """(field name, NULLs first) for each leading sort item that places NULLs where no
    plain PostgreSQL B-tree, read either way, gives them: ``F("vrf").asc(nulls_first=True)``
    or ``.desc(nulls_last=True)`` (ascending keeps NULLs last, and descending first)."""
    found = []
    for item, own in zip(sort, sort_prefix(model, sort), strict=False):
        if isinstance(item, OrderBy) and (item.nulls_first or item.nulls_last):
            first = bool(item.nulls_first)
            if first != item.descending:
                found.append((own.lstrip("-"), first))
    return tuple(found)


def call_of(usage: Usage, constants: Mapping[str, Any] | None = None) -> Call:
    """What the call compares, by column of its model's own table: each column it compares
    for equality to a constant (the code's, else one of ``constants``: every recorded call
    compared the field to it; None is ``IS NULL``), and every column it compares at all.
    Only what the call ANDs counts (``exclude()`` and ``Q`` objects are left out)."""
    equal: dict[str, Any] = {}
    compared = set()
    known = constants or {}
    for name, value in usage.equality:
        column = column_field(usage.model, name)
        if column is None:
            continue
        compared.add(column.column)
        if value is ...:
            value = known.get(name, ...)
        if value is not ...:
            equal.setdefault(column.column, value)
    for name in (*usage.ranges, *usage.patterns):
        column = column_field(usage.model, name)
        if column is not None:
            compared.add(column.column)
    return Call(equal, frozenset(compared))
