"""The query cache: opt-in per query, fresh after every kind of write.

    class Book(models.Model):
        objects = CachedManager()

    Book.objects.filter(author=a).select_related("author").cached()   # or .cached(timeout=60)

    @cached(depends_on=[Book, "shop.Author"])
    def best_sellers(limit): ...

    invalidate(Book)   # by hand, for writes nothing can see (another program's)

How entries stay fresh is told in ``store.py`` (table generations, the epoch) and
``invalidation.py`` (what counts as a write).
"""

from __future__ import annotations

import functools
import hashlib
import pickle
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from django.apps import apps
from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Manager, Model, QuerySet

from django_dbtune.cache.invalidation import database_group, model_tables, written_in_transaction
from django_dbtune.cache.store import _MISSING, store
from django_dbtune.capture import capture_queries
from django_dbtune.conf import conf
from django_dbtune.errors import DbtuneError
from django_dbtune.sql import analyse

_Model = TypeVar("_Model", bound=Model)
_Func = TypeVar("_Func", bound=Callable[..., Any])

_tables_seen: dict[tuple[Any, ...], frozenset[str]] = {}
"""Per query shape with prefetches: every table its evaluation read (learned on a miss)."""


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
        _check_timeout(".cached", timeout)
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
            _fetch_cached(queryset)
        super()._fetch_all()  # type: ignore[misc]

    def count(self) -> int:
        base = super().count  # type: ignore[misc]
        if cast(Any, self)._result_cache is not None or not self._dbtune_cached:
            return int(base())
        return int(_value(cast(Any, self), "count", (), base))

    def exists(self) -> bool:
        base = super().exists  # type: ignore[misc]
        if cast(Any, self)._result_cache is not None or not self._dbtune_cached:
            return bool(base())
        return bool(_value(cast(Any, self), "exists", (), base))

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        base = super().aggregate  # type: ignore[misc]
        if not self._dbtune_cached:
            return dict(base(*args, **kwargs))
        extra = (repr(args), repr(sorted(kwargs.items())))
        return dict(_value(cast(Any, self), "aggregate", extra, lambda: base(*args, **kwargs)))


class CachedQuerySet(CachedQuerySetMixin, QuerySet[_Model]):
    """A QuerySet with ``.cached()``."""


class CachedManager(Manager.from_queryset(CachedQuerySet)):  # type: ignore[misc]
    """A manager whose querysets have ``.cached()``."""


# --- Querysets ------------------------------------------------------------------------------


def _statement(queryset: Any) -> tuple[str, tuple[Any, ...]] | None:
    try:
        sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:
        return None
    return sql, tuple(params)


def _shape(queryset: Any, sql: str, kind: str, extra: Sequence[Any]) -> tuple[Any, ...]:
    return (
        queryset.model._meta.label,
        kind,
        queryset._iterable_class.__qualname__,
        tuple(getattr(queryset, "_fields", None) or ()),
        tuple(_prefetch_key(lookup) for lookup in queryset._prefetch_related_lookups),
        sql,
        *extra,
    )


def _prefetch_key(lookup: Any) -> Any:
    """A prefetch lookup as a stable key: a ``Prefetch`` by its path, attribute and the SQL
    of its queryset (its default repr is an address, new on every call)."""
    if isinstance(lookup, str):
        return lookup
    inner = lookup.queryset
    statement = _statement(inner) if inner is not None else None
    return (lookup.prefetch_through, lookup.to_attr, statement)


