"""The Django objects the query cache hooks into, installed only while the cache is on.

While ``DBTUNE["ENABLED"]`` and ``DBTUNE["CACHE_ENABLED"]`` are both true:

- ``watch_writes`` sits in every connection's ``execute_wrappers`` (those open in this thread
  at install time, and every one opened afterwards, through ``connection_created``): a
  statement that can change a table (INSERT, UPDATE, DELETE, TRUNCATE, ALTER, DROP, CREATE,
  RENAME, ...) is parsed (sqlglot, once per statement text) and the tables it changes get new
  generations once it has run. ``QuerySet.update()``, bulk writes, many-to-many changes (their
  through-table INSERT/DELETE), raw cursor writes and schema changes are all seen here. A
  write whose tables it cannot tell, a ``CALL`` or a ``DO`` block retires every entry. Any
  statement that calls a function whose source writes (``SELECT archive_old_orders()``)
  retires what that function may write (:mod:`.dependencies`).
- ``saved`` listens to ``post_save``: a save the watcher has not seen (none, normally; a
  backend whose writes bypass cursors) still invalidates.
- ``migrated`` listens to ``post_migrate``: every table of the migrated app's models gets
  new generations, whatever its migrations' SQL looked like.
- ``SET``, ``RESET``, ``DISCARD`` and ``set_config()`` statements go to :mod:`.search_path`,
  which keeps the ``search_path`` a project set by hand, for the keys.
- ``BaseDatabaseWrapper.commit`` → :func:`commit`: the commit it wraps, then, after a
  transaction the project ran in manual commit mode (``set_autocommit(False)``), the tables it
  wrote get new generations again (Django runs on-commit callbacks of that mode only when
  autocommit comes back on). ``BaseDatabaseWrapper.set_autocommit`` → :func:`set_autocommit`:
  the same when autocommit comes back on (SQLite and MySQL then commit what is open). Every
  other call passes straight through. Both are wrapped at the first install and never taken
  out (see :func:`_wrap_for_good`); with the cache off they only call through.

Deliberately absent: ``m2m_changed`` (a receiver turns off Django's fast ``.add()``, costing
a SELECT per call, and the watcher sees the through table's writes anyway) and
``post_delete`` (a receiver turns off Django's fast deletes for every model).

``install()`` and ``uninstall()`` mirror each other (but for ``commit`` and ``set_autocommit``,
wrapped for good) and may be called any number of times; ``sync()`` follows the settings, on
``setting_changed`` too. A watcher left on a connection another thread holds open does nothing
while the hooks are out, and works again once they are back in (connections belong to their
thread: only the owner changes their wrappers).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished, setting_changed
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.models import Model
from django.db.models.signals import post_migrate, post_save

from django_dbtune.cache import cursor_calls, dependencies, search_path
from django_dbtune.cache.invalidation import (
    committed,
    forget_databases,
    invalidate_everything,
    invalidate_tables,
    model_tables,
    with_database_cascades,
)
from django_dbtune.cache.store import store
from django_dbtune.cache.tables import EVERY_TABLE
from django_dbtune.conf import conf
from django_dbtune.sql import analyse


class _State:
    installed = False


state = _State()
"""Whether the hooks are in (read on every statement by the watchers left in other threads)."""

_seen = threading.local()
"""Per thread: the tables the SQL watcher invalidated since the last ``post_save``, by alias
(so a save, which the watcher has always seen already, costs one round trip, not two)."""

MAY_CHANGE_A_TABLE = (
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "MERGE",
    "REPLACE",
    "WITH",
    "COPY",
    "LOAD",  # MySQL's LOAD DATA / LOAD XML: read for no table, so it retires every entry
    "ALTER",
    "DROP",
    "CREATE",
    "RENAME",
    "/*",  # a leading comment: the parser looks past it
    "--",
    "CALL",
    "REFRESH",
    "DO ",
    "DO$",
    "DO\n",
    "DO\t",
    "EXEC",
)
"""How the statements worth parsing begin. Not SELECT, and not SAVEPOINT/RELEASE/SET, whose
texts change with every savepoint (each would be a parse)."""

WRITES_ANYTHING = ("CALL", "DO ", "DO$", "DO\n", "DO\t", "EXEC")
"""A procedure call or an anonymous block: it may write any table, and names none."""

_LEADING = " \t\r\n("
"""What a statement's first keyword may follow: a parenthesised query is one too."""
_TRAILING = " \t\r\n;"
_EXPLAINS = ("EXPLAIN", "ANALYZE", "ANALYSE")
_EXPLAINED = re.compile(
    r"[\s(]*(?:EXPLAIN|ANALY[SZ]E)\b(?:\s*\([^)]*\)|\s+(?:ANALY[SZ]E|VERBOSE|EXTENDED"
    r"|PARTITIONS|FORMAT\s*=\s*\w+)\b)*\s*",
    re.IGNORECASE,
)
"""What comes before the statement an EXPLAIN reads: PostgreSQL's ``EXPLAIN ANALYZE`` and
``EXPLAIN (ANALYZE, ...)``, and MariaDB's ``ANALYZE`` run it, a write included."""


