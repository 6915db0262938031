"""What a write does to the cache: new generations for the tables it wrote.

``hooks.py`` tells where writes are seen (the SQL of every connection, ``post_save``,
``post_migrate``); this module is what happens then, by alias and transaction.

Inside ``atomic()`` a write invalidates at once (for other processes) and again when the
transaction commits (a reader elsewhere may have stored the old rows in between); the
transaction's own reads of the tables it wrote skip the cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from django_dbtune.cache import events
from django_dbtune.cache.store import store
from django_dbtune.conf import conf
from django_dbtune.errors import DbtuneError

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


def forget_databases() -> None:
    """``settings.DATABASES`` changed: which aliases share a database is asked again."""
    _same_database.cache_clear()


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
    if not tables or not conf.cache_active:
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


def model_named(name: type[Model] | str, where: str) -> type[Model]:
    """A model, or the model ``"app_label.Model"`` names (``where`` tells whose argument)."""
    if isinstance(name, str):
        try:
            return apps.get_model(name)
        except (LookupError, ValueError) as error:
            raise DbtuneError(f"{where} names {name!r}, which is not a model: {error}") from None
    return name


def invalidate(*models_or_tables: type[Model] | str, using: str | None = None) -> None:
    """Retire every cached result that read these models (or ``"app_label.Model"``, or
    table names), on ``using`` or on every database."""
    tables: list[str] = []
    for item in models_or_tables:
        if isinstance(item, str) and "." not in item:
            tables.append(item)
        else:
            tables.extend(model_tables(model_named(item, "invalidate(...)")))
    aliases = [using] if using is not None else list(connections)
    for group in dict.fromkeys(database_group(alias) for alias in aliases):
        store.invalidate(group, tables)
        events.invalidated(group, tuple(tables), "invalidate()")
