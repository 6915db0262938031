"""Queryset evaluation while a detection is open: the replacements of ``QuerySet``'s
``_fetch_all``, ``count``, ``exists``, ``aggregate`` and ``__getitem__``.

An evaluation tags its rows (:mod:`.tagging`); a related manager's query for a watched
instance is a per-row query (:mod:`.per_row`); reading a prefetched queryset marks its
eager load used.
"""

from __future__ import annotations

from typing import Any

from django.db.models.query import ModelIterable, QuerySet

from django_dbtune.nplusone import django52
from django_dbtune.nplusone.failures import give_up
from django_dbtune.nplusone.fetch_mode import detecting, fill_result_cache
from django_dbtune.nplusone.own_prefetch import eager_loads
from django_dbtune.nplusone.per_row import lone_owner_tag, maybe_per_row, owner_tag, per_row
from django_dbtune.nplusone.state import LAZY, Detection, Owned, detection_now, suspended
from django_dbtune.nplusone.tagging import tag_rows

# Django's own, called by the replacements below (never the replacements themselves).
_django_fetch_all = QuerySet._fetch_all
_django_count = QuerySet.count
_django_exists = QuerySet.exists
_django_aggregate = QuerySet.aggregate
_django_getitem = QuerySet.__getitem__

# The replacements reach Django's private queryset attributes, which the stubs do not know.
_QuerySet = Any


def fetch_all(self: _QuerySet) -> None:
    if self._result_cache is not None:
        # Read twice per row of a prefetched page: Django's own work inline, no extra call.
        use = self._dbtune_use
        if use is not None and not use.done:
            use.mark()
        if self._prefetch_related_lookups and not self._prefetch_done:
            self._prefetch_related_objects()
        return None
    detection = detection_now()
    if detection is None or detection.busy or suspended():
        return _django_fetch_all(self)
    try:
        lazy = self._query.__dict__.get(LAZY)  # Django 5.2: a descriptor's lazy load
        if lazy is not None and django52.lazy_load(self, lazy, _django_fetch_all):
            return None
        owned = owner_tag(self)
        if owned is not None:
            per_row(self, detection, *owned, "many", lambda: _django_fetch_all(self))
            return None
        lone = lone_owner_tag(self)
        start = len(detection.log.records)
        _evaluate(self, detection)
        end = len(detection.log.records)
        if lone is not None and end > start:
            detection.owned.append(Owned(start, end, lone, eager_loads(self)))
    except Exception as error:
        if not give_up(detection, error):
            raise
        return _django_fetch_all(self)  # done already, or done now
    return None


def count(self: _QuerySet) -> int:
    if self._result_cache is not None:
        mark_use(self)
        return _django_count(self)
    return maybe_per_row(self, "count", lambda: _django_count(self))  # type: ignore[no-any-return]


def exists(self: _QuerySet) -> bool:
    if self._result_cache is not None:
        mark_use(self)
        return _django_exists(self)
    return maybe_per_row(self, "exists", lambda: _django_exists(self))  # type: ignore[no-any-return]


def aggregate(self: _QuerySet, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return maybe_per_row(  # type: ignore[no-any-return]
        self, "aggregate", lambda: _django_aggregate(self, *args, **kwargs)
    )


def getitem(self: _QuerySet, k: Any) -> Any:
    if self._result_cache is not None:
        mark_use(self)
    return _django_getitem(self, k)


def mark_use(queryset: _QuerySet) -> None:
    """A prefetched related queryset was read."""
    use = queryset._dbtune_use
    if use is not None and not use.done:
        use.mark()


def watch_filled(queryset: _QuerySet, rows: list[Any]) -> None:
    """Rows the query cache filled in (announced through :mod:`django_dbtune.filled_rows`):
    watched exactly like the rows of a queryset Django evaluated."""
    detection = detection_now()
    if detection is None or detection.busy or suspended():
        return
    if rows and issubclass(queryset._iterable_class, ModelIterable):
        try:
            detecting(rows)
            tag_rows(queryset, rows, detection)
        except Exception as error:
            if not give_up(detection, error):
                raise


def _evaluate(queryset: _QuerySet, detection: Detection) -> None:
    """``QuerySet._fetch_all``, plus: tag the rows when they are worth watching."""
    if queryset._result_cache is None:
        fill_result_cache(queryset)
    rows = queryset._result_cache
    if rows and issubclass(queryset._iterable_class, ModelIterable):
        tag_rows(queryset, rows, detection)
    if queryset._prefetch_related_lookups and not queryset._prefetch_done:
        detection.busy += 1
        try:
            queryset._prefetch_related_objects()
        finally:
            detection.busy -= 1
