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


STRESS_PATHS = (
    *PATHS,
    "raw_cast",
    "qualified",
    "upper_case",
    "function",
    "procedure",
    "do_block",
    "callproc",
    "trigger",
)
"""Every write path of the stress test (PostgreSQL): raw SQL the watcher must read past
casts, schema names and case; a function a SELECT calls; a procedure (CALL, callproc); an
anonymous block; a trigger of another table (made by :func:`create_stress_objects`)."""

STRESS_SQL = {
    "raw_cast": "UPDATE shop_book SET summary = %s::text WHERE title = %s::text",
    "qualified": "UPDATE public.shop_book SET summary = %s WHERE title = %s",
    "upper_case": "UPDATE SHOP_BOOK SET SUMMARY = %s WHERE TITLE = %s",
    "function": "SELECT dbtune_stress_set(%s, %s)",
    "procedure": "CALL dbtune_stress_proc(%s, %s)",
    "trigger": "INSERT INTO dbtune_stress_note (summary, title) VALUES (%s, %s)",
}


def create_stress_objects() -> None:
    """The function, procedure and trigger the stress test writes through."""
    from django.db import connection

    body = "UPDATE shop_book SET summary = s WHERE title = t"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION dbtune_stress_set(s text, t text) RETURNS void "
            f"LANGUAGE sql AS $$ {body} $$"
        )
        cursor.execute(
            f"CREATE PROCEDURE dbtune_stress_proc(s text, t text) LANGUAGE sql AS $$ {body} $$"
        )
        cursor.execute("CREATE TABLE dbtune_stress_note (summary text, title text)")
        cursor.execute(
            "CREATE FUNCTION dbtune_stress_note_written() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN UPDATE shop_book SET summary = NEW.summary WHERE title = NEW.title; "
            "RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER dbtune_stress_note_after AFTER INSERT ON dbtune_stress_note "
            "FOR EACH ROW EXECUTE FUNCTION dbtune_stress_note_written()"
        )


def drop_stress_objects() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS dbtune_stress_note")
        cursor.execute("DROP FUNCTION IF EXISTS dbtune_stress_note_written()")
        cursor.execute("DROP PROCEDURE IF EXISTS dbtune_stress_proc(text, text)")
        cursor.execute("DROP FUNCTION IF EXISTS dbtune_stress_set(text, text)")


def write_version(path: str, version: int) -> None:
    from django.db import connection, transaction

    from tests.shop.models import Book

    summary = f"{version:08d}"
    if path in STRESS_SQL:
        with connection.cursor() as cursor:
            cursor.execute(STRESS_SQL[path], [summary, "B00"])
    elif path == "do_block":
        with connection.cursor() as cursor:
            cursor.execute(
                "DO $$ BEGIN UPDATE shop_book SET summary = "
                f"'{summary}' WHERE title = 'B00'; END $$"
            )
    elif path == "callproc":
        with connection.cursor() as cursor:
            cursor.callproc("dbtune_stress_set", [summary, "B00"])
    elif path == "save":
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


def write(committed: Any, paths: tuple[str, ...] = PATHS) -> None:
    """Commit the next version (``committed`` is a multiprocessing Value) through the next
    of ``paths`` (every path in turn, whichever process writes)."""
    with committed.get_lock():
        version = committed.value + 1
        write_version(paths[version % len(paths)], version)
        committed.value = version


def read(committed: Any) -> tuple[int, bool]:
    """(the version read through the cache, whether it was stale)."""
    from tests.shop.models import Book

    # Without the lock, which a writer holds while its write (and its invalidation, which
    # may wait for an unreachable backend) runs: a reader must not wait out an outage here.
    before = committed.get_obj().value
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
    os.environ["DBTUNE_PG_NAME"] = os.environ["DBTUNE_MARIADB_NAME"] = database
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


def start(processes: list[Any], ready: Any, seconds: float = 60.0) -> None:
    """Start ``processes`` and wait until each has said it is ready (at most ``seconds``)."""
    for process in processes:
        process.start()
    deadline = time.monotonic() + seconds
    while ready.value < len(processes) and time.monotonic() < deadline:
        time.sleep(0.05)


def write_unseen(database: str, location: str, title: str) -> None:
    """In another process, whose cache backend (at ``location``) does not answer: rename the
    book "B00". Its invalidation fails, and is lost when the process ends."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DBTUNE_PG_NAME"] = os.environ["DBTUNE_MARIADB_NAME"] = database
    os.environ["DBTUNE_REDIS_URL"] = location
    import django

    django.setup()
    from tests.shop.models import Book

    Book.objects.filter(title="B00").update(title=title)


def stress(
    database: str,
    caches: dict[str, Any],
    dbtune: dict[str, Any],
    ready: Any,
    go: Any,
    counts: Any,
    committed: Any,
    seconds: float,
) -> None:
    """In another process of the stress test: with the test's settings, write through
    every path (one time in four) and read through the cache, at random, for ``seconds``.
    ``counts`` is an array: reads, stale reads, writes."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DBTUNE_PG_NAME"] = os.environ["DBTUNE_MARIADB_NAME"] = database
    import django

    django.setup()
    from django.test.utils import override_settings

    with override_settings(CACHES=caches, DBTUNE=dbtune):
        with ready.get_lock():
            ready.value += 1
        go.wait()
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            if random.random() < 0.25:
                write(committed, STRESS_PATHS)
                with counts.get_lock():
                    counts[2] += 1
                continue
            _, was_stale = read(committed)
            with counts.get_lock():
                counts[0] += 1
                counts[1] += was_stale


def rename_on_request(
    database: str, caches: dict[str, Any], dbtune: dict[str, Any], pipe: Any
) -> None:
    """In another process with the test's cache settings: for each ``(old, new)`` received
    on ``pipe``, rename that book through the ORM (its invalidation goes to the backend),
    then answer "done"; for ``("read", pk)``, answer that book's title read through the
    cache. Ends on None."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DBTUNE_PG_NAME"] = os.environ["DBTUNE_MARIADB_NAME"] = database
    import django

    django.setup()
    from django.test.utils import override_settings

    from tests.shop.models import Book

    with override_settings(CACHES=caches, DBTUNE=dbtune):
        pipe.send("ready")
        while (asked := pipe.recv()) is not None:
            if asked[0] == "read":  # ("read", pk): the title, through the cache
                pipe.send(Book.cached_objects.cached().get(pk=asked[1]).title)
                continue
            old, new = asked
            Book.objects.filter(title=old).update(title=new)
            pipe.send("done")
