"""Writes that reach the database through a cursor without passing Django's execute
wrappers, where the write watcher (:mod:`.hooks`) sees every other statement:

- ``cursor.callproc(name, ...)``: a stored procedure may write any table, so every entry is
  retired (now and at commit), as for ``CALL``;
- psycopg 3's ``cursor.copy("COPY t FROM STDIN")`` and psycopg2's ``copy_from(file, "t")``
  and ``copy_expert("COPY t FROM STDIN", file)``: the table is retired when the copy ends
  (every entry when the statement cannot be read, for example a ``psycopg.sql.Composed``);
  ``COPY ... TO`` only reads.

Installed with the cache's other hooks, on Django's ``CursorWrapper`` (the class every
``connection.cursor()`` returns): ``callproc`` is replaced, the copy methods are added and
hand the call to the driver's cursor as its ``__getattr__`` did. With ``DEBUG`` on, the
cursor is PostgreSQL's ``CursorDebugWrapper``, whose own ``copy``/``copy_expert`` (which log
the statement) hide those: they are wrapped in turn. Taken out again by :func:`uninstall`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.backends.utils import CursorWrapper

from django_dbtune.cache.invalidation import invalidate_everything, invalidate_tables

_django_callproc = CursorWrapper.callproc

_COPY = re.compile(
    r"\s*COPY\s+((?:\"[^\"]+\"|[\w$]+)(?:\.(?:\"[^\"]+\"|[\w$]+))?)\s*(?:\([^)]*\))?\s*(FROM|TO)\b",
    re.IGNORECASE,
)


def callproc(self: CursorWrapper, procname: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return _django_callproc(self, procname, *args, **kwargs)
    finally:
        invalidate_everything(self.db.alias, f"callproc {procname}")


def _watched_copy(copy_of: Callable[..., Any]) -> Callable[..., Any]:
    """psycopg 3's ``copy`` through ``copy_of``: a context manager; what it copies in is
    retired as it ends."""

    def copy(self: CursorWrapper, statement: Any, *args: Any, **kwargs: Any) -> Any:
        copying = copy_of(self, statement, *args, **kwargs)
        return _Copying(copying, lambda: _copied(self.db.alias, statement))

    return copy


def _watched_copy_expert(copy_expert_of: Callable[..., Any]) -> Callable[..., Any]:
    """psycopg2's ``copy_expert`` through ``copy_expert_of``; its table retired after."""

    def copy_expert(self: CursorWrapper, sql: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return copy_expert_of(self, sql, *args, **kwargs)
        finally:
            _copied(self.db.alias, sql)

    return copy_expert


# Django's CursorWrapper hands any other call to the driver's cursor: so do these.
copy = _watched_copy(lambda self, *args, **kwargs: self.cursor.copy(*args, **kwargs))
copy_expert = _watched_copy_expert(
    lambda self, *args, **kwargs: self.cursor.copy_expert(*args, **kwargs)
)


def copy_from(self: CursorWrapper, file: Any, table: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return self.cursor.copy_from(file, table, *args, **kwargs)
    finally:
        invalidate_tables(self.db.alias, (table,), f"copy_from {table}")


class _Copying:
    """psycopg 3's ``Copy``, which retires its table when its block ends."""

    def __init__(self, copying: Any, done: Callable[[], None]) -> None:
        self._copying = copying
        self._done = done

    def __enter__(self) -> Any:
        return self._copying.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self._copying.__exit__(*exc)
        finally:
            self._done()


def _copied(alias: str, statement: Any) -> None:
    text = statement if isinstance(statement, str) else ""
    found = _COPY.match(text)
    if found is None:
        invalidate_everything(alias, "COPY (a statement not read)")
    elif found.group(2).upper() == "FROM":
        invalidate_tables(alias, (found.group(1),), " ".join(text.split())[:200])


_METHODS: dict[str, Callable[..., Any]] = {
    "callproc": callproc,
    "copy": copy,
    "copy_expert": copy_expert,
    "copy_from": copy_from,
}


_DEBUG_WRAPPERS = {"copy": _watched_copy, "copy_expert": _watched_copy_expert}
_django_debug: dict[str, tuple[type, Callable[..., Any]]] = {}
"""PostgreSQL's ``CursorDebugWrapper`` methods replaced while installed, by name: the class
and its own method."""


def _postgres_debug_wrapper() -> type | None:
    """PostgreSQL's ``CursorDebugWrapper`` where a database uses that backend (importing
    it needs psycopg)."""
    if not any("postg" in db.get("ENGINE", "") for db in settings.DATABASES.values()):
        return None
    try:
        from django.db.backends.postgresql.base import CursorDebugWrapper
    except Exception:  # no driver: no PostgreSQL cursor to watch
        return None
    return CursorDebugWrapper


def install() -> None:
    for name, method in _METHODS.items():
        setattr(CursorWrapper, name, method)
    debug = _postgres_debug_wrapper()
    if debug is None:
        return
    for name, wrap in _DEBUG_WRAPPERS.items():
        own = vars(debug).get(name)
        if own is not None and name not in _django_debug:
            _django_debug[name] = (debug, own)
            setattr(debug, name, wrap(own))


def uninstall() -> None:
    for name in _METHODS:
        if name in vars(CursorWrapper):
            delattr(CursorWrapper, name)
    CursorWrapper.callproc = _django_callproc  # type: ignore[method-assign]
    for name, (debug, own) in list(_django_debug.items()):
        setattr(debug, name, own)
        del _django_debug[name]