# --- The hooks ------------------------------------------------------------------------------


def watch_writes(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    result = execute(sql, params, many, context)
    if not state.installed:
        return result
    head = sql[:8].upper()
    if sql[:1].isspace() or sql[:1] == "(":
        head = sql.lstrip(_LEADING)[:8].upper()
    connection = context["connection"]
    # Django's maintenance connection (PostgreSQL's "__no_db__") has no alias of its own.
    if connection.alias not in connections.settings:
        return result
    if head.startswith(search_path.HEADS) or (head.startswith("SELECT") and "set_config" in sql):
        search_path.noticed(connection, sql, params)
    called = dependencies.written_by_calls(connection.alias, sql)
    if called:  # SELECT archive_old_orders(): a function that writes
        shape = " ".join(sql.split())[:200]
        if EVERY_TABLE in called:
            invalidate_everything(connection.alias, shape)
        else:
            invalidate_tables(connection.alias, called, shape)
    if head.startswith(_EXPLAINS):  # EXPLAIN ANALYZE, MariaDB's ANALYZE: it runs the write
        sql = _EXPLAINED.sub("", sql, count=1)
        head = sql.lstrip(_LEADING)[:8].upper()
    # Several statements in one string (psycopg and mysqlclient run them all): parsed
    # whatever the first one is.
    if head.startswith(MAY_CHANGE_A_TABLE) or (";" in sql and ";" in sql.rstrip(_TRAILING)):
        if head.startswith(WRITES_ANYTHING):
            invalidate_everything(connection.alias, " ".join(sql.split())[:200])
            return result
        if head.startswith("REFRESH"):  # PostgreSQL's REFRESH MATERIALIZED VIEW
            view = _refreshed(sql)
            if view:
                invalidate_tables(connection.alias, (view,), " ".join(sql.split())[:200])
            else:
                invalidate_everything(connection.alias, " ".join(sql.split())[:200])
            return result
        if head.startswith(("CREATE", "ALTER", "DROP", "/*", "--")) and _CATALOG_CHANGE.match(sql):
            _catalog_changed(connection, sql)
        statement = analyse(sql, connection.vendor, params is not None)
        if statement.runs_code:  # CALL or DO behind a comment
            invalidate_everything(connection.alias, statement.shape)
        elif statement.written_tables:
            written = statement.written_tables
            if statement.deleted_tables:
                cascaded = with_database_cascades(
                    statement.deleted_tables, every_key=statement.truncate_cascade
                )
                written = tuple(dict.fromkeys((*written, *cascaded)))
            invalidate_tables(connection.alias, written, statement.shape)
            seen = getattr(_seen, "tables", None)
            if seen is None:
                seen = _seen.tables = {}
            seen.setdefault(connection.alias, set()).update(written)
        elif statement.kind == "write":  # a write the parser could not read: which tables?
            invalidate_everything(connection.alias, statement.shape)
    return result


_CATALOG_CHANGE = re.compile(
    r"\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*(?:DROP\b|(?:CREATE|ALTER)\b[^;]*?"
    r"\b(?:VIEW|TRIGGER|FUNCTION|PROCEDURE|RULE|RENAME)\b)",
    re.IGNORECASE | re.DOTALL,
)
"""A schema change that may change what a view reads or a trigger writes (behind leading
comments too): not every CREATE TABLE or ALTER TABLE ... ADD of a migration."""


_PUBLISHED = re.compile(
    r"\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*(?:CREATE|ALTER|DROP)\b[^;]*?"
    r"\b(?:VIEW|TRIGGER|FUNCTION|PROCEDURE|RULE|CASCADE)\b",
    re.IGNORECASE | re.DOTALL,
)
"""The catalog changes other processes are told of (which retires every entry): views,
triggers, functions and rules, and a DROP ... CASCADE that may take views with it; not a
DROP INDEX or a scratch table's DROP TABLE."""


def _catalog_changed(connection: BaseDatabaseWrapper, sql: str) -> None:
    """Views, triggers or functions may have changed: read the catalog again, now and,
    inside a transaction, once it commits (what another thread read meanwhile lacks the
    change); other processes are told once it is committed."""
    alias = connection.alias
    dependencies.forget(alias)
    if not _PUBLISHED.match(sql):
        if connection.in_atomic_block:
            connection.on_commit(lambda: dependencies.forget(alias), robust=True)
    elif connection.in_atomic_block:
        connection.on_commit(lambda: _published(alias), robust=True)
    else:
        store.publish_catalog_change()


def _published(alias: str) -> None:
    dependencies.forget(alias)
    store.publish_catalog_change()


def _refreshed(sql: str) -> str | None:
    """The materialized view ``REFRESH MATERIALIZED VIEW [CONCURRENTLY] name ...`` fills
    (None when the statement says something else)."""
    words = sql.split()
    if [word.upper() for word in words[:3]] != ["REFRESH", "MATERIALIZED", "VIEW"]:
        return None
    rest = words[3:]
    if rest and rest[0].upper() == "CONCURRENTLY":
        rest = rest[1:]
    return rest[0].rstrip(";") if rest else None


def connected(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    search_path.forget(connection)  # a new connection starts from its settings' path
    watch_connection(connection)


def watch_connection(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # First in the list: the outermost wrapper, so a ``with connection.execute_wrapper()``
    # block that ends (it pops the last one) never takes the watcher with it.
    if watch_writes not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, watch_writes)


_wrapped: dict[str, Callable[..., Any]] = {}
"""The ``commit`` and ``set_autocommit`` that :func:`commit` and :func:`set_autocommit` call:
whatever was there when the cache was first installed (Django's own, or another library's
wrapper of it)."""


def commit(self: BaseDatabaseWrapper) -> None:
    _wrapped["commit"](self)
    if state.installed:
        committed(self)


def set_autocommit(self: BaseDatabaseWrapper, autocommit: bool, *args: Any, **kwargs: Any) -> None:
    _wrapped["set_autocommit"](self, autocommit, *args, **kwargs)
    if autocommit and state.installed:
        committed(self)  # SQLite and MySQL commit an open transaction as autocommit comes on


def _wrap_for_good() -> None:
    """Wrap ``commit`` and ``set_autocommit`` once, for good: taking them out again would
    drop any wrapper another library put around them since (and wrapping again later would
    stack). While the cache is off they only call what they wrap."""
    if not _wrapped:
        for name, replacement in (("commit", commit), ("set_autocommit", set_autocommit)):
            _wrapped[name] = getattr(BaseDatabaseWrapper, name)
            setattr(BaseDatabaseWrapper, name, replacement)


def saved(sender: type[Model], instance: Model, using: str, **kwargs: Any) -> None:
    seen = getattr(_seen, "tables", {}).pop(using, set())
    tables = model_tables(sender)
    if not seen.issuperset(tables):
        invalidate_tables(using, tables, f"post_save of {sender._meta.label}")


def migrated(sender: AppConfig, using: str, **kwargs: Any) -> None:
    dependencies.forget(using)
    store.publish_catalog_change()
    tables = [
        table
        for model in sender.get_models(include_auto_created=True)
        for table in model_tables(model)
    ]
    invalidate_tables(using, tables, f"post_migrate of {sender.label}")


# --- In and out -----------------------------------------------------------------------------


def request_ended(**kwargs: Any) -> None:
    """The thread's stores sent without waiting are settled before it serves another request
    (its connection goes back to the pool; under ASGI the thread may end)."""
    store.settle_stores()


_SIGNALS = (
    (connection_created, connected, "django_dbtune.cache.connection"),
    (post_save, saved, "django_dbtune.cache.save"),
    (post_migrate, migrated, "django_dbtune.cache.migrate"),
    (request_finished, request_ended, "django_dbtune.cache.request"),
)
"""Every signal the cache listens to (with ``execute_wrappers``, ``commit`` and the cursor
methods of :mod:`.cursor_calls`, all it touches)."""


def install() -> None:
    """Watch every connection, open or to come, and the ORM's signals."""
    for signal, receiver, uid in _SIGNALS:
        signal.connect(receiver, dispatch_uid=uid)
    for connection in connections.all(initialized_only=True):
        watch_connection(connection)
    cursor_calls.install()
    _wrap_for_good()
    state.installed = True


def uninstall() -> None:
    """Take out everything ``install()`` put in (this thread's connections)."""
    state.installed = False
    cursor_calls.uninstall()
    for signal, receiver, uid in _SIGNALS:
        signal.disconnect(receiver, dispatch_uid=uid)
    for connection in connections.all(initialized_only=True):
        if watch_writes in connection.execute_wrappers:
            connection.execute_wrappers.remove(watch_writes)


def wanted() -> bool:
    """Whether the settings ask for the cache: its write watcher is in then, even while a
    wrong setting keeps reads off (:attr:`.conf.Settings.cache_watching`)."""
    try:
        return conf.cache_watching
    except ImproperlyConfigured:
        return False


def sync() -> None:
    """Hooks in while the settings turn the cache on, out otherwise."""
    if wanted():
        install()
    else:
        uninstall()


def _dbtune_changed(setting: str, **kwargs: Any) -> None:
    if setting == "DBTUNE":
        dependencies.forget()
        sync()
    elif setting == "DATABASES":
        forget_databases()
        dependencies.forget()


def follow_settings() -> None:
    """Install now if the cache is on, and again whenever ``DBTUNE`` changes (from ready())."""
    setting_changed.connect(_dbtune_changed, dispatch_uid="django_dbtune.cache.settings")
    sync()
