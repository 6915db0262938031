"""Recorded reads of another database vendor, made plannable here.

A workload recorded on SQLite holds SQLite's SQL, which PostgreSQL may not accept (and the
reverse). What the ORM filtered and sorted by does not depend on the vendor: a read with ORM
detail is rebuilt from it as a query of this database (each compared value a parameter, so
it is planned for any value). A read without ORM detail (raw SQL) cannot be, and is counted
as left out, naming the vendor it was recorded on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import reduce
from operator import or_
from typing import Any

from django.core.exceptions import FieldDoesNotExist, FieldError
from django.db import connections
from django.db.models import Expression, Field, Model, Q
from django.db.models.sql.compiler import SQLCompiler

from django_dbtune.advisor.workload_candidates import Outcome, model_named
from django_dbtune.workload import OrmUse, Shape

SAMPLE_TEXT = "a"
"""The text a rebuilt prefix or contains search looks for."""


class Parameter(Expression):
    """A value the query is given when it runs: planned for any value."""

    def __init__(self, output_field: Field[Any, Any]) -> None:
        super().__init__(output_field=output_field)

    def as_sql(self, compiler: SQLCompiler, connection: Any) -> Any:
        return "%s", [None]


def for_vendor(shapes: Iterable[Shape], database: str, outcome: Outcome) -> list[Shape]:
    """``shapes`` as this database can plan them: its own vendor's as recorded, another
    vendor's reads rebuilt from their ORM fields (the others left out, counted)."""
    vendor = connections[database].vendor
    kept: list[Shape] = []
    for shape in shapes:
        if shape.vendor == vendor:
            kept.append(shape)
            continue
        if shape.kind != "read":
            continue  # writes are never planned
        sql = rebuilt_sql(shape.orm, database) if shape.orm is not None else None
        if sql is None:
            outcome.skip(
                f"queries recorded on {shape.vendor}, not {vendor}, with no ORM detail "
                "(raw SQL): their SQL cannot be planned here; record the workload on "
                f"{vendor} to include them"
            )
            continue
        outcome.replanned[shape.vendor] = outcome.replanned.get(shape.vendor, 0) + 1
        kept.append(replace(shape, vendor=vendor, sql=sql, params=None, placeholders="%s"))
    return kept


def rebuilt_sql(orm: OrmUse, database: str) -> str | None:
    """The SELECT of ``orm``'s model that filters and sorts as recorded, as this database
    writes it; None when the model or a field is no longer there."""
    model = model_named(orm.model)
    if model is None:
        return None
    try:
        conditions = _conditions(model, orm)
        queryset = model._base_manager.using(database).filter(*conditions).order_by(*orm.sort)
        if orm.selects:
            queryset = queryset.values(*orm.selects)  # type: ignore[assignment]
        if orm.sliced:
            queryset = queryset[:20]
        sql, _ = queryset.query.get_compiler(using=database).as_sql()
    except (FieldError, FieldDoesNotExist, TypeError, ValueError):
        return None
    return str(sql)


def _conditions(model: type[Model], orm: OrmUse) -> list[Q]:
    def value(name: str) -> Parameter:
        return Parameter(model._meta.get_field(name))  # type: ignore[arg-type]

    found = [Q(**{name: value(name)}) for name in orm.equality]
    found += [Q(**{f"{name}__gte": value(name)}) for name in orm.ranges]
    found += [Q(**{f"{name}__startswith": SAMPLE_TEXT}) for name in orm.patterns]
    found += [
        Q(**{f"{name}__{'icontains' if insensitive else 'contains'}": SAMPLE_TEXT})
        for name, insensitive in orm.contains
    ]
    if orm.single:
        # Filtered under OR or NOT, where only one-column indexes help: as an OR.
        found.append(reduce(or_, (Q(**{name: value(name)}) for name in orm.single)))
    return found
