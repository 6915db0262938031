"""The read-through: the cached value when it is still valid, else computed and stored.

Querysets and ``@cached`` functions both come here with a key, the tables their value
probably reads, and how to compute it. The store's breaker sends everything to the database
while the backend fails; the stampede lock lets one reader compute a missing entry while
the others wait for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import connections

from django_dbtune.cache import dependencies, events, search_path
from django_dbtune.cache.dependencies import with_read_tables
from django_dbtune.cache.invalidation import (
    clashes,
    database_group,
    in_manual_commit,
    written_in_transaction,
)
from django_dbtune.cache.snapshot import Snapshot
from django_dbtune.cache.store import store
from django_dbtune.cache.tally import tally
from django_dbtune.cache.tokens import changed_within
from django_dbtune.conf import conf
from django_dbtune.errors import DbtuneError


def check_timeout(where: str, timeout: Any) -> None:
    if timeout is not None and (
        not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise DbtuneError(
            f"{where}(timeout=...) takes a positive whole number of seconds, not {timeout!r}."
        )


Served = list[tuple[str, tuple[str, ...]]]
"""Entries served from the cache, as (their database group, the tables they read)."""

_serving: ContextVar[tuple[Served, ...]] = ContextVar("dbtune_serving", default=())


@contextmanager
def noting_served() -> Iterator[Served]:
    """What cached values the body is served: a cached queryset computed around them (a
    ``Prefetch`` of a cached queryset inside a cached one) read their tables with no query
    of its own."""
    served: Served = []
    token = _serving.set((*_serving.get(), served))
    try:
        yield served
    finally:
        _serving.reset(token)


def _note_served(group: str, tables: tuple[str, ...]) -> None:
    for served in _serving.get():
        served.append((group, tables))


def as_is(value: Any) -> Any:
    return value


def read_through(
    alias: str,
    digest: str,
    guess: frozenset[str],
    exact: Callable[[], frozenset[str]],
    compute: Callable[[], tuple[Any, frozenset[str]]],
    timeout: int | None,
    lock: bool | None,
    encode: Callable[[Any], Any] = as_is,
    decode: Callable[[Any], Any] = as_is,
    label: str = "",
    subject: str = "",
) -> Any:
    """The cached value, or ``compute()``'s, stored when it may be (as ``encode(value)``,
    served as ``decode(stored)``); ``label`` names the read in the toolbar panel,
    ``subject`` what ``dbtune_cache stats`` counts it under (a model, a function).

    ``guess``: the tables the value probably reads (their generations are read with the
    entry, in one round trip); ``exact()``: the tables it reads, asked only on a miss with
    nothing guessed (none: do not cache); ``compute()``: the value and the tables it read.

    The generations are read before ``compute`` runs and the value is stored under them
    only: a write that raced the computation has already replaced them.
    """
    started = time.perf_counter()
    connection = connections[alias]
    if in_manual_commit(connection) or search_path.set_by_hand(connection) == search_path.UNKNOWN:
        # The project's own transaction: what it reads may never be committed, and the
        # tables it wrote are retired for others only when it commits. Or a search_path
        # changed in a way that cannot be told: which schema the SQL reads is not known.
        return _bypass(compute, label, subject, started)
    asked = guess
    guess = with_read_tables(alias, asked)
    written = written_in_transaction(alias)
    if clashes(written, guess):
        return _bypass(compute, label, subject, started)
    entry = store.entry_key(digest)
    group = database_group(alias)
    found = store.lookup(entry, group, guess)
    if found is None:
        return _bypass(compute, label, subject, started)
    snapshot, hit = found
    if dependencies.notice(snapshot.catalog):
        # Another process changed views, triggers or functions (and retired every entry
        # stored before): what this read depends on is asked again of the catalog.
        guess = with_read_tables(alias, asked)
        missing = [table for table in guess if table not in snapshot.tokens]
        if clashes(written, guess) or not store.extend(snapshot, group, missing):
            return _bypass(compute, label, subject, started)
    if hit is not None and not clashes(written, hit[0]):
        _note_served(group, hit[0])
        value = decode(hit[1])
        events.read("hit", label, time.perf_counter() - started, hit[2])
        tally.read(subject, "hit")
        return value
    if not guess:
        tables = with_read_tables(alias, exact())
        if not tables or clashes(written, tables) or not store.extend(snapshot, group, tables):
            return _bypass(compute, label, subject, started)
    locking = conf.CACHE_LOCK if lock is None else lock
    held = locking and store.acquire(entry)
    try:
        if locking:
            # Holding the lock: the reader that held it before may have stored the entry
            # since our lookup missed. Not holding it: another reader is computing the
            # entry; wait briefly for it, then do it here.
            again = (
                store.stored_entry(entry, snapshot)
                if held
                else store.wait_for(entry, snapshot, conf.CACHE_LOCK_WAIT)
            )
            if again is not None and not clashes(written, again[0]):
                _note_served(group, again[0])
                events.read("hit", label, time.perf_counter() - started, again[2])
                tally.read(subject, "hit")
                return decode(again[1])
        computing = time.perf_counter()
        value, read = compute()
        read = with_read_tables(alias, read)
        seconds = time.perf_counter() - computing
        # Tables read beyond those whose generations were read first: store nothing now
        # (a write to them may have raced); the next miss reads them first.
        if (
            read
            and read <= snapshot.tokens.keys()
            and not connections[alias].in_atomic_block
            and not _replica_behind(alias, group, snapshot, read)
        ):
            stored = encode(value)
            timeout = timeout or conf.CACHE_TIMEOUT
            if store.store(entry, snapshot, read, stored, timeout, seconds):
                events.stored(stored)
                tally.stored(subject, stored)
    finally:
        if held:
            store.release(entry)
    events.read("miss", label, time.perf_counter() - started)
    tally.read(subject, "miss")
    return value


def _replica_behind(alias: str, group: str, snapshot: Snapshot, read: frozenset[str]) -> bool:
    """A read through a replica (an alias grouped under another) of tables written within
    ``CACHE_REPLICA_LAG``: the replica may have answered with the rows from before the
    write, which must not be stored under the write's generation."""
    lag = conf.CACHE_REPLICA_LAG
    return alias != group and lag > 0 and changed_within(snapshot, read, lag)


def _bypass(
    compute: Callable[[], tuple[Any, frozenset[str]]], label: str, subject: str, started: float
) -> Any:
    value = compute()[0]
    events.read("database", label, time.perf_counter() - started)
    tally.read(subject, "database")
    return value
