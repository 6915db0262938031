"""Tables that change or are read with no statement naming them: what a plain view reads,
what a table's triggers write, and what a function a statement calls writes.

- **Views.** An entry that read a view (a model over it, ``managed = False``) depends on the
  tables the view reads: a write to one of them retires the entry. A materialized view keeps
  its rows until ``REFRESH MATERIALIZED VIEW``, which the write watcher sees, so it is not
  followed through.
- **Triggers.** A write to a table with triggers retires the tables their functions name
  too, and an entry that read a table a trigger writes also depends on the trigger's own
  table (so that a process that has not read the catalog since the trigger was made, and
  does not know it, still retires the entry when it writes there). A trigger function
  that builds its SQL at run time (``EXECUTE``) could write any table: a write to its table
  retires every entry. A function written in C (PostgreSQL's own
  ``tsvector_update_trigger``...) changes the row being written only.
- **Functions that write.** ``SELECT archive_old_orders()`` reads like a query, but the
  function's body writes: a statement that calls a function whose source (or that of a
  function it calls) writes retires the tables that source names, or every entry when it
  builds its SQL at run time.

On PostgreSQL both are read from the catalog (``pg_rewrite``/``pg_depend`` for views,
``pg_trigger``/``pg_proc`` for triggers), on SQLite from ``sqlite_master`` (the views' and
triggers' SQL), on MariaDB and MySQL from ``information_schema`` (the same SQL), once per
process and database, again after a schema change the process ran or a migration, and after
another process published one (:func:`notice`: a token read with every cached read's
generations). ``DBTUNE["CACHE_VIEWS"]`` and
``DBTUNE["CACHE_TRIGGERS"]`` declare the same for any database, added to what the catalog
says. The catalog is read on the raw driver connection, inside a savepoint when a transaction
is open, so that a failure of its own never breaks the project's transaction and no capture
records it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from django_dbtune.cache.tables import EVERY_TABLE, followed, table_key
from django_dbtune.conf import conf
from django_dbtune.sql import analyse

logger = logging.getLogger("django_dbtune.cache")

_VIEWS_SQL = """
SELECT DISTINCT v.relname, t.relname
FROM pg_rewrite r
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_namespace vn ON vn.oid = v.relnamespace
JOIN pg_depend d ON d.objid = r.oid
    AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
JOIN pg_class t ON t.oid = d.refobjid
WHERE v.relkind = 'v' AND t.oid <> v.oid
    AND vn.nspname NOT IN ('pg_catalog', 'information_schema')
    AND vn.nspname NOT LIKE 'pg\\_%%'
