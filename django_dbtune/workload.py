"""Workloads: the queries a site really runs, recorded as query shapes, for the index advisor.

A workload file is JSON lines, one line per (database, SQL text) with how often it ran, its
total and longest time, the lines of code that ran it and, for ORM queries, the fields the
ORM's own ``Query`` filters and sorts by. Processes append to one file (under a lock);
reading merges the lines, so a file written by several processes or runs is one workload.

No parameter value is stored unless asked (``DBTUNE["WORKLOAD_PARAMS"] = True``, or
``record(params=True)``): values may be personal data. The SQL kept is Django's, with its
``%s`` placeholders, not the values.

Sources:
- ``with record("workload.jsonl"):`` around any code;
- ``DBTUNE["WORKLOAD_FILE"]`` with ``CaptureMiddleware``: every request, flushed every few
  seconds and at exit;
- ``pytest --dbtune-record=PATH``: a whole test run.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connections

from django_dbtune.capture import QueryLog, add_wrapper, capture_queries, jsonable, remove_wrapper
from django_dbtune.conf import conf
from django_dbtune.errors import DbtuneError
from django_dbtune.orm_use import OrmUse, compiler_of, describe, equal_values
from django_dbtune.sql import without_page

try:
    import fcntl
except ImportError:  # Windows: one write per flush, without a lock between processes
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("django_dbtune.workload")

__all__ = ["OrmUse", "Recorder", "Shape", "WorkloadError", "read", "record"]

FORMAT_VERSION = 1


class WorkloadError(DbtuneError):
    """A workload file that cannot be read."""


@dataclass
class Shape:
    """Every run of one SQL text on one database."""

    database: str
    vendor: str
    sql: str
    kind: str
    tables: list[str]
    calls: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    call_sites: Counter[str] = field(default_factory=Counter)
    orm: OrmUse | None = None
    params: list[Any] | None = None
    """One representative parameter set, only when recording was asked to keep one."""
    constants: dict[str, Any] | None = None
    """Fields every call compared to the same value (kept only with parameters, opt-in)."""
    placeholders: str = "%s"
    """``%s`` (Django's, as recorded) or ``$`` (``$1, $2...``: from pg_stat_statements)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.database, without_page(self.sql))

    def merge(self, other: Shape) -> None:
        self.calls += other.calls
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)
        self.call_sites.update(other.call_sites)
        self.orm = self.orm or other.orm
        self.params = self.params if self.params is not None else other.params
        if self.constants is not None and other.constants is not None:
            self.constants = {
                name: value
                for name, value in self.constants.items()
                if name in other.constants and other.constants[name] == value
            }
        else:
            self.constants = self.constants if self.constants is not None else other.constants

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "database": self.database,
            "vendor": self.vendor,
            "sql": self.sql,
            "kind": self.kind,
            "tables": self.tables,
            "calls": self.calls,
            "total_ms": round(self.total_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "call_sites": dict(self.call_sites.most_common()),
            "orm": self.orm.as_dict() if self.orm else None,
        }
        if self.params is not None:
            data["params"] = self.params
        if self.constants:
            data["constants"] = self.constants
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shape:
        shape = cls(
            database=str(data["database"]),
            vendor=str(data["vendor"]),
            sql=str(data["sql"]),
            kind=str(data["kind"]),
            tables=[str(t) for t in data["tables"]],
            calls=int(data["calls"]),
            total_ms=float(data["total_ms"]),
            max_ms=float(data["max_ms"]),
            call_sites=Counter({str(k): int(v) for k, v in data["call_sites"].items()}),
            orm=OrmUse.from_dict(data["orm"]) if data.get("orm") else None,
            params=list(data["params"]) if data.get("params") is not None else None,
            constants=dict(data["constants"]) if data.get("constants") else None,
        )
        if shape.calls < 1 or shape.total_ms < 0:
            raise ValueError("calls must be positive and times not negative")
        return shape


# --- Recording --------------------------------------------------------------------------------


