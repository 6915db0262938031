"""What a cached read is keyed by: the query as Django holds it.

A queryset's key is the pickled ``Query`` (equal bytes, equal SQL; pickling costs a fraction
of compiling), with the model, the kind of result, the values/prefetch settings and the
database group.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
from collections.abc import Sequence
from typing import Any

import django
from django.core.exceptions import EmptyResultSet
from django.db.models.sql import Query
from django.utils.functional import cached_property as django_cached_property

from django_dbtune.cache.invalidation import database_group

KEY_VERSION = f"dbtune-1/{django.get_version()}"
"""In every key: a pickled query means the same SQL only under the same Django."""


def queryset_digest(queryset: Any, kind: str, extra: Sequence[Any] = ()) -> str:
    """The key of ``queryset``'s ``kind`` of result (rows, count, ...), ``extra`` told apart.
    The same whether or not the query has been compiled, and across clones."""
    query = queryset.query
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
        *extra,
    )
    try:
        blob = key_bytes((parts, query))
    except Exception:
        blob = repr((parts, compiled_sql(queryset))).encode()  # an unpicklable value
    return hashlib.sha256(blob).hexdigest()[:40]


def function_digest(using: str, label: str, arguments: bytes) -> str:
    """The key of a ``@cached`` function's call (``arguments`` pickled)."""
    parts = (KEY_VERSION, database_group(using), label)
    return hashlib.sha256(repr(parts).encode() + arguments).hexdigest()[:40]


def compiled_sql(queryset: Any) -> tuple[str, tuple[Any, ...]] | None:
    """The queryset's SQL, compiled from a copy: compiling sets up joins on the query, and
    the key must stay what it was. None when it would run no query."""
    try:
        sql, params = queryset.query.clone().get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:
        return None
    return sql, tuple(params)


# --- The pickled query ------------------------------------------------------------------------


class KeyPickler(pickle.Pickler):
    """Pickles a query without what Django caches on it as it compiles (``cached_property``
    values such as ``base_table`` or ``contains_aggregate``): a lookup has one key whether
    or not it has been compiled."""

    def reducer_override(self, obj: Any) -> Any:
        state = getattr(obj, "__dict__", None)
        if state is None or isinstance(obj, type):
            return NotImplemented
        derived = _derived_attributes(obj.__class__)
        if not derived or derived.isdisjoint(state):
            return NotImplemented
        kept = {name: value for name, value in state.items() if name not in derived}
        return (type(obj), (), kept)


@functools.cache
def _derived_attributes(cls: Any) -> frozenset[str]:
    """The instance attributes of ``cls`` that only cache what the others determine."""
    names = {
        name
        for klass in cls.__mro__
        for name, attribute in vars(klass).items()
        if isinstance(attribute, (functools.cached_property, django_cached_property))
    }
    if issubclass(cls, Query):
        names |= {"_annotation_select_cache", "_extra_select_cache"}
    return frozenset(names)


def key_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    KeyPickler(buffer, pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


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
