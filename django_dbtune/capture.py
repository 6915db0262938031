"""Query capture: the one recorder every django-dbtune feature reads.

``with capture_queries() as log:`` (or ``async with`` in async code) records every query
run by the current thread or task on every configured database, once, however many
captures are nested. Recording is cheap by construction: a record keeps the raw SQL, the
parameters, the timing and the calling frame; its shape, tables and kind are worked out
only when something asks, and once per distinct SQL text.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from types import CodeType, FrameType, ModuleType, TracebackType
from typing import Any, overload

import asgiref
import django
from asgiref.sync import SyncToAsync, sync_to_async
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.template import base as template_base

import django_dbtune
from django_dbtune.conf import conf
from django_dbtune.errors import CaptureError
from django_dbtune.project import is_installed_file
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
        """``path:line in function``, the path relative to the project root."""
        if self.filename is None:
            return None
        return f"{relative_path(self.filename)}:{self.lineno} in {self.function}"

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


_Site = tuple[str | None, int | None, str | None]
_PASS_THROUGH = frozenset({"__call__", "__acall__", "process_request"})
"""A disowned tool's functions that only hand the request on (django-debug-toolbar's
middleware and panels): a load under them is the request's own, not the tool's."""
_UNKNOWN: _Site = (None, None, None)
# What a file is to find_trigger: the project's, internal, or a tool's own (disowned).
_PROJECT, _INTERNAL, _DISOWNED = 0, 1, 2


# --- Recording ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Active:
    """What the current thread or task records into: the open logs and how to find lines."""

    logs: tuple[QueryLog, ...]
    finder: CallSiteFinder


_active: ContextVar[_Active | None] = ContextVar("django_dbtune_capture", default=None)
_known_site: ContextVar[_Site | None] = ContextVar("django_dbtune_known_site", default=None)


def attribute_to(site: _Site) -> Token[_Site | None]:
    """Record the queries run from here on at ``site`` instead of looking for their line,
    until ``forget_attribution(token)``: for a caller that already walked the stack (the
    N+1 detector knows the template line behind a lazy load)."""
    return _known_site.set(site)


def forget_attribution(token: Token[_Site | None]) -> None:
    _known_site.reset(token)


@contextmanager
def paused() -> Iterator[None]:
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
    known = _known_site.get()
    filename, lineno, function = known or active.finder.find(sys._getframe(1))
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
        self._token = _active.set(_Active(logs, _finder(conf.IGNORED_MODULES)))

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


# --- Call sites ----------------------------------------------------------------------------


def relative_path(filename: str) -> str:
    return _relative_path(filename, conf.PROJECT_ROOT)


@lru_cache(maxsize=4096)
def _relative_path(filename: str, root: Path) -> str:
    try:
        return Path(filename).relative_to(root).as_posix()
    except ValueError:
        return filename


def _package_dir(module: ModuleType) -> str:
    return os.path.dirname(os.path.abspath(str(module.__file__))) + os.sep


def _module_dirs(names: tuple[str, ...]) -> tuple[str, ...]:
    dirs: list[str] = []
    for name in names:
        try:
            spec = find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(os.path.abspath(path) + os.sep for path in spec.submodule_search_locations)
        elif spec is not None and spec.origin:
            dirs.append(os.path.abspath(spec.origin))
    return tuple(dirs)


_ALWAYS_SKIPPED = (_package_dir(django), _package_dir(django_dbtune), _package_dir(asgiref))
# The two ends of a sync_to_async call: the worker thread's entry and the awaited coroutine.
_THREAD_HANDLER: CodeType = SyncToAsync.thread_handler.__code__
_SYNC_TO_ASYNC_CALL: CodeType = SyncToAsync.__call__.__code__

# Node.render_annotated of every node class that defines one: the frame that knows the
# template file and line being rendered.
# Kept as ids: hashing a code object is not cached by Python and costs about a microsecond,
# which a stack walk would pay on every frame. The classes keep these code objects alive.
_TEMPLATE_RENDER: frozenset[int] = frozenset(
    id(cls.__dict__["render_annotated"].__code__)
    for cls in (template_base.Node, *template_base.Node.__subclasses__())
    if "render_annotated" in cls.__dict__
)


class CallSiteFinder:
    """Finds the first frame outside Django, django-dbtune, asgiref and the standard library."""

    def __init__(self, skipped: tuple[str, ...]) -> None:
        self._skipped = skipped
        # What each file is (_PROJECT, _INTERNAL or _DISOWNED), per disowned folders; keyed
        # by file name: a str caches its hash, a code object does not.
        self._kinds: dict[tuple[str, ...], dict[str, int]] = {(): {}}
        self._library_templates: dict[str, bool] = {}

    def is_internal(self, code: CodeType) -> bool:
        """Whether a frame running ``code`` belongs to Django, django-dbtune or the like."""
        filename = code.co_filename
        kinds = self._kinds[()]
        kind = kinds.get(filename)
        if kind is None:
            kind = kinds[filename] = self._kind(filename, ())
        return kind != _PROJECT

    def is_internal_file(self, path: str) -> bool:
        # Installed libraries (site-packages) are never the project's own code: a REST
        # framework serializer's line is not the one to change.
        return path.startswith(self._skipped) or is_installed_file(path)

    def find(self, frame: FrameType | None) -> _Site:
        # This runs for every query: the cached lookup is inlined, and the slow path
        # (is_internal) only classifies a file the first time it is seen.
        kinds = self._kinds[()]
        while frame is not None:
            code = frame.f_code
            kind = kinds.get(code.co_filename)
            if kind is None:
                kind = _INTERNAL if self.is_internal(code) else _PROJECT
            if kind == _PROJECT:
                return code.co_filename, frame.f_lineno, code.co_name
            if code is _THREAD_HANDLER:
                # A sync_to_async worker: the frames above belong to whoever lent the
                # thread, not to the code that asked for this query.
                return self._find_awaiting(frame)
            frame = frame.f_back
        return _UNKNOWN

    def find_trigger(
        self, frame: FrameType | None, disowned: tuple[str, ...] = ()
    ) -> _Site | None:
        """Like ``find``, but a template's line when Django's template engine comes first.

        A lazy load in ``{{ book.author.name }}`` runs inside the template engine; the
        line worth showing is the template's, not the view's ``render()`` call. None when
        code under a ``disowned`` folder comes first (a tool's own rendering).
        """
        kinds = self._kinds.get(disowned)
        if kinds is None:
            kinds = self._kinds[disowned] = {}
        while frame is not None:
            code = frame.f_code
            filename = code.co_filename
            kind = kinds.get(filename)
            if kind is None:
                kind = kinds[filename] = self._kind(filename, disowned)
            if kind == _PROJECT:
                return filename, frame.f_lineno, code.co_name
            if kind == _DISOWNED and code.co_name not in _PASS_THROUGH:
                return None
            if id(code) in _TEMPLATE_RENDER:
                node = frame.f_locals.get("self")
                token = getattr(node, "token", None)
                origin = getattr(node, "origin", None)
                if token is not None and origin is not None:
                    name = str(origin.name)
                    library = self._library_templates.get(name)
                    if library is None:
                        library = self._library_templates[name] = self.is_internal_file(name)
                    if not library:
                        return name, token.lineno, "template"
            elif code is _THREAD_HANDLER:
                return self._find_awaiting(frame)
            frame = frame.f_back
        return _UNKNOWN

    def _kind(self, filename: str, disowned: tuple[str, ...]) -> int:
        if disowned and filename.startswith(disowned):
            return _DISOWNED
        return _INTERNAL if self.is_internal_file(filename) else _PROJECT

    def _find_awaiting(self, handler: FrameType) -> _Site:
        """The project line of the coroutine waiting for this sync_to_async worker thread.

        The worker's stack ends in asgiref; the code that awaited it lives in a suspended
        coroutine on the event loop. asgiref hands both sides the same ``task_context``
        list, which tells which waiting coroutine is ours.
        """
        marker = handler.f_locals.get("task_context")
        loop = handler.f_locals.get("loop")
        if marker is None or not isinstance(loop, asyncio.AbstractEventLoop):
            return _UNKNOWN
        try:
            tasks = asyncio.all_tasks(loop)
        except RuntimeError:
            return _UNKNOWN
        for task in tasks:
            site = _UNKNOWN
            awaitable: Any = task.get_coro()
            while awaitable is not None:
                frame = getattr(awaitable, "cr_frame", None) or getattr(
                    awaitable, "ag_frame", None
                )
                if frame is None:
                    break
                if frame.f_code is _SYNC_TO_ASYNC_CALL:
                    if frame.f_locals.get("task_context") is marker:
                        return site
                    break
                if not self.is_internal(frame.f_code):
                    site = (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
                awaitable = _awaited_by(awaitable)
        return _UNKNOWN


def _awaited_by(awaitable: Any) -> Any:
    """What a suspended coroutine or async generator is waiting for, if it is code."""
    awaited = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
    if (
        awaited is not None
        and not hasattr(awaited, "cr_frame")
        and not hasattr(awaited, "ag_frame")
    ):
        # ``async for`` awaits an asend object, which only the garbage collector's
        # referents link to its async generator.
        awaited = next((ref for ref in gc.get_referents(awaited) if inspect.isasyncgen(ref)), None)
    return awaited


def call_site_finder() -> CallSiteFinder:
    """The finder capture uses, for features that need a line of their own."""
    return _finder(conf.IGNORED_MODULES)


@lru_cache(maxsize=8)
def _finder(ignored_modules: tuple[str, ...]) -> CallSiteFinder:
    return CallSiteFinder(_ALWAYS_SKIPPED + _module_dirs(ignored_modules))


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return repr(value) if not isinstance(value, bytes | memoryview) else f"<{len(value)} bytes>"
