"""What a write does to the cache: new generations for the tables it wrote.

``hooks.py`` tells where writes are seen (the SQL of every connection, ``post_save``,
``post_migrate``); this module is what happens then, by alias and transaction.

Inside ``atomic()`` a write invalidates at once (for other processes) and again when the
transaction commits (a reader elsewhere may have stored the old rows in between), all the
tables it wrote in one call; the transaction's own reads of the tables it wrote skip the
cache. The invalidation at once stays for the transactions Django opens for one call
(``delete()``, ``bulk_create()``): their commit may be the project's (manual commit mode),
and on-commit callbacks registered before ours (a ``pre_delete`` handler's) run first.

What a transaction wrote is read from Django's own list of on-commit callbacks, where each
commit-time invalidation waits: a savepoint's rollback drops those registered inside it,
and the transaction's end replaces the list. Nothing is keyed by the ``Atomic`` object,
which ``@transaction.atomic`` reuses for every call of the function it decorates. A
commit-time invalidation that left the list without running (an earlier callback raised,
which makes Django skip the rest) runs when this connection next touches the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from django_dbtune.cache import dependencies, events
from django_dbtune.cache.store import store
from django_dbtune.cache.tables import EVERY_TABLE, followed, table_key
from django_dbtune.cache.tally import tally
from django_dbtune.conf import conf
from django_dbtune.errors import DbtuneError

logger = logging.getLogger("django_dbtune.cache")

_PENDING = "_dbtune_cache_pending"
"""On a connection after a write in a transaction: (Django's list of on-commit callbacks as
last seen, the commit-time invalidations waiting in it)."""


_MANUAL = "_dbtune_cache_manual"
"""On a connection in manual commit mode after a write: {group: tables} to retire again
when the project commits (:func:`committed`)."""


class _OnCommit:
    """Retire ``tables``' generations in ``group`` when the transaction commits (every
    entry, for :data:`EVERY_TABLE`). Runs once, however often it is called."""

    __slots__ = ("group", "ran", "tables")

    def __init__(self, group: str, tables: tuple[str, ...]) -> None:
        self.group = group
        self.tables = tables
        self.ran = False

    def __call__(self) -> None:
        if self.ran:
            return
        self.ran = True
        if EVERY_TABLE in self.tables:
            store.retire_everything_quietly()
        else:
            store.invalidate(self.group, self.tables)


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
        return database_identity(settings)

    if alias not in connections.settings:
        return alias  # Django's own maintenance connection (PostgreSQL's "__no_db__")
    own = where(alias)
    return next((name for name in connections.settings if where(name) == own), alias)


def database_identity(settings: dict[str, Any]) -> tuple[str, str, str, str]:
    """Engine, name, host and port of a ``DATABASES`` entry: equal for two entries that reach
    the same database (an empty ``PORT`` is the driver's default)."""
    engine, name, host, port = (
        str(settings.get(key) or "") for key in ("ENGINE", "NAME", "HOST", "PORT")
    )
    return engine, name, host, port or _DEFAULT_PORTS.get(_vendor_of(engine), "")


_DEFAULT_PORTS = {"postgresql": "5432", "mysql": "3306", "oracle": "1521"}
"""The port a driver connects to when ``PORT`` is empty: the same server as one naming it."""


def _vendor_of(engine: str) -> str:
    if "postg" in engine:
        return "postgresql"
    return "mysql" if "mysql" in engine else "oracle" if "oracle" in engine else ""


def invalidate_tables(alias: str, tables: Iterable[str], via: str = "") -> None:
    """Tables written through ``alias`` (by ``via``, for the toolbar): new generations now,
    and again on commit. Also while a wrong setting keeps this process's reads off."""
    if not conf.cache_watching:
        return
    try:
        _invalidate_tables(alias, tables, via)
    except ImproperlyConfigured as error:  # a setting the store needs: never fail the write
        cannot_retire(error)


def _invalidate_tables(alias: str, tables: Iterable[str], via: str) -> None:
    tables = dependencies.with_trigger_tables(alias, tables)
    if not tables:
        return
    if tables == (EVERY_TABLE,):  # a trigger that may write any table
        invalidate_everything(alias, via)
        return
    group = database_group(alias)
    store.invalidate(group, tables)
    events.invalidated(alias, tables, via)
    tally.invalidated(tables)
    _wait_for_commit(alias, group, tables)


def _wait_for_commit(alias: str, group: str, tables: tuple[str, ...]) -> None:
    """Inside a transaction: retire ``tables`` again when it commits (once per table)."""
    connection = connections[alias]
    if in_manual_commit(connection):
        # Django runs on-commit callbacks of this mode only when autocommit comes back on,
        # which may be long after the commit, or never: the commit itself retires them.
        connection.__dict__.setdefault(_MANUAL, {}).setdefault(group, set()).update(tables)
        return
    pending = _pending(connection)
    if connection.in_atomic_block:
        covered = {table for waiting in pending for table in waiting.tables}
        if EVERY_TABLE in covered:
            return
        fresh = tuple(table for table in tables if table not in covered)
        if fresh and pending and not pending[0].ran:
            pending[0].tables += fresh  # one round trip at commit for the whole transaction
        elif fresh:
            waiting = _OnCommit(group, fresh)
            # Registered as if no savepoint were open (Django's on_commit() would tie it to
            # them): only the transaction's end takes it off the list, so a savepoint's
            # rollback cannot drop it while an earlier write still needs it, and it is
            # how the next look tells this transaction from the next one. Robust: it never
            # stops the callbacks after it.
            nowhere: set[str] = set()
            # Django 5.0+ keeps (savepoints, callback, robust); the stubs know two of them.
            connection.run_on_commit.append((nowhere, waiting, True))  # type: ignore[arg-type]
            connection.__dict__[_PENDING] = (connection.run_on_commit, [*pending, waiting])


def with_database_cascades(tables: tuple[str, ...], every_key: bool = False) -> tuple[str, ...]:
    """``tables`` and every table whose rows the database itself changes when rows of them
    are deleted (Django 6.1's ``DB_CASCADE``, ``DB_SET_NULL``, ``DB_SET_DEFAULT``), step by
    step: no statement names those. ``every_key``: every table with a foreign key to them
    (``TRUNCATE ... CASCADE`` empties those whatever their ``on_delete``)."""
    return followed(tables, _referencing(every_key))


@lru_cache(maxsize=2)
def _referencing(every_key: bool) -> dict[str, tuple[str, ...]]:
    """By table: the tables of the models with a foreign key to it that the database
    follows on delete (Django 6.1's ``DB_*`` rules), or, ``every_key``, with any foreign key
    constraint to it."""
    try:
        from django.db.models.deletion import DatabaseOnDelete
    except ImportError:  # before Django 6.1: no rule the database follows itself
        if not every_key:
            return {}
    found: dict[str, list[str]] = {}
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.concrete_fields:
            remote = field.remote_field
            if remote is None:
                continue
            if every_key:
                followed = getattr(field, "db_constraint", False)
            else:
                followed = isinstance(getattr(remote, "on_delete", None), DatabaseOnDelete)
            if followed:
                parent = table_key(remote.model._meta.db_table)
                found.setdefault(parent, []).extend(model_tables(model))
    return {parent: tuple(dict.fromkeys(children)) for parent, children in found.items()}


def invalidate_everything(alias: str, via: str) -> None:
    """A statement that may write tables it does not name (one the parser cannot read, a
    procedure call): every entry is retired, now and, inside a transaction, at commit."""
    if not conf.cache_watching:
        return
    try:
        store.retire_everything_quietly()
        events.invalidated(alias, ("(every table)",), via)
        tally.invalidated(("(every table)",))
        _wait_for_commit(alias, database_group(alias), (EVERY_TABLE,))
    except ImproperlyConfigured as error:
        cannot_retire(error)


_told: set[str] = set()


def cannot_retire(error: ImproperlyConfigured) -> None:
    """A setting the store needs is wrong: what this process writes is not retired for the
    other processes. Said once per mistake; the write itself goes on."""
    if str(error) not in _told:
        _told.add(str(error))
        logger.error(
            "The query cache cannot retire what this process writes: %s Other processes "
            "may serve old rows until DBTUNE is fixed and the cache is cleared "
            "(manage.py dbtune_cache clear).",
            error,
        )


def _pending(connection: BaseDatabaseWrapper) -> list[_OnCommit]:
    """The commit-time invalidations waiting in the connection's open transaction. Those
    whose transaction ended without running them (an earlier on-commit callback raised,
    which makes Django skip the rest; or it rolled back) run now: the tables of a rollback
    are retired for nothing, once."""
    state = connection.__dict__.get(_PENDING)
    if state is None:
        return []
    listed, registered = state
    waiting = connection.run_on_commit
    if listed is waiting:
        return registered  # type: ignore[no-any-return]
    still = {id(entry[1]) for entry in waiting}
    if any(id(callback) in still for callback in registered):
        connection.__dict__[_PENDING] = (waiting, registered)  # a savepoint rolled back
        return registered  # type: ignore[no-any-return]
    del connection.__dict__[_PENDING]  # the transaction is over
    for callback in registered:
        if not callback.ran:
            callback()
    return []


def in_manual_commit(connection: BaseDatabaseWrapper) -> bool:
    """The project runs the transaction itself (``transaction.set_autocommit(False)``): what
    it writes is committed when it calls ``transaction.commit()``, and Django's atomic blocks
    inside it commit nothing."""
    if connection.connection is None:
        return False  # closed: autocommit comes back on with the next connection
    if connection.in_atomic_block:
        return not connection.commit_on_exit
    return not connection.autocommit


def committed(connection: BaseDatabaseWrapper) -> None:
    """The project committed a transaction it ran in manual commit mode: the tables it wrote
    get new generations again, for what other connections stored in between."""
    written = connection.__dict__.pop(_MANUAL, None)
    if not written or not conf.cache_watching:
        return
    try:
        for group, tables in written.items():
            if EVERY_TABLE in tables:
                store.retire_everything_quietly()
            else:
                store.invalidate(group, sorted(tables))
    except ImproperlyConfigured as error:
        cannot_retire(error)
        return
    events.invalidated(connection.alias, tuple(sorted(set().union(*written.values()))), "commit")


def written_in_transaction(alias: str) -> set[str]:
    """Tables the open transaction on ``alias`` wrote (empty outside one), as the statements
    named them and as :func:`.store.table_key` does; :data:`EVERY_TABLE` among them when
    one may have written any (see :func:`clashes`)."""
    connection = connections[alias]
    if _PENDING not in connection.__dict__:
        return set()
    pending = _pending(connection)
    if not connection.in_atomic_block:
        return set()
    named = {table for waiting in pending for table in waiting.tables}
    return named | {table_key(table) for table in named}


def clashes(written: set[str], tables: Iterable[str]) -> bool:
    """Whether what a transaction wrote (:func:`written_in_transaction`) touches ``tables``."""
    if not written:
        return False
    if EVERY_TABLE in written:
        return True
    return any(table in written or table_key(table) in written for table in tables)


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
        tally.invalidated(tuple(tables))