class Recorder:
    """Query shapes gathered in memory, appended to a file by ``flush()``."""

    def __init__(
        self, path: str | os.PathLike[str], params: bool = False, store: str | None = None
    ) -> None:
        self.path = Path(path)
        self.params = params
        self.store = store
        """A cache alias: flushes go there (every process and host), not to ``path``."""
        self.shapes: dict[tuple[str, str], Shape] = {}
        self._orm: dict[str, OrmUse | None] = {}
        self._values: dict[str, dict[str, tuple[Any, bool]]] = {}
        """With parameters kept: per SQL text, each field's first value and whether it varied."""
        self._lock = threading.Lock()
        self._logged: set[tuple[str, str]] = set()

    def note_orm(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        """An execute wrapper: what the ORM query behind each new SQL text filters by."""
        if sql not in self._orm or (self.params and self._orm[sql] is not None):
            compiler = compiler_of(sys._getframe(1))
            try:
                if sql not in self._orm:
                    self._orm[sql] = describe(compiler.query) if compiler is not None else None
                if self.params and compiler is not None:
                    self._note_values(sql, equal_values(compiler.query))
            except Exception:  # a query shape this reader does not know: no ORM detail
                self._orm[sql] = None
        return execute(sql, params, many, context)

    def _note_values(self, sql: str, values: dict[str, Any]) -> None:
        seen = self._values.get(sql)
        if seen is None:
            self._values[sql] = {name: (value, False) for name, value in values.items()}
            return
        for name, (first, varied) in list(seen.items()):
            if not varied and (name not in values or values[name] != first):
                seen[name] = (first, True)

    @contextmanager
    def watching(self, aliases: Iterable[str] | None = None) -> Iterator[None]:
        """Note the ORM query behind each statement run meanwhile (on this thread)."""
        installed = []
        for alias in aliases if aliases is not None else conf.DATABASES:
            add_wrapper(connections[alias], self.note_orm, first=True)
            installed.append(connections[alias])
        try:
            yield
        finally:
            for connection in installed:
                remove_wrapper(connection, self.note_orm)

    def add(self, log: QueryLog) -> None:
        with self._lock:
            for record in log:
                if record.error is not None:
                    continue
                key = (record.alias, without_page(record.sql))
                shape = self.shapes.get(key)
                if shape is None:
                    shape = self.shapes[key] = Shape(
                        record.alias,
                        record.vendor,
                        record.sql,
                        record.kind,
                        list(record.tables),
                        orm=self._orm.get(record.sql),
                    )
                    if self.params and not record.many:
                        shape.params = jsonable(record.params)
                if self.params and record.sql in self._values:
                    shape.constants = {
                        name: value
                        for name, (value, varied) in self._values[record.sql].items()
                        if not varied
                    }
                milliseconds = record.duration * 1000
                shape.calls += 1
                shape.total_ms += milliseconds
                shape.max_ms = max(shape.max_ms, milliseconds)
                shape.call_sites[record.call_site or "(unknown)"] += 1

    def flush(self) -> int:
        """Append the shapes gathered since the last flush; how many lines were written.
        Raises ``OSError`` when the file cannot be written; the shapes are kept for the
        next flush then."""
        with self._lock:
            shapes, self.shapes = self.shapes, {}
        if not shapes:
            return 0
        text = "".join(json.dumps(shape.as_dict()) + "\n" for shape in shapes.values())
        if self.store is not None:
            try:
                write_store(self.store, text)
            except Exception:  # the cache's own errors (Redis down): no common class
                self._keep(shapes)
                raise
            return len(shapes)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as file:
                if fcntl is not None:  # other processes append to the same file
                    fcntl.flock(file, fcntl.LOCK_EX)
                file.write(text)
                file.flush()  # closing the file lets go of the lock
        except (OSError, ValueError):
            self._keep(shapes)
            raise
        return len(shapes)

    def flush_quietly(self) -> int:
        """:meth:`flush` for a request or the process's exit, which must never fail because
        of the workload: a file that cannot be written is logged (once per path and error)."""
        try:
            return self.flush()
        except Exception as error:  # a file (OSError; ValueError: a NUL), or the cache
            where = f"cache {self.store!r}" if self.store is not None else str(self.path)
            problem = (where, type(error).__name__)
            if problem not in self._logged:
                self._logged.add(problem)
                logger.error(
                    "Could not write the workload to %s (%s: %s). Requests go on and their "
                    "query shapes are kept in memory; set DBTUNE['WORKLOAD_FILE'] to a file "
                    "this process can write (or DBTUNE['WORKLOAD_STORE'] to a cache it can "
                    "reach), or to None. (Logged once.)",
                    where,
                    type(error).__name__,
                    getattr(error, "strerror", None) or error,
                )
            return 0

    def _keep(self, shapes: dict[tuple[str, str], Shape]) -> None:
        """Put back shapes a flush could not write, under any gathered since."""
        with self._lock:
            for key, shape in shapes.items():
                newer = self.shapes.get(key)
                if newer is not None:
                    shape.merge(newer)
                self.shapes[key] = shape


@contextmanager
def record(
    path: str | os.PathLike[str],
    params: bool | None = None,
    using: Iterable[str] | None = None,
    store: str | None = None,
) -> Iterator[Recorder]:
    """``with record(path):`` appends the workload of the enclosed code to ``path`` (with
    ``store``, a cache alias, to that cache instead). ``params=True`` keeps one parameter set
    per shape (default ``DBTUNE["WORKLOAD_PARAMS"]``)."""
    recorder = Recorder(path, conf.WORKLOAD_PARAMS if params is None else params, store)
    with capture_queries(using) as log, recorder.watching(using):
        try:
            yield recorder
        finally:
            recorder.add(log)
    recorder.flush()


# The recorder behind DBTUNE["WORKLOAD_FILE"]: one per process, flushed every few seconds.
_process_recorder: Recorder | None = None
_flushed_at = 0.0
FLUSH_SECONDS = 5.0


def process_recorder() -> Recorder | None:
    """The recorder for ``DBTUNE["WORKLOAD_STORE"]`` (a cache) or ``["WORKLOAD_FILE"]``, or
    None when neither is set."""
    global _process_recorder
    store, path = conf.WORKLOAD_STORE, conf.WORKLOAD_FILE
    if store is None and path is None:
        return None
    target = Path(path) if store is None and path is not None else Path(os.devnull)
    current = _process_recorder
    if current is None or current.path != target or current.store != store:
        current = _process_recorder = Recorder(target, conf.WORKLOAD_PARAMS, store)
        atexit.register(current.flush_quietly)
    return current


_later: dict[int, threading.Timer] = {}
"""The timer that will write what a recorder (by its id) holds, while one is set."""
_later_lock = threading.Lock()


def add_request(recorder: Recorder, log: QueryLog) -> None:
    """Adds one request's queries; written now when the last write is ``FLUSH_SECONDS`` old,
    else by a timer then, so a server that goes quiet and is stopped in a way that runs no
    exit handler (SIGTERM to runserver) loses at most that much."""
    global _flushed_at
    recorder.add(log)
    now = time.monotonic()
    if now - _flushed_at >= FLUSH_SECONDS:
        _flushed_at = now
        recorder.flush_quietly()
        return
    with _later_lock:
        if id(recorder) not in _later:
            wait = FLUSH_SECONDS - (now - _flushed_at)
            timer = _later[id(recorder)] = threading.Timer(wait, _flush_later, [recorder])
            timer.daemon = True
            timer.start()


def _flush_later(recorder: Recorder) -> None:
    global _flushed_at
    with _later_lock:
        _later.pop(id(recorder), None)
    _flushed_at = time.monotonic()
    recorder.flush_quietly()


# --- The workload store: a cache every process and host writes to -----------------------

STORE_PREFIX = "dbtune:workload:"


def write_store(alias: str, text: str) -> None:
    """One flush of one process: its lines, under a key of their own (no process ever
    rewrites another's)."""
    from django.core.cache import caches

    caches[alias].set(f"{STORE_PREFIX}{os.getpid()}:{uuid.uuid4().hex}", text, timeout=None)


def read_store(alias: str) -> list[Shape]:
    """Every shape the processes wrote to the cache ``alias``, merged as ``read`` merges a
    file's lines."""
    from django.core.cache import caches

    cache: Any = caches[alias]
    if not hasattr(cache, "iter_keys"):
        raise WorkloadError(
            f"Cache {alias!r} cannot list its keys, so the workload cannot be read from it: "
            "DBTUNE['WORKLOAD_STORE'] needs django-redis (django_redis.cache.RedisCache)."
        )
    try:
        entries = cache.get_many(list(cache.iter_keys(f"{STORE_PREFIX}*"))).values()
    except Exception as error:  # the cache's own errors (Redis down): no common class
        raise WorkloadError(f"Cannot read the workload from cache {alias!r}: {error}") from None
    merged: dict[tuple[str, str], Shape] = {}
    for text in entries:
        for number, line in enumerate(str(text).splitlines(), 1):
            try:
                shape = Shape.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                raise WorkloadError(
                    f"Cache {alias!r}: line {number} of an entry is not a workload line "
                    f"({_why(error)})."
                ) from None
            if shape.key in merged:
                merged[shape.key].merge(shape)
            else:
                merged[shape.key] = shape
    return sorted(merged.values(), key=lambda shape: -shape.total_ms)


# --- Reading ------------------------------------------------------------------------------


def read(path: str | os.PathLike[str]) -> list[Shape]:
    """Every shape in a workload file, lines of the same (database, SQL) merged."""
    merged: dict[tuple[str, str], Shape] = {}
    for shape in _lines(Path(path)):
        if shape.key in merged:
            merged[shape.key].merge(shape)
        else:
            merged[shape.key] = shape
    return sorted(merged.values(), key=lambda shape: -shape.total_ms)


def _lines(path: Path) -> Iterator[Shape]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise WorkloadError(f"Cannot read the workload file {path}: {error.strerror}.") from None
    except UnicodeDecodeError:
        raise WorkloadError(f"{path} is not a workload file (not UTF-8 text).") from None
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
                raise ValueError(f"not a version-{FORMAT_VERSION} workload line")
            yield Shape.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            truncated = not line.endswith("\n")
            raise WorkloadError(
                f"{path}, line {number}: "
                + (
                    "the line is cut short (was the recording process stopped while writing?)"
                    if truncated
                    else f"not a workload line ({_why(error)})"
                )
                + ". Record the workload again, or remove that line."
            ) from None


def _why(error: Exception) -> str:
    """What is wrong with a line, in words: a KeyError's text is only the key."""
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} in it"
    return str(error)
