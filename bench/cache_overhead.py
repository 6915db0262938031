"""What a query cache gains on a hit and costs on a miss and a save, against no cache.

PostgreSQL + Redis (DBTUNE_DB=postgres DBTUNE_CACHE=redis). The same models and rows for
every tool: 50 authors, 1,000 books. Operations: a primary-key get and a 50-row
select_related list (served from the cache after the first call), a cold primary-key get
(the model invalidated, untimed, before each timed read), and a save.

Each tool runs in a process of its own, and in that process blocks with the tool on and
blocks with it off alternate (the order turns every round), so a ratio compares two blocks
run a moment apart in one process. How each tool is switched off:

- django-dbtune: its settings (``CACHE_ENABLED``), which take its hooks out of Django
  ("dbtune, local": the same with ``CACHE_LOCAL`` on);
- django-cachalot: its own ``unpatch()``, which takes its patches out;
- django-cacheops: plain querysets (no ``.cache()``) under its ``no_invalidation``; its
  patches of Django's queryset cannot be taken out, so its "off" blocks run with them in.

Beside the operations, each round times one Redis round trip (a GET of a missing key
through the cache backend) and one primary-key SELECT through a database cursor: the floor
under every figure (a hit makes one round trip, a miss two, a save one). Loopback round
trips are much slower when the cores are idle than when they are busy; ``--cores busy``
keeps every core busy with a spinning process at the lowest priority, and the output says
which it was.

Each worker empties the cache it uses (``caches["default"]``, database 0 of the test Redis):
run it when no test run shares that Redis.

    DBTUNE_PYTHON=python3.12 bench/env.sh 6.1   # a venv with the peer tools (never dependencies)
    DBTUNE_DB=postgres DBTUNE_CACHE=redis .venv-bench-django6.1/bin/python \\
        bench/cache_overhead.py [--cores idle|busy] [--rounds 15] [--calls 40]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ("pk get, hit", "50-row list, hit", "pk get, cold miss", "save")
NAMES = {
    "dbtune": "django-dbtune",
    "dbtune-local": "dbtune, local",
    "cachalot": "django-cachalot",
    "cacheops": "django-cacheops",
}

Operation = tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any] | None]
"""(with the tool off, with it on, untimed before each call with it on)."""


# --- Worker ----------------------------------------------------------------------------------


def worker(calls: int, rounds: int) -> None:
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
        print(json.dumps(measure(os.environ["BENCH_TOOL"], calls, rounds)))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def measure(tool: str, calls: int, rounds: int) -> dict[str, Any]:
    from django.core.cache import caches
    from django.db import connection

    from tests.shop.models import Author, Book

    authors = Author.objects.bulk_create([Author(name=f"author {i}") for i in range(50)])
    Book.objects.bulk_create(
        [Book(title=f"book {i}", author=authors[i % 50]) for i in range(1000)]
    )
    pk = Book.objects.order_by("id").values_list("id", flat=True)[500]
    book = Book.objects.get(pk=pk)
    switch = SWITCHES[tool]()
    operations = _operations(tool, Book, pk, book)

    def select_by_pk() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM shop_book WHERE id = %s", [pk])
            cursor.fetchall()

    floor = {"cache GET": lambda: caches["default"].get("bench:absent"), "SELECT": select_by_pk}
    ratios: dict[str, list[float]] = {name: [] for name in operations}
    seconds: dict[str, list[float]] = {name: [] for name in (*operations, *floor)}
    for number in range(rounds):
        states = (False, True) if number % 2 == 0 else (True, False)
        for name, (plain, cached, before) in operations.items():
            took = {}
            for on in states:
                switch(on)
                run = cached if on else plain
                took[on] = _block(run, before if on else None, calls)
            ratios[name].append(took[True] / took[False])
            seconds[name].append(took[False])
        switch(False)
        for name, run in floor.items():
            seconds[name].append(_block(run, None, calls))
    return {
        "ratios": ratios,
        "off_us": {name: statistics.median(times) * 1e6 for name, times in seconds.items()},
        "round_trip_per_select": statistics.median(
            trip / select
            for trip, select in zip(seconds["cache GET"], seconds["SELECT"], strict=True)
        ),
    }


def _block(run: Callable[[], Any], before: Callable[[], Any] | None, calls: int) -> float:
    """Seconds per call over ``calls`` calls, after one untimed (a warm-up, and on a hit the
    call that stores the entry)."""
    if before is not None:
        before()
    run()
    total = 0.0
    for _ in range(calls):
        if before is not None:
            before()
        start = time.perf_counter()
        run()
        total += time.perf_counter() - start
    return total / calls


def _operations(tool: str, book_model: Any, pk: int, book: Any) -> dict[str, Operation]:
    def plain_get() -> Any:
        return book_model.objects.get(pk=pk)

    def plain_list() -> list[Any]:
        return list(book_model.objects.select_related("author").order_by("id")[:50])

    get, listing = plain_get, plain_list  # django-cachalot caches the plain queries
    if tool.startswith("dbtune"):
        from django_dbtune.cache import invalidate as forget_model

        def get() -> Any:
            return book_model.cached_objects.cached().get(pk=pk)

        def listing() -> list[Any]:
            rows = book_model.cached_objects.select_related("author").order_by("id")[:50]
            return list(rows.cached())

    elif tool == "cacheops":
        from cacheops import invalidate_model as forget_model

        def get() -> Any:
            return book_model.objects.cache().get(pk=pk)

        def listing() -> list[Any]:
            rows = book_model.objects.select_related("author").order_by("id")[:50]
            return list(rows.cache())

    else:
        from cachalot.api import invalidate as forget_model

    def forget() -> None:
        forget_model(book_model)

    return {
        "pk get, hit": (plain_get, get, None),
        "50-row list, hit": (plain_list, listing, None),
        "pk get, cold miss": (plain_get, get, forget),
        "save": (book.save, book.save, None),
    }


class _DbtuneSwitch:
    def __init__(self, local: bool = False) -> None:
        from django.test.utils import override_settings

        self.override = override_settings(DBTUNE={"CACHE_ENABLED": True, "CACHE_LOCAL": local})
        self.on = False

    def __call__(self, on: bool) -> None:
        if on != self.on:
            (self.override.enable if on else self.override.disable)()
            self.on = on


class _CachalotSwitch:
    def __init__(self) -> None:
        from cachalot import monkey_patch

        self.patches = monkey_patch
        self.on = True  # patched when its app loaded

    def __call__(self, on: bool) -> None:
        if on != self.on:
            (self.patches.patch if on else self.patches.unpatch)()
            self.on = on


class _CacheopsSwitch:
    def __init__(self) -> None:
        from cacheops import no_invalidation

        self.quiet = no_invalidation
        self.on = True

    def __call__(self, on: bool) -> None:
        if on != self.on:
            if on:
                self.quiet.__exit__(None, None, None)
            else:
                self.quiet.__enter__()
            self.on = on


SWITCHES: dict[str, Callable[[], Callable[[bool], None]]] = {
    "dbtune": _DbtuneSwitch,
    "dbtune-local": lambda: _DbtuneSwitch(local=True),
    "cachalot": _CachalotSwitch,
    "cacheops": _CacheopsSwitch,
}


# --- Runner ----------------------------------------------------------------------------------


def _spin() -> None:
    os.nice(19)
    while True:
        pass


@contextmanager
def cores(state: str) -> Iterator[str]:
    """Run the body with the cores idle, or kept busy; says which."""
    if state == "idle":
        yield f"cores idle (load average {os.getloadavg()[0]:.2f} at the start)"
        return
    count = os.cpu_count() or 1
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]
    for spinner in spinners:
        spinner.start()
    try:
        yield f"cores kept busy ({count} spinning processes at the lowest priority)"
    finally:
        for spinner in spinners:
            spinner.terminate()
            spinner.join()


def run(tool: str, calls: int, rounds: int) -> dict[str, Any]:
    env = {**os.environ, "BENCH_TOOL": tool, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--calls",
        str(calls),
        "--rounds",
        str(rounds),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{tool}: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", choices=("idle", "busy"), default="idle")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=40, help="timed calls per block")
    parser.add_argument(
        "--tools",
        default="dbtune,dbtune-local,cachalot,cacheops",
        help="comma-separated: dbtune,dbtune-local (CACHE_LOCAL on),cachalot,cacheops",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.calls, args.rounds)
        return
    if os.environ.get("DBTUNE_DB") != "postgres" or os.environ.get("DBTUNE_CACHE") != "redis":
        sys.exit("Run it on PostgreSQL + Redis: DBTUNE_DB=postgres DBTUNE_CACHE=redis.")
    import django

    asked = [tool for tool in args.tools.split(",") if tool]
    unknown = sorted(set(asked) - set(NAMES))
    if unknown:
        sys.exit(f"Unknown tool(s): {', '.join(unknown)}; choose from {', '.join(NAMES)}.")
    tools = [t for t in asked if t.startswith("dbtune") or importlib.util.find_spec(t)]
    started = time.monotonic()
    with cores(args.cores) as state:
        results = {tool: run(tool, args.calls, args.rounds) for tool in tools}
    print(
        f"Django {django.get_version()}, Python {sys.version.split()[0]}, PostgreSQL + Redis on "
        f"127.0.0.1, {state}; {args.rounds} rounds of {args.calls} calls per block, on and off "
        f"alternating in each tool's process ({time.monotonic() - started:.0f} s)"
    )
    print("time with the tool / time without it, median [quartiles]; below 1 is faster")
    print(f"{'tool':<16}" + "".join(f"{op:>24}" for op in OPERATIONS))
    for tool in tools:
        cells = []
        for op in OPERATIONS:
            values = sorted(results[tool]["ratios"][op])
            quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
            cells.append(
                f"{statistics.median(values):.2f}x [{quartiles[0]:.2f}-{quartiles[-1]:.2f}]"
            )
        print(f"{NAMES[tool]:<16}" + "".join(f"{cell:>24}" for cell in cells))
    for tool in tools:
        off = results[tool]["off_us"]
        print(
            f"{NAMES[tool]}'s process: one Redis round trip {off['cache GET']:.0f} us, one "
            f"primary-key SELECT through a cursor {off['SELECT']:.0f} us (a round trip is "
            f"{results[tool]['round_trip_per_select']:.2f}x a SELECT); with the tool off, a "
            f"primary-key get {off['pk get, hit']:.0f} us, a save {off['save']:.0f} us"
        )
    if "cacheops" in tools:
        print("django-cacheops' off blocks run with its queryset patches in (they stay in).")
    for tool in sorted(set(asked) - set(tools)):
        print(f"{NAMES[tool]} is not installed (bench/env.sh installs it)")


if __name__ == "__main__":
    main()