"""

_TRIGGERS_SQL = """
SELECT c.relname, l.lanname, p.prosrc
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_proc p ON p.oid = t.tgfoid
JOIN pg_language l ON l.oid = p.prolang
WHERE NOT t.tgisinternal
"""

_FUNCTIONS_SQL = """
SELECT p.proname, l.lanname, p.prosrc
FROM pg_proc p
JOIN pg_language l ON l.oid = p.prolang
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE l.lanname NOT IN ('c', 'internal')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
"""

_TABLES_SQL = """
SELECT c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
"""

_DYNAMIC = re.compile(r"\bEXECUTE\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


@dataclass
class Dependencies:
    views: dict[str, frozenset[str]] = field(default_factory=dict)
    """By view (its table key): the tables it reads, through other views too."""
    triggers: dict[str, frozenset[str]] = field(default_factory=dict)
    """By table (its table key): the other tables its triggers write, or ``{"*"}``."""
    functions: dict[str, frozenset[str]] = field(default_factory=dict)
    """By function name (case-folded): the tables a function that writes may write, or
    ``{"*"}``. Functions that only read are not here."""
    calls: re.Pattern[str] | None = None
    """Finds a call of one of :attr:`functions` in a statement (None: there are none)."""
    writers: dict[str, frozenset[str]] = field(default_factory=dict)
    """By table (its table key): the tables whose triggers write it, step by step; under
    ``"*"`` those whose triggers may write any table."""


_known: dict[str, Dependencies] = {}
_lock = threading.Lock()
_forgotten = 0
"""Counts :func:`forget` calls: a catalog read that one overtook is not kept."""
_INTRANS, _INERROR = 2, 3
"""The driver's transaction status (libpq's, in psycopg 3 and psycopg2 alike): in a
transaction, in a failed one."""


_catalog_seen = ""
"""The last catalog token this process saw in the cache (see :func:`notice`)."""


def notice(token: str) -> bool:
    """A cached read saw the catalog token ``token``: when another process published a
    change since the last one seen here, forget what is known (True)."""
    global _catalog_seen
    if not token or token == _catalog_seen:
        return False
    first = not _catalog_seen
    _catalog_seen = token
    if first and not _known:
        return False  # nothing known yet: it is read when first needed
    forget()
    return True


def forget(alias: str | None = None) -> None:
    """Read the catalog again next time (after a schema change, a migration, new settings)."""
    global _forgotten
    with _lock:
        _forgotten += 1
        if alias is None:
            _known.clear()
        else:
            _known.pop(alias, None)


def of(alias: str) -> Dependencies:
    known = _known.get(alias)
    if known is None:
        with _lock:
            started = _forgotten
        known, complete = _read(alias)
        # Kept only when the catalog was read and no forget() came meanwhile; else the
        # next use reads it again.
        with _lock:
            if complete and _forgotten == started:
                _known[alias] = known
    return known


def with_read_tables(alias: str, tables: frozenset[str]) -> frozenset[str]:
    """What an entry that read ``tables`` depends on: ``tables``, the tables the views
    among them read, and the tables whose triggers write any of those."""
    known = of(alias)
    if not tables or not (known.views or known.writers):
        return tables
    views = known.views
    extra = [views[key] for key in map(table_key, tables) if key in views]
    read = tables.union(*extra) if extra else tables
    writers = known.writers
    if not writers:
        return read
    more = [writers[key] for key in map(table_key, read) if key in writers]
    anything = writers.get(EVERY_TABLE)
    if anything:
        more.append(anything)
    return read.union(*more) if more else read


def written_by_calls(alias: str, sql: str) -> tuple[str, ...]:
    """The tables the functions ``sql`` calls may write (``("*",)``: any table); none for
    a statement that calls no function that writes, which is nearly every one."""
    known = of(alias)
    if known.calls is None:
        return ()
    written: set[str] = set()
    for name in known.calls.findall(sql):
        written |= known.functions.get(name.casefold(), frozenset())
    return (EVERY_TABLE,) if EVERY_TABLE in written else tuple(written)


def with_trigger_tables(alias: str, tables: Iterable[str]) -> tuple[str, ...]:
    """``tables`` and the tables their triggers write, step by step; ``("*",)`` when a
    trigger may write any table."""
    found = followed(tables, of(alias).triggers)
    return (EVERY_TABLE,) if EVERY_TABLE in found else found


def _read(alias: str) -> tuple[Dependencies, bool]:
    """What the catalog and the settings say, and whether the catalog could be read."""
    found = Dependencies()
    complete = True
    connection = connections[alias]
    catalog = _CATALOGS.get(connection.vendor)
    if catalog is not None:
        try:
            views, triggers, functions, tables = catalog(connection)
        except Exception as error:  # a failed transaction, a lost connection: settings only
            complete = False
            _log_once(
                error,
                "django-dbtune could not read the views and triggers of database %r from "
                "its catalog (%s); the query cache follows only DBTUNE['CACHE_VIEWS'] and "
                "DBTUNE['CACHE_TRIGGERS'] there until it can.",
                alias,
            )
        else:
            found.views = _closed(_by_key(views))
            found.triggers = _trigger_writes(triggers, functions, tables)
            found.functions = _function_writes(functions, tables)
            if found.functions:
                names = "|".join(sorted(map(re.escape, found.functions), key=len, reverse=True))
                found.calls = re.compile(rf"\b({names})\s*\(", re.IGNORECASE)
    declared_views = _closed(_declared(_setting("CACHE_VIEWS")))
    for view, read in declared_views.items():
        found.views[view] = found.views.get(view, frozenset()) | read
    for table, written in _declared(_setting("CACHE_TRIGGERS")).items():
        found.triggers[table] = found.triggers.get(table, frozenset()) | written
    found.writers = _writers(found.triggers)
    return found, complete


def _setting(name: str) -> dict[str, tuple[str, ...]]:
    """``DBTUNE[name]`` (``CACHE_VIEWS`` or ``CACHE_TRIGGERS``), or nothing while it is
    wrong: writes still retire their own tables (reads are off then; the checks name it)."""
    try:
        return dict(getattr(conf, name))
    except ImproperlyConfigured:
        return {}


def _writers(triggers: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """The trigger map turned around: by table, the tables whose triggers write it, step
    by step (a trigger that writes a table whose own trigger writes a third)."""
    direct: dict[str, set[str]] = {}
    for table, written in triggers.items():
        for target in written:
            direct.setdefault(table_key(target), set()).add(table)
    return {
        target: frozenset(followed(sources, {k: frozenset(v) for k, v in direct.items()}))
        for target, sources in direct.items()
    }


_logged_at = 0.0


def _log_once(error: BaseException, message: str, alias: str) -> None:
    """The catalog could not be read: said once a minute, not on every read."""
    global _logged_at
    now = time.monotonic()
    if now - _logged_at >= 60:
        _logged_at = now
        logger.warning(message, alias, error)


Rows = list[tuple[str, ...]]


def _catalog(connection: Any) -> tuple[Rows, Rows, Rows, list[str]]:
    """The catalog's rows, read on the driver's connection (no Django wrapper sees them),
    in a savepoint when a transaction is open; not at all in a failed one."""
    connection.ensure_connection()
    raw = connection.connection
    info = getattr(raw, "info", None)  # psycopg 3; psycopg2 has the method below
    status = info.transaction_status if info is not None else raw.get_transaction_status()
    if status == _INERROR:
        raise RuntimeError("the connection's transaction has failed")
    in_transaction = status == _INTRANS
    with raw.cursor() as cursor:
        if in_transaction:
            cursor.execute("SAVEPOINT dbtune_catalog")
        try:
            cursor.execute(_VIEWS_SQL)
            views = [tuple(row) for row in cursor.fetchall()]
            cursor.execute(_TRIGGERS_SQL)
            triggers = [tuple(row) for row in cursor.fetchall()]
            cursor.execute(_FUNCTIONS_SQL)
            functions = [tuple(row) for row in cursor.fetchall()]
            cursor.execute(_TABLES_SQL)
            tables = [row[0] for row in cursor.fetchall()]
        except Exception:
            if in_transaction:
                cursor.execute("ROLLBACK TO SAVEPOINT dbtune_catalog")
                cursor.execute("RELEASE SAVEPOINT dbtune_catalog")
            raise
        if in_transaction:
            cursor.execute("RELEASE SAVEPOINT dbtune_catalog")
    return views, triggers, functions, tables


def _sqlite_catalog(connection: Any) -> tuple[Rows, Rows, Rows, list[str]]:
    """SQLite keeps each view's and trigger's SQL in ``sqlite_master``: a view reads the
    tables its SELECT names; a trigger's body is read like a trigger function's source."""
    connection.ensure_connection()
    rows = connection.connection.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL"
    ).fetchall()
    views: Rows = [
        (name, table)
        for kind, name, _, sql in rows
        if kind == "view"
        for table in analyse(sql, "sqlite", has_params=False).tables
        if table_key(table) != table_key(name)
    ]
    triggers: Rows = [(table, "sql", sql) for kind, _, table, sql in rows if kind == "trigger"]
    tables = [name for kind, name, _, _ in rows if kind in ("table", "view")]
    return views, triggers, [], tables


_MYSQL_CATALOG = (
    "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS"
    " WHERE TABLE_SCHEMA = DATABASE()",
    "SELECT EVENT_OBJECT_TABLE, 'sql', ACTION_STATEMENT FROM information_schema.TRIGGERS"
    " WHERE TRIGGER_SCHEMA = DATABASE()",
    "SELECT ROUTINE_NAME, 'sql', ROUTINE_DEFINITION FROM information_schema.ROUTINES"
    " WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_TYPE = 'FUNCTION'",
    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
)


def _mysql_catalog(connection: Any) -> tuple[Rows, Rows, Rows, list[str]]:
    """MariaDB and MySQL keep each view's SELECT, each trigger's body and each stored
    function's body in ``information_schema``: read as SQLite's are (a view reads the tables
    its SELECT names). Read on the driver's connection: no capture records it, and no read
    of ``information_schema`` breaks a transaction."""
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    try:
        found = []
        for sql in _MYSQL_CATALOG:
            cursor.execute(sql)
            found.append([tuple(str(value or "") for value in row) for row in cursor.fetchall()])
    finally:
        cursor.close()
    defined, triggers, functions, tables = found
    views: Rows = [
        (name, table)
        for name, sql in defined
        for table in analyse(sql, "mysql", has_params=False).tables
        if table_key(table) != table_key(name)
    ]
    return views, triggers, functions, [row[0] for row in tables]


_CATALOGS = {"postgresql": _catalog, "sqlite": _sqlite_catalog, "mysql": _mysql_catalog}
"""How to read each database's views and triggers."""


