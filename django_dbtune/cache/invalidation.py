"""Every write invalidates the tables it wrote: from the ORM's signals and from the SQL itself.

A watcher sits in every database connection's ``execute_wrappers`` (the same mechanism the
capture layer uses): a statement that can write (INSERT, UPDATE, DELETE, TRUNCATE, ...) is
parsed (sqlglot, once per statement text) and the tables it writes get new generations once
it has run. So
``QuerySet.update()``, ``QuerySet.delete()``, ``bulk_create``, ``bulk_update``, raw cursor
writes and ``TRUNCATE`` are seen as well as ``save()``. ``post_save`` and ``m2m_changed``
invalidate too. ``post_delete`` is deliberately not listened to: a receiver for it turns off
Django's fast deletes for every model (the deletion collector then fetches every related
row first), and every DELETE passes the watcher anyway.

Inside ``atomic()`` a write invalidates at once (for other processes) and again when the
transaction commits (a reader elsewhere may have stored the old rows in between); the
transaction's own reads of the tables it wrote skip the cache.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_save

from django_dbtune.cache import events
from django_dbtune.cache.store import store
from django_dbtune.conf import conf
from django_dbtune.sql import analyse

_seen = threading.local()
"""Per thread: the tables the SQL watcher invalidated since the last ``post_save``, by alias
(so a save, which the watcher has always seen already, costs one round trip, not two)."""

_WRITTEN = "_dbtune_cache_written"
"""On a connection while a transaction runs: (its outermost Atomic, the tables written, by
the savepoints open at the time). By savepoint, because Django drops the on-commit
callbacks of a savepoint that rolls back: a later write of the same table registers again."""


def database_group(alias: str) -> str:
    """The name under which ``alias``'s tables have their generations."""
    groups = conf.CACHE_DATABASE_GROUPS
    if alias in groups:
        return groups[alias]
    return _same_database(alias)


@lru_cache(maxsize=64)
def _same_database(alias: str) -> str:
    """The first alias with the same engine, name, host and port (a replica defined as the
    same database, or a test mirror), else ``alias`` itself."""

    def where(name: str) -> tuple[Any, ...]:
        settings = connections.settings.get(name, {})
        mirror = settings.get("TEST", {}).get("MIRROR")
        if mirror:
            return where(mirror)
        return tuple(str(settings.get(key, "")) for key in ("ENGINE", "NAME", "HOST", "PORT"))

    if alias not in connections.settings:
        return alias  # Django's own maintenance connection (PostgreSQL's "__no_db__")
    own = where(alias)
    return next((name for name in connections.settings if where(name) == own), alias)


def invalidate_tables(alias: str, tables: Iterable[str], via: str = "") -> None:
    """Tables written through ``alias`` (by ``via``, for the toolbar): new generations now,
    and again on commit."""
    tables = tuple(dict.fromkeys(tables))
    if not tables or not conf.CACHE_ENABLED:
        return
    group = database_group(alias)
    store.invalidate(group, tables)
    events.invalidated(alias, tables, via)
    connection = connections[alias]
    if connection.in_atomic_block:
        by_savepoint = _written(connection, create=True)
        written = by_savepoint.setdefault(tuple(connection.savepoint_ids), set())
        fresh = set(tables) - written
        if fresh:
            written.update(fresh)
            transaction.on_commit(lambda: store.invalidate(group, fresh), using=alias)


def _written(connection: BaseDatabaseWrapper, create: bool = False) -> dict[Any, set[str]]:
    outer = connection.atomic_blocks[0] if connection.atomic_blocks else None
    block, by_savepoint = getattr(connection, _WRITTEN, (None, {}))
    if block is not outer:
        by_savepoint = {}
        if create:
            setattr(connection, _WRITTEN, (outer, by_savepoint))
    return by_savepoint


def written_in_transaction(alias: str) -> set[str]:
    """Tables the open transaction on ``alias`` wrote (empty outside one)."""
    connection = connections[alias]
    if not connection.in_atomic_block:
        return set()
    return set().union(*_written(connection).values())


def model_tables(model: type[Model]) -> list[str]:
    """A model's table and, with multi-table inheritance, its parents' tables."""
    concrete = model._meta.concrete_model or model
    meta = concrete._meta
    return [meta.db_table, *(parent._meta.db_table for parent in meta.get_parent_list())]


# --- The SQL watcher ------------------------------------------------------------------------


_MAY_WRITE = (
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "MERGE",
    "REPLACE",
    "WITH",
    "COPY",
    "/*",  # a leading comment: the parser looks past it
    "--",
)


def _watch_writes(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    result = execute(sql, params, many, context)
    head = sql[:8].upper()
    if sql[:1].isspace():
        head = sql.lstrip()[:8].upper()
    connection = context["connection"]
    # Only what can write a table is parsed: not SELECT, and not SAVEPOINT/RELEASE/SET,
    # whose texts change with every savepoint (each would be a parse). Django's
    # maintenance connection (PostgreSQL's "__no_db__") has no alias of its own.
    if (
        head.startswith(_MAY_WRITE)
        and conf.CACHE_ENABLED
        and connection.alias in connections.settings
    ):
        statement = analyse(sql, connection.vendor, params is not None)
        if statement.written_tables:
            invalidate_tables(connection.alias, statement.written_tables, statement.shape)
            seen = getattr(_seen, "tables", None)
            if seen is None:
                seen = _seen.tables = {}
            seen.setdefault(connection.alias, set()).update(statement.written_tables)
    return result


def _install(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if _watch_writes not in connection.execute_wrappers:
        connection.execute_wrappers.append(_watch_writes)


# --- The ORM's signals ------------------------------------------------------------------------


def _saved(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    seen = getattr(_seen, "tables", {}).pop(using, set())
    tables = model_tables(sender)
    if not seen.issuperset(tables):
        invalidate_tables(using, tables, f"post_save of {sender._meta.label}")


def _m2m_changed(sender: type[Model], action: str, using: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        invalidate_tables(
            using, model_tables(sender), f"m2m_changed ({action}) of {sender._meta.label}"
        )


def connect() -> None:
    """Watch every connection, open or to come, and the ORM's write signals (from ready())."""
    connection_created.connect(_install, dispatch_uid="django_dbtune.cache")
    for connection in connections.all(initialized_only=True):
        _install(connection)
    post_save.connect(_saved, dispatch_uid="django_dbtune.cache.save")
    m2m_changed.connect(_m2m_changed, dispatch_uid="django_dbtune.cache.m2m")
