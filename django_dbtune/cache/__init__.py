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
import io
import pickle
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import django
from django.apps import apps
from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Manager, Model, QuerySet
from django.db.models.query import ModelIterable
from django.db.models.sql import Query
from django.utils.functional import cached_property as django_cached_property

from django_dbtune.cache import events
from django_dbtune.cache.invalidation import database_group, model_tables, written_in_transaction
from django_dbtune.cache.rows import pack, unpack
from django_dbtune.cache.store import _MISSING, store
from django_dbtune.conf import conf
from django_dbtune.errors import DbtuneError
from django_dbtune.sql import analyse

_Model = TypeVar("_Model", bound=Model)
_Func = TypeVar("_Func", bound=Callable[..., Any])


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
        return dict(
            _value(
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


# --- Querysets ------------------------------------------------------------------------------

_guesses: dict[tuple[Any, ...], frozenset[str]] = {}
"""Per query structure (model, kind, joins, select_related, prefetches): every table such a
query was seen to read. A guess that saves compiling SQL on a hit: each entry records the
tables it really read, and a guess that lacks one costs a second round trip, never a stale
answer."""

_GUESSES_KEPT = 4096


def _statement(queryset: Any) -> tuple[str, tuple[Any, ...]] | None:
    """The queryset's SQL, compiled from a copy: compiling sets up joins on the query, and
    the key must stay what it was."""
    try:
        sql, params = queryset.query.clone().get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:
        return None
    return sql, tuple(params)


def _tables(queryset: Any) -> frozenset[str]:
    """The tables the queryset's SQL reads (none when it runs no query)."""
    statement = _statement(queryset)
    if statement is None:
        return frozenset()
    return frozenset(analyse(statement[0], connections[queryset.db].vendor).tables)


class _Plan:
    """How a cached queryset is looked up: its key, a guess of its tables that needs no
    SQL, and (on a miss) the tables its SQL reads."""

    __slots__ = ("digest", "guess", "label", "queryset", "structure")

    def __init__(self, queryset: Any, kind: str, extra: Sequence[Any]) -> None:
        self.queryset = queryset
        query = queryset.query
        label = queryset.model._meta.label
        prefetches = tuple(_prefetch_key(lookup) for lookup in queryset._prefetch_related_lookups)
        parts = (
            _KEY_VERSION,
            database_group(queryset.db),
            label,
            kind,
            queryset._iterable_class.__qualname__,
            tuple(getattr(queryset, "_fields", None) or ()),
            # Django 6.1: rows remember how they load what they lack.
            type(getattr(queryset, "_fetch_mode", None)).__qualname__,
            prefetches,
            *extra,
        )
        try:
            # The pickled query is the whole query, as Django holds it: equal bytes, equal
            # SQL. Pickling costs a fraction of compiling (no SQL is built).
            blob = _key_bytes((parts, query))
        except Exception:
            statement = _statement(queryset)  # an unpicklable value: key by the SQL
            blob = repr((parts, statement)).encode()
        self.digest = hashlib.sha256(blob).hexdigest()[:40]
        self.structure = (
            label,
            kind,
            tuple(query.alias_map),
            repr(query.select_related),
            tuple(lookup if isinstance(lookup, str) else lookup[0] for lookup in prefetches),
        )
        self.guess = _guesses.get(self.structure, frozenset())
        self.label = f"{label} ({kind})"

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
        """``run()``'s value and every table its statements read (prefetches included)."""
        statements: list[str] = []

        def catch(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
            statements.append(sql)
            return execute(sql, *args)

        connection = connections[self.queryset.db]
        with connection.execute_wrapper(catch):
            value = run()
        vendor = connection.vendor
        read = frozenset(table for sql in statements for table in analyse(sql, vendor).tables)
        self.learn(read)
        return value, read

    def learn(self, tables: frozenset[str]) -> None:
        if not tables <= self.guess:
            if len(_guesses) >= _GUESSES_KEPT:
                _guesses.clear()
            _guesses[self.structure] = self.guess = self.guess | tables


class _KeyPickler(pickle.Pickler):
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


def _key_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    _KeyPickler(buffer, pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


_KEY_VERSION = f"dbtune-1/{django.get_version()}"
"""In every key: a pickled query means the same SQL only under the same Django."""


def _prefetch_key(lookup: Any) -> Any:
    """A prefetch lookup as a stable key: a ``Prefetch`` by its path, attribute and its
    queryset's query (its default repr is an address, new on every call)."""
    if isinstance(lookup, str):
        return lookup
    inner = lookup.queryset
    query = (inner._iterable_class.__qualname__, inner.query) if inner is not None else None
    return (lookup.prefetch_through, lookup.to_attr, query)


def _check_timeout(where: str, timeout: Any) -> None:
    if timeout is not None and (
        not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise DbtuneError(
            f"{where}(timeout=...) takes a positive number of seconds, not {timeout!r}."
        )


def _same(value: Any) -> Any:
    return value


def _through(
    alias: str,
    digest: str,
    guess: frozenset[str],
    exact: Callable[[], frozenset[str]],
    compute: Callable[[], tuple[Any, frozenset[str]]],
    timeout: int | None,
    lock: bool | None,
    encode: Callable[[Any], Any] = _same,
    decode: Callable[[Any], Any] = _same,
    label: str = "",
) -> Any:
    """The cached value, or ``compute()``'s, stored when it may be (as ``encode(value)``,
    served as ``decode(stored)``); ``label`` names the read in the toolbar panel.

    ``guess``: the tables the value probably reads (their generations are read with the
    entry, in one round trip); ``exact()``: the tables it reads, asked only on a miss with
    nothing guessed (none: do not cache); ``compute()``: the value and the tables it read.

    The generations are read before ``compute`` runs and the value is stored under them
    only: a write that raced the computation has already replaced them.
    """
    started = time.perf_counter()
    written = written_in_transaction(alias)
    if guess & written:
        return _bypass(compute, label, started)
    entry = store.entry_key(digest)
    group = database_group(alias)
    found = store.lookup(entry, group, guess)
    if found is None:
        return _bypass(compute, label, started)
    snapshot, hit = found
    if hit is not None and not written.intersection(hit[0]):
        value = decode(hit[1])
        events.read("hit", label, time.perf_counter() - started, hit[2])
        return value
    if not guess:
        tables = exact()
        if not tables or tables & written or not store.extend(snapshot, group, tables):
            return _bypass(compute, label, started)
    locking = conf.CACHE_LOCK if lock is None else lock
    held = locking and store.acquire(entry)
    if locking and not held:
        # Another reader is computing this entry: wait briefly for it, then do it here.
        value = store.wait_for(entry, snapshot, conf.CACHE_LOCK_WAIT)
        if value is not _MISSING:
            events.read("hit", label, time.perf_counter() - started)
            return decode(value)
    try:
        computing = time.perf_counter()
        value, read = compute()
        seconds = time.perf_counter() - computing
        # Tables read beyond those whose generations were read first: store nothing now
        # (a write to them may have raced); the next miss reads them first.
        if read and read <= snapshot.tokens.keys() and not connections[alias].in_atomic_block:
            stored = encode(value)
            timeout = timeout or conf.CACHE_TIMEOUT
            if store.store(entry, snapshot, read, stored, timeout, seconds):
                events.stored(stored)
    finally:
        if held:
            store.release(entry)
    events.read("miss", label, time.perf_counter() - started)
    return value


def _bypass(compute: Callable[[], tuple[Any, frozenset[str]]], label: str, started: float) -> Any:
    value = compute()[0]
    events.read("database", label, time.perf_counter() - started)
    return value


def _fetch_cached(queryset: Any) -> None:
    """Fill ``_result_cache`` (and the prefetches) from the cache, or from the database and
    then the cache. Leaves it empty when the cache cannot be used, so Django fetches."""
    if not conf.CACHE_ENABLED or queryset.query.select_for_update:
        return  # a locking read must reach the database
    alias = queryset.db
    plan = _Plan(queryset, "rows", ())

    def fetch() -> list[Any]:
        queryset._result_cache = list(queryset._iterable_class(queryset))
        if queryset._prefetch_related_lookups and not queryset._prefetch_done:
            queryset._prefetch_related_objects()
        return cast(list[Any], queryset._result_cache)

    rows = _through(
        alias,
        plan.digest,
        plan.guess,
        plan.exact,
        lambda: plan.reading(fetch),
        queryset._dbtune_timeout,
        queryset._dbtune_lock,
        encode=pack if queryset._iterable_class is ModelIterable else _same,
        decode=lambda stored: unpack(stored, getattr(queryset, "_fetch_mode", None)),
        label=plan.label,
    )
    if queryset._known_related_objects and queryset._result_cache is not rows:
        _relink(queryset, rows)
    queryset._result_cache = rows
    queryset._prefetch_done = True


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


def _value(
    queryset: Any,
    kind: str,
    extra: Sequence[Any],
    compute: Callable[[], Any],
    like: Callable[[], Any] | None = None,
) -> Any:
    """``count()``, ``exists()`` or ``aggregate()`` of a cached queryset."""
    if not conf.CACHE_ENABLED:
        return compute()
    plan = _Plan(queryset, kind, extra)
    return _through(
        queryset.db,
        plan.digest,
        plan.guess,
        lambda: plan.exact(like),
        lambda: plan.reading(compute),
        queryset._dbtune_timeout,
        queryset._dbtune_lock,
        label=plan.label,
    )


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
                using,
                digest,
                tables,
                lambda: tables,
                lambda: (function(*args, **kwargs), tables),
                timeout,
                lock,
                label=f"@cached {label}",
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
        events.invalidated(group, tuple(tables), "invalidate()")


__all__ = ["CachedManager", "CachedQuerySet", "CachedQuerySetMixin", "cached", "invalidate"]
