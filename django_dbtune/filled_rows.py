"""Rows a queryset received without Django fetching them: the one seam between features.

The query cache fills a queryset's results itself (from the database on a miss, from the
cache on a hit), past ``QuerySet._fetch_all``. The N+1 detector must see those rows exactly
as it sees the rows Django fetched, or an N+1 over cached rows is reported as a vague per-row
lookup. Neither feature imports the other: the cache announces here, and the detector
listens here while a detection is open.

With nobody listening, announcing costs one check of an empty tuple.

The other way round, the detector's proofs ask the cache to stand aside while they re-run
a page (:func:`fetched_by_django`): each queryset then evaluates through Django, where the
fix being proven applies, and its queries are counted as they are without a cache.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Listener = Callable[[Any, list[Any]], None]

_listeners: tuple[Listener, ...] = ()
_lock = threading.Lock()


def announce(queryset: Any, rows: list[Any]) -> None:
    """``queryset``'s result cache was just set to ``rows`` by something other than Django."""
    for listener in _listeners:
        listener(queryset, rows)


def listen(listener: Listener) -> None:
    """Call ``listener(queryset, rows)`` for every announcement, until ``stop_listening``."""
    global _listeners
    with _lock:
        if listener not in _listeners:
            _listeners = (*_listeners, listener)


def listeners() -> tuple[Listener, ...]:
    """Who listens now (nobody, unless a feature that needs the rows is on)."""
    return _listeners


def stop_listening(listener: Listener) -> None:
    global _listeners
    with _lock:
        _listeners = tuple(known for known in _listeners if known is not listener)


_django_fetches: ContextVar[bool] = ContextVar("dbtune_django_fetches", default=False)


@contextmanager
def fetched_by_django() -> Iterator[None]:
    """Every queryset evaluated inside is fetched by Django itself: the query cache neither
    serves nor stores it. A proof re-runs a page this way, to see each queryset evaluate
    and count its queries as they are without a cache."""
    token = _django_fetches.set(True)
    try:
        yield
    finally:
        _django_fetches.reset(token)


def django_fetches() -> bool:
    """Whether :func:`fetched_by_django` is in force here."""
    return _django_fetches.get()
