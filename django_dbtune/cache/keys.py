"""What a cached read is keyed by: the query as Django holds it, and the fields it was read under.

A queryset's key is the pickled ``Query`` (equal bytes, equal SQL; pickling costs a fraction
of compiling), with the model, the kind of result, the values/prefetch settings, the
database group, the current time zone (date lookups compile in it) and a stamp of the
fields of every model the query reads: names, columns and types of their concrete fields
(as cacheops' ``stamp_fields``). A deploy that changes a model's fields therefore never
reads what processes running the old code stored, even if they store it after the
migration ran.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import django
from django.apps import apps
from django.conf import settings
from django.core.exceptions import EmptyResultSet, FieldDoesNotExist
from django.db import connections
from django.db.models import Model
from django.utils import timezone

from django_dbtune.cache import search_path
from django_dbtune.cache.invalidation import database_group
from django_dbtune.cache.key_pickler import VOLATILE_SQL, Volatile, key_bytes

KEY_VERSION = f"dbtune-2/{django.get_version()}"
"""In every key: a pickled query means the same SQL only under the same Django."""

SELECT_RELATED_DEPTH = 5
"""How deep ``select_related()`` with no fields follows foreign keys (Django's own limit)."""


Shape = tuple[type[Model], tuple[str, ...], str, tuple[str, ...]]


def read_shape(queryset: Any) -> Shape:
    """What decides the tables and models a queryset reads, without compiling it: its
    model, its joins' tables, its ``select_related`` and its prefetch paths. Worked out
    once per cached read: the fields stamp and the guess of its tables both look it up."""
    query = queryset.query
    return (
        queryset.model,
        tuple(join.table_name for join in query.alias_map.values()),
        repr(query.select_related),
        tuple(prefetch_path(lookup) for lookup in queryset._prefetch_related_lookups),
    )


def queryset_digest(
    queryset: Any, kind: str, extra: Sequence[Any] = (), shape: Shape | None = None
) -> str | None:
    """The key of ``queryset``'s ``kind`` of result (rows, count, ...), ``extra`` told apart.
    The same whether or not the query has been compiled, and across clones. ``shape``:
    its :func:`read_shape`, when the caller has it already. None for a query whose answer
    changes with no write: it reads the clock or a random number (``Now()``, ``Random()``,
    ``order_by("?")``)."""
    query = queryset.query
    if shape is None:
        shape = read_shape(queryset)
    parts = (
        KEY_VERSION,
        database_group(queryset.db),
        queryset.model._meta.label,
        kind,
        queryset._iterable_class.__qualname__,
        tuple(getattr(queryset, "_fields", None) or ()),
        # Django 6.1: rows remember how they load what they lack.
        type(getattr(queryset, "_fetch_mode", None)).__qualname__,
        tuple(prefetch_key(lookup) for lookup in queryset._prefetch_related_lookups),
        fields_stamp(models_read(queryset, shape)),
        # The SQL of date and time lookups is compiled in the current time zone.
        timezone.get_current_timezone_name() if settings.USE_TZ else "",
        # Which tables its names mean: a tenant's schema (schema-per-tenant sites).
        schema_of(connections[queryset.db]),
        *extra,
    )
    if "?" in query.order_by:
        return None  # order_by("?"): another order on every run
    try:
        blob = key_bytes((parts, query))
    except Volatile:
        return None
    except Exception:
        sql = compiled_sql(queryset)
        if sql is not None and VOLATILE_SQL.search(sql[0]):
            return None
        blob = repr((parts, sql)).encode()  # an unpicklable value
    return hashlib.sha256(blob).hexdigest()[:40]


def schema_of(connection: Any) -> Any:
    """Which schema a connection's unqualified table names are in, where a library says so
    (the tenant schema django-tenants and django-tenant-schemas name as
    ``connection.schema_name``) and where a statement set it (:mod:`.search_path`)."""
    tenant = getattr(connection, "schema_name", None)
    path = search_path.set_by_hand(connection)
    return tenant if path is None else (tenant, path)


def function_digest(
    using: str,
    label: str,
    arguments: bytes,
    models: Sequence[type[Model]],
    others: Sequence[str] = (),
) -> str:
    """The key of a ``@cached`` function's call (``arguments`` pickled) that reads ``models``
    on ``using`` (and on the databases ``others``, each with its group and schema)."""
    parts = (
        KEY_VERSION,
        database_group(using),
        label,
        fields_stamp(models),
        schema_of(connections[using]),
        *((database_group(other), schema_of(connections[other])) for other in others),
    )
    return hashlib.sha256(repr(parts).encode() + arguments).hexdigest()[:40]


def compiled_sql(queryset: Any) -> tuple[str, tuple[Any, ...]] | None:
    """The queryset's SQL, compiled from a copy: compiling sets up joins on the query, and
    the key must stay what it was. None when it would run no query."""
    try:
        sql, params = queryset.query.clone().get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:
        return None
    return sql, tuple(params)


def prefetch_key(lookup: Any) -> Any:
    """A prefetch lookup as a stable key: a ``Prefetch`` by its path, attribute and its
    queryset's query (its default repr is an address, new on every call)."""
    if isinstance(lookup, str):
        return lookup
    inner = lookup.queryset
    query = (inner._iterable_class.__qualname__, inner.query) if inner is not None else None
    return (lookup.prefetch_through, lookup.to_attr, query)


def prefetch_path(lookup: Any) -> str:
    return lookup if isinstance(lookup, str) else str(lookup.prefetch_through)


# --- The fields stamp ---------------------------------------------------------------------------

_models_read: dict[Shape, tuple[type[Model], ...]] = {}
_MODELS_READ_KEPT = 4096
_stamps: dict[type[Model], tuple[Any, str]] = {}


def models_read(queryset: Any, shape: Shape) -> tuple[type[Model], ...]:
    """Every model whose rows the query reads: its own, its joins', its ``select_related``
    and its prefetches' (a superset where Django decides at compile time, so that compiling
    it, which adds the ``select_related`` joins, does not change the answer)."""
    found = _models_read.get(shape)
    if found is None:
        model, tables, _, paths = shape
        models = {model}
        by_table = _models_by_table()
        models.update(by_table[table] for table in tables if table in by_table)
        models.update(_select_related(model, queryset.query.select_related, SELECT_RELATED_DEPTH))
        for path in paths:
            models.update(_along(model, path.split("__")))
        found = tuple(sorted(models, key=lambda each: each._meta.label))
        if len(_models_read) >= _MODELS_READ_KEPT:
            _models_read.clear()
        _models_read[shape] = found
    return found


def fields_stamp(models: Sequence[type[Model]]) -> tuple[str, ...]:
    """Per model: a digest of the name, column and type of each of its concrete fields."""
    return tuple(model_stamp(model) for model in models)


def model_stamp(model: type[Model]) -> str:
    fields = model._meta.concrete_fields
    known = _stamps.get(model)
    # Django rebuilds concrete_fields whenever a field is added: the same tuple, same fields.
    if known is not None and known[0] is fields:
        return known[1]
    described = [
        (field.name, field.column, type(field).__qualname__, field.get_internal_type())
        for field in fields
    ]
    stamp = hashlib.sha256(repr((model._meta.db_table, described)).encode()).hexdigest()[:16]
    _stamps[model] = (fields, stamp)
    return stamp


@functools.cache
def _models_by_table() -> dict[str, type[Model]]:
    return {model._meta.db_table: model for model in apps.get_models(include_auto_created=True)}


def _along(model: type[Model], names: Sequence[str]) -> Iterator[type[Model]]:
    """The models met following ``names`` (a relation path) from ``model``."""
    for name in names:
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            return  # a prefetch through a property or a generic relation: its own query
        related = field.related_model
        if not isinstance(related, type):
            return
        model = related
        yield model


def _select_related(model: type[Model], select_related: Any, depth: int) -> set[type[Model]]:
    if not select_related or depth == 0:
        return set()
    if isinstance(select_related, dict):
        found: set[type[Model]] = set()
        for name, deeper in select_related.items():
            for related in _along(model, [name]):
                found.add(related)
                found |= _select_related(related, deeper, depth - 1)
        return found
    found = set()  # select_related(): every forward foreign key and one-to-one
    for field in model._meta.concrete_fields:
        target = field.related_model
        if field.is_relation and isinstance(target, type) and target is not model:
            found.add(target)
            found |= _select_related(target, True, depth - 1)
    return found