def _by_key(pairs: Rows) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for view, table in pairs:
        found.setdefault(table_key(view), set()).add(table)
    return {view: frozenset(tables) for view, tables in found.items()}


def _declared(setting: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    return {table_key(name): frozenset(tables) for name, tables in setting.items()}


def _closed(views: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Views over views: every table reached, not only the next view."""
    return {view: frozenset(followed(read, views)) for view, read in views.items()}


def _trigger_writes(
    triggers: Rows, functions: Rows, tables: list[str]
) -> dict[str, frozenset[str]]:
    """By table: what its trigger functions may write. The tables a function's source names,
    with those of the functions it calls, step by step (more than it writes, never fewer);
    every table for one that builds its SQL at run time; none for one in C, which changes
    the row being written only."""
    names = {table_key(table): table for table in tables}
    sources: dict[str, list[str]] = {}
    for name, _, source in functions:
        sources.setdefault(name.casefold(), []).append(source or "")
    found: dict[str, set[str]] = {}
    for table, language, source in triggers:
        key = table_key(table)
        written = found.setdefault(key, set())
        if language in ("c", "internal"):
            continue
        for text in _reached(source or "", sources):
            if _DYNAMIC.search(text):
                written.add(EVERY_TABLE)
                break
            for word in _WORD.findall(text):
                named = names.get(word.casefold())
                if named is not None and table_key(named) != key:
                    written.add(named)
    return {table: frozenset(written) for table, written in found.items() if written}


_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|TRUNCATE|MERGE|COPY)\b", re.IGNORECASE)


def _function_writes(functions: Rows, tables: list[str]) -> dict[str, frozenset[str]]:
    """By function: what it may write, if its source or a function it calls writes (the
    tables they name: more than it writes, never fewer; every table when one builds its
    SQL at run time). Functions that only read are left out."""
    names = {table_key(table): table for table in tables}
    sources: dict[str, list[str]] = {}
    for name, _, source in functions:
        sources.setdefault(name.casefold(), []).append(source or "")
    found: dict[str, frozenset[str]] = {}
    for name, own in sources.items():
        reached = [text for source in own for text in _reached(source, sources)]
        if any(_DYNAMIC.search(text) for text in reached):
            found[name] = frozenset((EVERY_TABLE,))
        elif any(_WRITES.search(text) for text in reached):
            found[name] = frozenset(
                names[word.casefold()]
                for text in reached
                for word in _WORD.findall(text)
                if word.casefold() in names
            )
    return found


def _reached(source: str, sources: dict[str, list[str]]) -> list[str]:
    """``source`` and the sources of the functions it names, and of those they name."""
    reached = [source]
    seen: set[str] = set()
    for text in reached:  # grows while it is read
        for word in _WORD.findall(text):
            called = word.casefold()
            if called in sources and called not in seen:
                seen.add(called)
                reached.extend(sources[called])
    return reached
