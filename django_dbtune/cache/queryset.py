"""``.cached()`` on querysets: the mixin, and how a cached queryset finds its rows.

Rows fetched for a cached queryset, from the database on a miss or restored from the cache
on a hit, become its result cache in one function, ``fill_result_cache``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, TypeVar, cast

from django.db import connections
from django.db.models import Manager, Model, QuerySet
from django.db.models.query import ModelIterable

from django_dbtune import filled_rows
from django_dbtune.cache.invalidation import database_group
from django_dbtune.cache.keys import compiled_sql, queryset_digest, read_shape
from django_dbtune.cache.readthrough import as_is, check_timeout, noting_served, read_through
from django_dbtune.cache.rows import pack, unpack
from django_dbtune.cache.tables import IN_GROUP, in_group
from django_dbtune.conf import conf
from django_dbtune.sql import analyse

_Model = TypeVar("_Model", bound=Model)


class CachedQuerySetMixin:
    """Adds ``.cached(timeout=None)`` to a queryset class."""

    _dbtune_timeout: int | None = None
    _dbtune_cached: bool = False
    _dbtune_lock: bool | None = None

    def cached(self, timeout: int | None = None, lock: bool | None = None) -> Any:
        """This queryset, served from the cache until a table it reads changes.

        ``timeout`` in seconds (default ``DBTUNE["CACHE_TIMEOUT"]``). ``lock``: concurrent
        misses run the query once (default ``DBTUNE["CACHE_LOCK"]``). Evaluating it, and
        ``count()``, ``exists()``, ``aggregate()`` and ``get()`` on it, use the cache.
        """
        check_timeout(".cached", timeout)
        clone = cast(Any, self)._chain()
        clone._dbtune_cached = True
        clone._dbtune_timeout = timeout
        clone._dbtune_lock = lock
        return clone

    def _clone(self) -> Any:
        clone = super()._clone()  # type: ignore[misc]
        clone._dbtune_cached = self._dbtune_cached
        clone._dbtune_timeout = self._dbtune_timeout
        clone._dbtune_lock = self._dbtune_lock
        return clone

    def _fetch_all(self) -> None:
        queryset = cast(Any, self)
        if queryset._result_cache is None and self._dbtune_cached:
            fetch_cached(queryset)
        super()._fetch_all()  # type: ignore[misc]

    def count(self) -> int:
        base = super().count  # type: ignore[misc]
        if cast(Any, self)._result_cache is not None or not self._dbtune_cached:
            return int(base())
        return int(cached_value(cast(Any, self), "count", (), base))

    def exists(self) -> bool:
        base = super().exists  # type: ignore[misc]
        if cast(Any, self)._result_cache is not None or not self._dbtune_cached:
            return bool(base())
        return bool(cached_value(cast(Any, self), "exists", (), base))

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        base = super().aggregate  # type: ignore[misc]
        if not self._dbtune_cached:
            return dict(base(*args, **kwargs))
        extra = (repr(args), repr(sorted(kwargs.items())))
        return dict(
            cached_value(
                cast(Any, self),
                "aggregate",
                extra,
                lambda: base(*args, **kwargs),
                # The annotations join what the aggregates will: their SQL names the tables.
                like=lambda: cast(Any, self).annotate(*args, **kwargs),
            )
        )


class CachedQuerySet(CachedQuerySetMixin, QuerySet[_Model]):
    """A QuerySet with ``.cached()``."""


class CachedManager(Manager.from_queryset(CachedQuerySet)):  # type: ignore[misc]
    """A manager whose querysets have ``.cached()``."""


# --- Rows ----------------------------------------------------------------------------------


def fetch_cached(queryset: Any) -> None:
    """Fill ``_result_cache`` (and the prefetches) from the cache, or from the database and
    then the cache. Leaves it empty when the cache cannot be used, so Django fetches."""
    if not conf.cache_active or queryset.query.select_for_update or filled_rows.django_fetches():
        return  # a locking read must reach the database; a proof's re-run counts queries
    lookup = CacheLookup(queryset, "rows", ())
    if lookup.digest is None:
        return  # it reads the clock or a random number: Django fetches it every time

    def fetch() -> list[Any]:
        fill_result_cache(queryset, list(queryset._iterable_class(queryset)))
        if queryset._prefetch_related_lookups and not queryset._prefetch_done:
            queryset._prefetch_related_objects()
        return cast(list[Any], queryset._result_cache)

    rows = read_through(
        queryset.db,
        lookup.digest,
        lookup.guess,
        lookup.exact,
        lambda: lookup.reading(fetch),
        queryset._dbtune_timeout,
        queryset._dbtune_lock,
        encode=pack if queryset._iterable_class is ModelIterable else as_is,
        decode=lambda stored: unpack(stored, getattr(queryset, "_fetch_mode", None)),
        label=lookup.label,
        subject=queryset.model._meta.label,
    )
    if queryset._result_cache is not rows:
        fill_result_cache(queryset, rows, restored=True)
    queryset._prefetch_done = True


def fill_result_cache(queryset: Any, rows: list[Any], restored: bool = False) -> None:
    """The one place where the rows of a cached queryset become its result cache: fetched
    from the database on a miss (before its prefetches run), or ``restored`` from the cache
    on a hit (with their prefetched objects)."""
    if restored and queryset._known_related_objects:
        _relink(queryset, rows)
    queryset._result_cache = rows
    # The N+1 detector watches these rows as it watches the rows Django fetches.
    filled_rows.announce(queryset, rows)


def _relink(queryset: Any, rows: list[Any]) -> None:
    """Rows served from the cache point at the instances a related manager knows (as Django
    does for ``author.books.all()``), not at copies stored with them."""
    for field, known in queryset._known_related_objects.items():
        for row in rows:
            if not isinstance(row, Model):
                return
            instance = known.get(getattr(row, field.attname, None))
            if instance is not None:
                setattr(row, field.name, instance)


def cached_value(
    queryset: Any,
    kind: str,
    extra: Sequence[Any],
    compute: Callable[[], Any],
    like: Callable[[], Any] | None = None,
) -> Any:
    """``count()``, ``exists()`` or ``aggregate()`` of a cached queryset."""
    if not conf.cache_active or filled_rows.django_fetches():
        return compute()
    lookup = CacheLookup(queryset, kind, extra)
    if lookup.digest is None:
        return compute()  # it reads the clock or a random number
    return read_through(
        queryset.db,
        lookup.digest,
        lookup.guess,
        lambda: lookup.exact(like),
        lambda: lookup.reading(compute),
        queryset._dbtune_timeout,
        queryset._dbtune_lock,
        label=lookup.label,
        subject=queryset.model._meta.label,
    )


# --- Tables ------------------------------------------------------------------------------------

_guesses: dict[tuple[Any, ...], frozenset[str]] = {}
"""Per query structure (model, kind, joins, select_related, prefetches): every table such a
query was seen to read. A guess that saves compiling SQL on a hit: each entry records the
tables it really read, and a guess that lacks one costs a second round trip, never a stale
answer."""

_GUESSES_KEPT = 4096


class CacheLookup:
    """How a cached queryset is looked up: its key, a guess of its tables that needs no
    SQL, and (on a miss) the tables its SQL reads."""

    __slots__ = ("digest", "guess", "label", "queryset", "structure")

    def __init__(self, queryset: Any, kind: str, extra: Sequence[Any]) -> None:
        self.queryset = queryset
        shape = read_shape(queryset)
        self.digest = queryset_digest(queryset, kind, extra, shape)
        self.structure = (kind, shape)
        self.guess = _guesses.get(self.structure, frozenset())
        self.label = f"{queryset.model._meta.label} ({kind})"

    def exact(self, like: Callable[[], Any] | None = None) -> frozenset[str]:
        """The tables the SQL reads (compiled: asked only when nothing is guessed), or
        those of the queryset ``like()`` whose SQL joins the same tables."""
        try:
            tables = _tables(like() if like is not None else self.queryset)
        except Exception:
            tables = frozenset()  # then this read is not stored; its tables are learned
        self.learn(tables)
        return tables

    def reading(self, run: Callable[[], Any]) -> tuple[Any, frozenset[str]]:
        """``run()``'s value and every table it read: its statements on every database
        (a prefetch may be routed to another), and the tables of the cached values it was
        served (a cached queryset in a ``Prefetch``). Tables of another database group are
        named with it (:func:`.store.in_group`). None when another database it read is
        inside a transaction: what it read there may never be committed."""
        statements: list[tuple[str, str]] = []

        def catcher(alias: str) -> Callable[..., Any]:
            def catch(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
                statements.append((alias, sql))
                return execute(sql, *args)

            return catch

        with ExitStack() as stack:
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(catcher(alias)))
            served = stack.enter_context(noting_served())
            value = run()
        own = database_group(self.queryset.db)
        read: set[str] = set()
        for alias, sql in statements:
            group = database_group(alias)
            tables = analyse(sql, connections[alias].vendor).tables
            read.update(tables if group == own else (in_group(group, t) for t in tables))
            if alias != self.queryset.db and connections[alias].in_atomic_block:
                return value, frozenset()
        for group, tables in served:
            mixed = group == own
            read.update(t if mixed or IN_GROUP in t else in_group(group, t) for t in tables)
        self.learn(frozenset(read))
        return value, frozenset(read)

    def learn(self, tables: frozenset[str]) -> None:
        if not tables <= self.guess:
            if len(_guesses) >= _GUESSES_KEPT:
                _guesses.clear()
            _guesses[self.structure] = self.guess = self.guess | tables


def _tables(queryset: Any) -> frozenset[str]:
    """The tables the queryset's SQL reads (none when it runs no query)."""
    statement = compiled_sql(queryset)
    if statement is None:
        return frozenset()
    return frozenset(analyse(statement[0], connections[queryset.db].vendor).tables)
