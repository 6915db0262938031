"""Writers and readers of one book's version, for the query cache's concurrency test: the
test's threads run them, and so do other processes (started with spawn).

A write commits the next version through one of several paths, under a lock shared by every
process so that versions commit in order. A read goes through the cache and counts as stale
when it returns a version older than the one committed before it started.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

PATHS = ("save", "update", "bulk_update", "raw", "atomic")


def write_version(path: str, version: int) -> None:
    from django.db import connection, transaction

    from tests.shop.models import Book

    summary = f"{version:08d}"
    if path == "save":
        book = Book.objects.get(title="B00")
        book.summary = summary
        book.save()
    elif path == "update":
        Book.objects.filter(title="B00").update(summary=summary)
    elif path == "bulk_update":
        book = Book.objects.get(title="B00")
        book.summary = summary
        Book.objects.bulk_update([book], ["summary"])
    elif path == "raw":
        with connection.cursor() as cursor:
            cursor.execute("UPDATE shop_book SET summary = %s WHERE title = %s", [summary, "B00"])
    else:
        with transaction.atomic():
            Book.objects.filter(title="B00").update(summary=summary)


def write(committed: Any) -> None:
    """Commit the next version (``committed`` is a multiprocessing Value)."""
    with committed.get_lock():
        version = committed.value + 1
        write_version(PATHS[version % len(PATHS)], version)
        committed.value = version


def read(committed: Any) -> tuple[int, bool]:
    """(the version read through the cache, whether it was stale)."""
    from tests.shop.models import Book

    before = committed.value
    (summary,) = Book.cached_objects.filter(title="B00").cached().values_list("summary", flat=True)
    version = int(summary or 0)
    return version, version < before


MIN_READS = 101
MIN_WRITES = 11
LONGEST = 60.0


def keep_going(start: float, seconds: float, enough: bool) -> bool:
    """Go on for ``seconds``, then until ``enough`` work was done, at most ``LONGEST``."""
    elapsed = time.monotonic() - start
    return elapsed < seconds or (not enough and elapsed < LONGEST)


def work(
    database: str,
    ready: Any,
    go: Any,
    committed: Any,
    stale: Any,
    reads: Any,
    writes: Any,
    seconds: float,
) -> None:
    """In another process: write (one time in four) and read at random for ``seconds``, and
    on until the processes together made ``MIN_READS`` reads and ``MIN_WRITES`` writes (a busy
    machine is slower, not a reason to test less), at most ``LONGEST`` seconds."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DBTUNE_PG_NAME"] = database
    import django

    django.setup()
    with ready.get_lock():
        ready.value += 1
    go.wait()
    start = time.monotonic()
    while keep_going(start, seconds, reads.value >= MIN_READS and writes.value >= MIN_WRITES):
        if random.random() < 0.25:
            write(committed)
            with writes.get_lock():
                writes.value += 1
            continue
        _, was_stale = read(committed)
        with reads.get_lock():
            reads.value += 1
        if was_stale:
            with stale.get_lock():
                stale.value += 1