def _check_timeout(where: str, timeout: Any) -> None:
    if timeout is not None and (
        not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise DbtuneError(
            f"{where}(timeout=...) takes a positive number of seconds, not {timeout!r}."
        )


def _through(
    alias: str,
    digest: str,
    tables: frozenset[str],
    compute: Callable[[], tuple[Any, bool]],
    timeout: int | None,
    lock: bool | None,
) -> Any:
    """The cached value, or ``compute()``'s (value, storable), stored when it may be.

    The generations are read before ``compute`` runs and the value is stored under them
    only: a write that raced the computation has already replaced them.
    """
    if not tables or tables & written_in_transaction(alias):
        return compute()[0]
    entry = store.entry_key(digest)
    found = store.lookup(entry, _generation_keys(alias, tables))
    if found is None:
        return compute()[0]
    tokens, value = found
    if value is not _MISSING:
        return value
    locking = conf.CACHE_LOCK if lock is None else lock
    held = locking and store.acquire(entry)
    if locking and not held:
        # Another reader is computing this entry: wait briefly for it, then do it here.
        value = store.wait_for(entry, tokens, conf.CACHE_LOCK_WAIT)
        if value is not _MISSING:
            return value
    try:
        value, storable = compute()
        if storable and not connections[alias].in_atomic_block:
            store.store(entry, tokens, value, timeout or conf.CACHE_TIMEOUT)
    finally:
        if held:
            store.release(entry)
    return value


def _fetch_cached(queryset: Any) -> None:
    """Fill ``_result_cache`` (and the prefetches) from the cache, or from the database and
    then the cache. Leaves it empty when the cache cannot be used, so Django fetches."""
    if not conf.CACHE_ENABLED or queryset.query.select_for_update:
        return  # a locking read must reach the database
    statement = _statement(queryset)
    if statement is None:
        return
    sql, params = statement
    shape = _shape(queryset, sql, "rows", ())
    alias = queryset.db
    connection = connections[alias]
    known = _tables_seen.get(shape)
    tables = known or frozenset(analyse(sql, connection.vendor).tables)

    def compute() -> tuple[Any, bool]:
        queryset._result_cache = list(queryset._iterable_class(queryset))
        if not queryset._prefetch_related_lookups or queryset._prefetch_done:
            return queryset._result_cache, True  # one query: its tables are all known
        with capture_queries(using=[alias]) as log:
            queryset._prefetch_related_objects()
        read = {table for record in log for table in record.tables}
        if read - tables:
            # Prefetches read tables whose generations were not read first: remember them
            # for the next miss, and store nothing now (a write to them may have raced).
            _tables_seen[shape] = frozenset(tables | read)
            return queryset._result_cache, False
        return queryset._result_cache, True

    rows = _through(
        alias,
        _digest(alias, shape, params),
        tables,
        compute,
        queryset._dbtune_timeout,
        queryset._dbtune_lock,
    )
    queryset._result_cache = rows
    queryset._prefetch_done = True


def _value(queryset: Any, kind: str, extra: Sequence[Any], compute: Callable[[], Any]) -> Any:
    """``count()``, ``exists()`` or ``aggregate()`` of a cached queryset."""
    if not conf.CACHE_ENABLED:
        return compute()
    statement = _statement(queryset)
    if statement is None:
        return compute()
    sql, params = statement
    alias = queryset.db
    return _through(
        alias,
        _digest(alias, _shape(queryset, sql, kind, extra), params),
        frozenset(analyse(sql, connections[alias].vendor).tables),
        lambda: (compute(), True),
        queryset._dbtune_timeout,
        queryset._dbtune_lock,
    )


def _generation_keys(alias: str, tables: Iterable[str]) -> list[str]:
    group = database_group(alias)
    return [store.generation_key(group, table) for table in sorted(tables)]


def _digest(alias: str, shape: tuple[Any, ...], params: tuple[Any, ...]) -> str:
    text = repr((database_group(alias), shape, params))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


# --- Functions ------------------------------------------------------------------------------


def cached(
    timeout: int | None = None,
    depends_on: Iterable[type[Model] | str] = (),
    using: str = DEFAULT_DB_ALIAS,
    lock: bool | None = None,
) -> Callable[[_Func], _Func]:
    """Cache a function's result per arguments until a table of ``depends_on`` changes.

    ``depends_on`` lists models (or ``"app_label.Model"``) whose tables the function reads;
    ``using`` the database they are read from; ``lock`` as for ``.cached()``. Arguments
    must be picklable; a call whose arguments are not runs uncached.
    """
    _check_timeout("@cached", timeout)
    if not depends_on:
        raise DbtuneError("@cached(depends_on=[...]) needs the models the function reads.")
    names = list(depends_on)

    def decorate(function: _Func) -> _Func:
        label = f"{function.__module__}.{function.__qualname__}"

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not conf.CACHE_ENABLED:
                return function(*args, **kwargs)
            try:
                arguments = pickle.dumps((args, sorted(kwargs.items())))
            except Exception:
                return function(*args, **kwargs)
            tables = frozenset(table for name in names for table in model_tables(_model(name)))
            digest = hashlib.sha256(
                repr((database_group(using), label)).encode() + arguments
            ).hexdigest()[:40]
            return _through(
                using, digest, tables, lambda: (function(*args, **kwargs), True), timeout, lock
            )

        return cast(_Func, wrapper)

    return decorate


def _model(name: type[Model] | str) -> type[Model]:
    if isinstance(name, str):
        try:
            return apps.get_model(name)
        except (LookupError, ValueError) as error:
            raise DbtuneError(
                f"@cached(depends_on=...) names {name!r}, which is not a model: {error}"
            ) from None
    return name


def invalidate(*models_or_tables: type[Model] | str, using: str | None = None) -> None:
    """Retire every cached result that read these models (or ``"app_label.Model"``, or
    table names), on ``using`` or on every database."""
    tables: list[str] = []
    for item in models_or_tables:
        if isinstance(item, str) and "." not in item:
            tables.append(item)
        else:
            tables.extend(model_tables(_model(item)))
    aliases = [using] if using is not None else list(connections)
    for group in dict.fromkeys(database_group(alias) for alias in aliases):
        store.invalidate(group, tables)


__all__ = ["CachedManager", "CachedQuerySet", "CachedQuerySetMixin", "cached", "invalidate"]
