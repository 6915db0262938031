"""Query capture: the one recorder every django-dbtune feature reads.

``with capture_queries() as log:`` (or ``async with`` in async code) records every query
run by the current thread or task on every configured database, once, however many
captures are nested. Recording is cheap by construction: a record keeps the raw SQL, the
parameters, the timing and the calling frame; its shape, tables and kind are worked out
only when something asks, and once per distinct SQL text.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, overload

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from django_dbtune.call_sites import CallSiteFinder, Site, finder_for, relative_path
from django_dbtune.conf import conf
from django_dbtune.errors import CaptureError
from django_dbtune.sql import Kind, Statement, analyse

__all__ = ["QueryLog", "QueryRecord", "ShapeSummary", "capture_queries"]


@dataclass(slots=True, eq=False)
class QueryRecord:
    """One query as the database saw it, and the line of project code that ran it."""

    alias: str
    vendor: str
    sql: str
    params: Any
    many: bool
    duration: float
    """Seconds, measured around the database call only."""
    in_transaction: bool
    filename: str | None
    lineno: int | None
    function: str | None
    error: str | None = None
    """The exception's class name when the query failed."""

    @property
    def statement(self) -> Statement:
        return analyse(self.sql, self.vendor, self.params is not None)

    @property
    def shape(self) -> str:
        """The SQL with literals replaced, so equal shapes group."""
        return self.statement.shape

    @property
    def kind(self) -> Kind:
        return self.statement.kind

    @property
    def is_write(self) -> bool:
        return self.statement.kind == "write"

    @property
    def tables(self) -> tuple[str, ...]:
        return self.statement.tables

    @property
    def written_tables(self) -> tuple[str, ...]:
        return self.statement.written_tables

    @property
    def call_site(self) -> str | None:
        """``path:line in function`` (``path:line`` for a template's line), the path relative
        to the project root."""
        if not self.filename:  # (the N+1 detector's loads from no line it could name)
            return None
        site = f"{relative_path(self.filename)}:{self.lineno}"
        return site if self.function == "template" else f"{site} in {self.function}"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "database": self.alias,
            "sql": self.sql,
            "params": jsonable(self.params),
            "many": self.many,
            "duration_ms": round(self.duration * 1000, 3),
            "kind": self.kind,
            "tables": list(self.tables),
            "shape": self.shape,
            "in_transaction": self.in_transaction,
            "call_site": self.call_site,
            "error": self.error,
        }


@dataclass(slots=True)
class ShapeSummary:
    """All the queries of one shape on one database."""

    alias: str
    shape: str
    kind: Kind
    tables: tuple[str, ...]
    records: list[QueryRecord] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def duration(self) -> float:
        return sum(record.duration for record in self.records)

    @property
    def call_sites(self) -> list[tuple[str, int]]:
        """Each call site with how many of these queries it ran, most first."""
        sites = Counter(record.call_site or "(unknown)" for record in self.records)
        return sites.most_common()

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.alias,
            "shape": self.shape,
            "kind": self.kind,
            "tables": list(self.tables),
            "count": self.count,
            "duration_ms": round(self.duration * 1000, 3),
            "call_sites": [{"call_site": site, "count": n} for site, n in self.call_sites],
        }


