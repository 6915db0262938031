"""What the query cache did, summed over every process: per model (or ``@cached`` function)
its hits, misses, reads sent to the database and stores, with the size of a sample of the
entries stored; per table its invalidations. ``manage.py dbtune_cache stats`` shows them.

Each process counts in memory (a lock and a dict update per read) and adds its counts to
the cache backend at most every :data:`FLUSH_SECONDS` (one ``incr`` per changed counter),
on its next read or invalidation after that, and when it exits. So the figures lag by up
to that much, and a process killed without exiting loses at most that much. Sending never
raises: counts that cannot be sent are dropped.
"""

from __future__ import annotations

import atexit
import hashlib
import pickle
import threading
import time
from typing import Any

from django_dbtune.cache import primary
from django_dbtune.cache.tables import key_prefix, table_key
from django_dbtune.conf import conf

FLUSH_SECONDS = 10.0
"""The longest a process keeps counts before adding them to the backend (when it is busy)."""
SAMPLE_EVERY = 16
"""One store in this many is pickled once more to learn its size (and the first store of
each model or function after each flush)."""

_READS = {"hit": "hits", "miss": "misses", "database": "database"}
COUNTERS = ("hits", "misses", "database", "stores", "sampled_stores", "sampled_bytes")
"""Per model or function; per table there is ``invalidations``."""


class Tally:
    """This process's counts not yet added to the backend."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._flushed_at = time.monotonic()
        self._stores = 0
        self._sampled: set[str] = set()
        """Subjects with a store sampled since the last flush."""

    def read(self, subject: str, result: str) -> None:
        """A read of ``subject``: ``result`` is hit, miss or database."""
        self._add(subject, _READS[result])

    def stored(self, subject: str, value: Any) -> None:
        self._add(subject, "stores")
        self._stores += 1
        if self._stores % SAMPLE_EVERY == 1 or subject not in self._sampled:
            self._sampled.add(subject)
            try:
                size = len(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
            except Exception:
                return
            self._add(subject, "sampled_stores")
            self._add(subject, "sampled_bytes", size)

    def invalidated(self, tables: tuple[str, ...]) -> None:
        for table in tables:
            self._add(f"table {table_key(table)}", "invalidations")

    def _add(self, subject: str, counter: str, n: int = 1) -> None:
        key = (subject, counter)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n
        if time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Add this process's counts to the backend's. Never raises."""
        with self._lock:
            counts, self._counts = self._counts, {}
            self._flushed_at = time.monotonic()
            self._sampled = set()
        if not counts:
            return
        from django_dbtune.cache.store import store

        if not store.usable():
            return  # the backend failed a moment ago: no request waits on it for figures
        try:
            from django.core.cache import caches

            backend = caches[conf.CACHE_ALIAS]
            for (subject, counter), n in counts.items():
                _increment(backend, counter_key(subject, counter), n)
            # Read every time (a reset elsewhere empties the list), and read back after
            # writing it (another process may have written its own list meanwhile).
            subjects = {subject for subject, _ in counts}
            for _ in range(3):
                listed = set(primary.get(backend, subjects_key()) or ())
                if subjects <= listed:
                    break
                backend.set(subjects_key(), sorted(listed | subjects), timeout=None)
        except Exception:  # the figures are a nicety: never a reason for a request to fail
            return


def _increment(backend: Any, key: str, n: int) -> None:
    """Add ``n`` to a counter, made when missing (``incr`` of a missing key raises, and not
    the same error on every backend: django-valkey's cluster backend raises TypeError)."""
    try:
        backend.incr(key, n)
    except Exception:
        if not backend.add(key, n, timeout=None):
            backend.incr(key, n)


def counter_key(subject: str, counter: str) -> str:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:24]
    return f"{key_prefix()}:t:{counter}:{digest}"


def subjects_key() -> str:
    return f"{key_prefix()}:t:subjects"


def totals() -> dict[str, dict[str, int]]:
    """Every subject's counters as the backend has them (raises when it does not answer)."""
    from django.core.cache import caches

    backend = caches[conf.CACHE_ALIAS]
    subjects = list(primary.get(backend, subjects_key()) or ())
    wanted = {
        counter_key(subject, counter): (subject, counter)
        for subject in subjects
        for counter in (("invalidations",) if subject.startswith("table ") else COUNTERS)
    }
    found = primary.get_many(backend, list(wanted))
    result: dict[str, dict[str, int]] = {subject: {} for subject in subjects}
    for key, (subject, counter) in wanted.items():
        result[subject][counter] = int(found.get(key) or 0)
    return result


def reset() -> None:
    """Zero every counter (raises when the backend does not answer)."""
    from django.core.cache import caches

    backend = caches[conf.CACHE_ALIAS]
    subjects = list(primary.get(backend, subjects_key()) or ())
    keys = [counter_key(s, c) for s in subjects for c in (*COUNTERS, "invalidations")]
    backend.delete_many([*keys, subjects_key()])


tally = Tally()
atexit.register(tally.flush)
