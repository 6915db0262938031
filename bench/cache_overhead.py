"""What a query cache gains on a hit and costs on a miss and a save, against no cache.

PostgreSQL + Redis (DBTUNE_DB=postgres DBTUNE_CACHE=redis). The same models and rows for
every tool: 50 authors, 1,000 books. Operations: a primary-key get and a 50-row
select_related list (served from the cache after the first call), a cold primary-key get
(the model invalidated, untimed, before each timed read), and a save. Tools: none,
django-dbtune (.cached()), django-cachalot (caches every query) and django-cacheops
(.cache()). Each tool runs in its own process (their patches are process-wide); rounds
alternate the tools, and each figure is the median over rounds of tool time / no-cache time
from the same round.

    bench/env.sh 6.1   # a venv with the peer tools (never package dependencies)
    DBTUNE_DB=postgres DBTUNE_CACHE=redis .venv-bench-django6.1/bin/python bench/cache_overhead.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from side_by_side import alternating_rounds, run_worker

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ("pk get, hit", "50-row list, hit", "pk get, cold miss", "save")


def worker(calls: int, batches: int) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.cache_settings"
    import django

    django.setup()
    from django.core.cache import caches
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        caches["default"].clear()
        result = {name: statistics.median(times) for name, times in measure(calls, batches)}
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(json.dumps(result))


def measure(calls: int, batches: int) -> list[tuple[str, list[float]]]:
    from tests.shop.models import Author, Book

    authors = Author.objects.bulk_create([Author(name=f"author {i}") for i in range(50)])
    Book.objects.bulk_create(
        [Book(title=f"book {i}", author=authors[i % 50]) for i in range(1000)]
    )
    tool = os.environ["BENCH_TOOL"]
    pk = Book.objects.order_by("id").values_list("id", flat=True)[500]
    get, listing, invalidate = _api(tool, Book)
    book = Book.objects.get(pk=pk)
    from django.core.cache import caches
    from django.db import connection

    def select_by_pk() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM shop_book WHERE id = %s", [pk])
            cursor.fetchall()

    operations: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]] = {
        "pk get, hit": (lambda: get(pk), None),
        "50-row list, hit": (listing, None),
        "pk get, cold miss": (lambda: get(pk), invalidate),
        "save": (book.save, None),
        # The floor under the figures: one cache round trip against one database one.
        "cache GET": (lambda: caches["default"].get("bench:absent"), None),
        "cursor SELECT": (select_by_pk, None),
    }
    results = []
    for name, (operation, before) in operations.items():
        for _ in range(3):  # warm up (and fill the cache)
            operation()
        times = []
        for _ in range(batches):
            total = 0.0
            for _ in range(calls):
                if before is not None:
                    before()
                start = time.perf_counter()
                operation()
                total += time.perf_counter() - start
            times.append(total / calls)
        results.append((name, times))
    return results


def _api(
    tool: str, book: Any
) -> tuple[Callable[[int], Any], Callable[[], Any], Callable[[], Any]]:
    """(primary-key get, 50-row list, invalidate the model) as each tool is used."""
    if tool == "dbtune":
        from django_dbtune.cache import invalidate

        return (
            lambda pk: book.cached_objects.cached().get(pk=pk),
            lambda: list(
                book.cached_objects.select_related("author").order_by("id")[:50].cached()
            ),
            lambda: invalidate(book),
        )
    if tool == "cacheops":
        from cacheops import invalidate_model

        return (
            lambda pk: book.objects.cache().get(pk=pk),
            lambda: list(book.objects.select_related("author").order_by("id")[:50].cache()),
            lambda: invalidate_model(book),
        )
    plain = (
        lambda pk: book.objects.get(pk=pk),
        lambda: list(book.objects.select_related("author").order_by("id")[:50]),
    )
    if tool == "cachalot":
        from cachalot.api import invalidate as cachalot_invalidate

        return (*plain, lambda: cachalot_invalidate(book))
    return (*plain, lambda: None)


def run(tool: str, calls: int, batches: int) -> dict[str, float]:
    return run_worker(__file__, tool, ["--calls", str(calls), "--batches", str(batches)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.calls, args.batches)
        return
    if os.environ.get("DBTUNE_DB") != "postgres" or os.environ.get("DBTUNE_CACHE") != "redis":
        sys.exit("Run it on PostgreSQL + Redis: DBTUNE_DB=postgres DBTUNE_CACHE=redis.")
    import django

    tools = ["dbtune"] + [t for t in ("cachalot", "cacheops") if importlib.util.find_spec(t)]
    ratios: dict[str, dict[str, list[float]]] = {t: {op: [] for op in OPERATIONS} for t in tools}
    round_trips: list[float] = []
    for times in alternating_rounds(
        args.rounds, tools, lambda tool: run(tool, args.calls, args.batches)
    ):
        round_trips.append(times["none"]["cache GET"] / times["none"]["cursor SELECT"])
        for tool in tools:
            for op in OPERATIONS:
                base = times["none"]["pk get, hit" if op == "pk get, cold miss" else op]
                ratios[tool][op].append(times[tool][op] / base)
    print(
        f"Django {django.get_version()}, Python {sys.version.split()[0]}, PostgreSQL + Redis, "
        f"{args.rounds} rounds; time / no cache (median; below 1 is faster)"
    )
    print(f"{'tool':<14}" + "".join(f"{op:>20}" for op in OPERATIONS))
    for tool in tools:
        name = "django-dbtune" if tool == "dbtune" else f"django-{tool}"
        row = [statistics.median(ratios[tool][op]) for op in OPERATIONS]
        print(f"{name:<14}" + "".join(f"{value:>19.3f}x" for value in row))
    print(
        f"One cache GET round trip takes {statistics.median(round_trips):.2f}x one primary-key "
        "SELECT through a database cursor. A hit makes one cache round trip, a miss two (look "
        "up, store), a save one (invalidate)."
    )
    missing = {"cachalot", "cacheops"} - set(tools)
    for tool in sorted(missing):
        print(f"django-{tool:<7} not installed (bench/env.sh installs it)")


if __name__ == "__main__":
    main()