class QueryLog(Sequence[QueryRecord]):
    """The queries one capture recorded, in the order they ran."""

    def __init__(self, aliases: Iterable[str] | None = None) -> None:
        self.aliases = frozenset(aliases) if aliases is not None else None
        self.records: list[QueryRecord] = []

    @overload
    def __getitem__(self, index: int) -> QueryRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[QueryRecord]: ...
    def __getitem__(self, index: int | slice) -> QueryRecord | list[QueryRecord]:
        return self.records[index]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[QueryRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"<QueryLog: {len(self.records)} queries>"

    @property
    def reads(self) -> list[QueryRecord]:
        return [record for record in self.records if record.kind == "read"]

    @property
    def writes(self) -> list[QueryRecord]:
        return [record for record in self.records if record.kind == "write"]

    @property
    def duration(self) -> float:
        return sum(record.duration for record in self.records)

    def shapes(self) -> list[ShapeSummary]:
        """Queries grouped by (database, shape), the most repeated first."""
        groups: dict[tuple[str, str], ShapeSummary] = {}
        for record in self.records:
            key = (record.alias, record.shape)
            if key not in groups:
                groups[key] = ShapeSummary(record.alias, record.shape, record.kind, record.tables)
            groups[key].records.append(record)
        return sorted(groups.values(), key=lambda group: (-group.count, -group.duration))


# --- Recording ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Active:
    """What the current thread or task records into: the open logs and how to find lines."""

    logs: tuple[QueryLog, ...]
    finder: CallSiteFinder


_active: ContextVar[_Active | None] = ContextVar("django_dbtune_capture", default=None)


class _Attribution(threading.local):
    """The line the queries run from here on belong to, when a caller already walked the
    stack for them (the N+1 detector knows the template line behind a lazy load): capture
    records them there instead of looking for their line. Per thread, not per context: it
    is set and put back around synchronous code only (the ORM runs no event loop), and a
    plain attribute costs a tenth of a context variable's set and reset, which the detector
    paid twice per lazy load."""

    site: Site | None = None


attribution = _Attribution()
"""``previous = attribution.site; attribution.site = site``, then put ``previous`` back."""


@contextmanager
def unrecorded() -> Iterator[None]:
    """Run the enclosed queries unrecorded by any open capture (a tool's own queries, such
    as the toolbar's EXPLAINs, are not the request's)."""
    token = _active.set(None)
    try:
        yield
    finally:
        _active.reset(token)


# --- Execute wrappers ------------------------------------------------------------------------

_WRAPPER_USERS = "dbtune_wrapper_users"
"""On a connection: how many open users each of our execute wrappers has."""


def add_wrapper(
    connection: BaseDatabaseWrapper, wrapper: Callable[..., Any], *, first: bool = False
) -> None:
    """Put ``wrapper`` in the connection's ``execute_wrappers`` for one more user.

    Counted per connection: concurrent captures in one async context run their queries on
    the same worker thread's connection, so the first to close must not take the wrapper
    away from the others. ``first`` puts it outermost (it then sees the statement before the
    other wrappers do)."""
    users: dict[Any, int] = connection.__dict__.setdefault(_WRAPPER_USERS, {})
    if wrapper not in connection.execute_wrappers:
        if first:
            connection.execute_wrappers.insert(0, wrapper)
        else:
            connection.execute_wrappers.append(wrapper)
        users[wrapper] = 0
    users[wrapper] = users.get(wrapper, 0) + 1


def remove_wrapper(connection: BaseDatabaseWrapper, wrapper: Callable[..., Any]) -> None:
    """One user of ``wrapper`` is done; the last one takes it out."""
    users: dict[Any, int] = connection.__dict__.setdefault(_WRAPPER_USERS, {})
    left = users.get(wrapper, 1) - 1
    if left > 0:
        users[wrapper] = left
        return
    users.pop(wrapper, None)
    if not users:
        del connection.__dict__[_WRAPPER_USERS]
    if wrapper in connection.execute_wrappers:
        connection.execute_wrappers.remove(wrapper)


def _record(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """The execute wrapper django-dbtune installs on each connection while capturing."""
    active = _active.get()
    if active is None:
        return execute(sql, params, many, context)
    connection = context["connection"]
    if many and params is not None and not isinstance(params, list | tuple):
        params = list(params)  # a generator would be spent by the database
    known = attribution.site
    try:
        filename, lineno, function = known or active.finder.find(sys._getframe(1))
    except Exception:  # the line is a nicety: never a reason for the query to fail
        filename = lineno = function = None
    error = None
    start = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    except Exception as exc:
        error = type(exc).__name__
        raise
    finally:
        record = QueryRecord(
            connection.alias,
            connection.vendor,
            sql,
            params,
            many,
            time.perf_counter() - start,
            connection.in_atomic_block,
            filename,
            lineno,
            function,
            error,
        )
        for log in active.logs:
            if log.aliases is None or record.alias in log.aliases:
                log.records.append(record)


class capture_queries:
    """Record every query the current code runs, on every database (or those in ``using``).

    ``with capture_queries() as log:`` in sync code, ``async with capture_queries() as log:``
    in async code. Nested captures share one recorder: each query is recorded once and
    appears in every open log. On exit Django's connections are exactly as they were.
    """

    def __init__(self, using: Iterable[str] | None = None) -> None:
        self._aliases = tuple(using) if using is not None else None
        self.log = QueryLog(self._aliases)
        self._installed: list[BaseDatabaseWrapper] = []
        self._token: Token[_Active | None] | None = None

    def __enter__(self) -> QueryLog:
        if _in_event_loop():
            raise CaptureError(
                "capture_queries() was entered with 'with' inside async code, where the "
                "ORM runs its queries on another thread. Use 'async with capture_queries()'."
            )
        self._start()
        try:
            self._install()
        except BaseException:
            self._uninstall()  # the connections installed before the one that failed
            self._stop()
            raise
        return self.log

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._uninstall()
        self._stop()

    async def __aenter__(self) -> QueryLog:
        self._start()
        try:
            # The ORM's async API runs queries on asgiref's thread-sensitive thread, whose
            # connections are not this thread's: install there.
            await sync_to_async(self._install)()
        except BaseException:
            await sync_to_async(self._uninstall)()
            self._stop()
            raise
        return self.log

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await sync_to_async(self._uninstall)()
        self._stop()

    def _start(self) -> None:
        if self._token is not None:
            raise CaptureError("This capture_queries() is already in use; create another.")
        outer = _active.get()
        logs = (outer.logs if outer else ()) + (self.log,)
        self._token = _active.set(_Active(logs, finder_for(conf.IGNORED_MODULES)))

    def _stop(self) -> None:
        if self._token is not None:
            _active.reset(self._token)
            self._token = None

    def _install(self) -> None:
        for alias in self._aliases if self._aliases is not None else conf.DATABASES:
            connection = connections[alias]
            add_wrapper(connection, _record)
            self._installed.append(connection)

    def _uninstall(self) -> None:
        while self._installed:
            remove_wrapper(self._installed.pop(), _record)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return repr(value) if not isinstance(value, bytes | memoryview) else f"<{len(value)} bytes>"
