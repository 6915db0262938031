"""What the query cache did for one request (or any block of code), for the toolbar panel.

Nothing is counted unless ``recording()`` is active in the current context, so the cache pays
one context-variable read per call otherwise.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CacheEvents:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    """Reads that went straight to the database (inside a transaction that wrote their
    tables, or while the cache backend failed)."""
    stores: int = 0
    bytes_stored: int = 0
    seconds_saved: float = 0.0
    """On hits: the time the query took when it was cached, less the time the hit took."""
    reads: list[dict[str, Any]] = field(default_factory=list)
    invalidations: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_current: ContextVar[CacheEvents | None] = ContextVar("django_dbtune_cache_events", default=None)


@contextmanager
def recording() -> Iterator[CacheEvents]:
    events = CacheEvents()
    token = _current.set(events)
    try:
        yield events
    finally:
        _current.reset(token)


def current() -> CacheEvents | None:
    return _current.get()


def read(result: str, label: str, seconds: float, saved: float = 0.0) -> None:
    events = _current.get()
    if events is None:
        return
    if result == "hit":
        events.hits += 1
        events.seconds_saved += max(saved - seconds, 0.0)
    elif result == "miss":
        events.misses += 1
    else:
        events.bypassed += 1
    events.reads.append({"result": result, "query": label, "ms": round(seconds * 1000, 3)})


def stored(value: Any) -> None:
    events = _current.get()
    if events is None:
        return
    events.stores += 1
    with suppress(Exception):  # the backend pickles it its own way; the size is only a hint
        events.bytes_stored += len(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))


def invalidated(database: str, tables: tuple[str, ...], via: str) -> None:
    events = _current.get()
    if events is not None:
        events.invalidations.append({"database": database, "tables": list(tables), "via": via})
