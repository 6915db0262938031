"""The lookup vocabulary: which ORM lookups an index on the bare column can serve, and how.

One table for the code scan and for recorded workloads, decided once for every database
Django supports:

- ``exact``, ``in`` and ``isnull`` are equality: a B-tree serves ``=``, ``IN (...)`` and
  ``IS NULL`` alike (PostgreSQL, SQLite and MariaDB/MySQL all use it for ``IS NULL``).
- ``gt``, ``gte``, ``lt``, ``lte`` and ``range`` are ranges: a B-tree serves them after the
  equality columns.
- ``startswith`` is a prefix search, ``LIKE 'x%'``: a B-tree serves it where the column's
  collation sorts bytewise, and PostgreSQL needs a ``varchar_pattern_ops``/``text_pattern_ops``
  index under any other collation.
- ``contains`` and ``icontains`` (``LIKE '%x%'``) no B-tree serves: only a trigram index
  (PostgreSQL's ``pg_trgm``). On an array, JSON or hstore column, ``contains``, ``overlap``
  and ``has_key``/``has_keys``/``has_any_keys`` are containment operators (``@>``, ``&&``,
  ``?``) that a plain GIN index serves: the field's type decides which
  (``advisor/searches.py``).
- ``iexact`` and ``istartswith`` are *not* indexable on the bare column: PostgreSQL compiles
  them to ``UPPER(col) = UPPER(%s)`` and ``UPPER(col) LIKE UPPER(%s)``, which only an index on
  the expression ``Upper(col)`` serves, so suggesting a plain index for them would be wrong.
  They are recognised (so ``name__iexact`` is read as the field ``name``) but serve nothing.
  (On SQLite, ``iexact`` is a ``LIKE`` that a plain index serves only under ``NOCASE``; on
  MariaDB/MySQL, a plain index does serve it under the usual case-insensitive collations.
  One table for all is the safe side: no suggestion, rather than one that does nothing.)
"""

from __future__ import annotations

from enum import Enum
from functools import cache

from django.db import models

__all__ = ["Use", "is_lookup", "use_of"]


class Use(Enum):
    """How an index on the bare column serves a lookup."""

    EQUALITY = "equality"
    RANGE = "range"
    PREFIX = "prefix"
    CONTAINS = "contains"
    """Only a GIN index serves it: trigram on text, the column itself on arrays and JSON."""


_USES: dict[str, Use] = {
    "exact": Use.EQUALITY,
    "in": Use.EQUALITY,
    "isnull": Use.EQUALITY,
    "gt": Use.RANGE,
    "gte": Use.RANGE,
    "lt": Use.RANGE,
    "lte": Use.RANGE,
    "range": Use.RANGE,
    "startswith": Use.PREFIX,
    "contains": Use.CONTAINS,
    "icontains": Use.CONTAINS,
    "overlap": Use.CONTAINS,
    "has_key": Use.CONTAINS,
    "has_keys": Use.CONTAINS,
    "has_any_keys": Use.CONTAINS,
}

CASE_INSENSITIVE = frozenset({"iexact", "istartswith", "iendswith", "icontains", "iregex"})
"""Lookups that compare case-insensitively (a trigram index must then be on ``UPPER(col)``)."""


def use_of(lookup: str) -> Use | None:
    """How an index on the bare column serves ``lookup``; None when it cannot."""
    return _USES.get(lookup)


@cache
def _builtin_lookups() -> frozenset[str]:
    # Lookups every field has; transforms (``year``, ``date``...) are left out, since a
    # related model may well have a field of that name.
    return frozenset(models.Field.get_class_lookups())


def is_lookup(name: str) -> bool:
    """Whether ``name`` (the last part of ``"field__name"``) is one of Django's lookups
    rather than a field."""
    return name in _USES or name in _builtin_lookups()
