"""What an N+1 detector costs per request, as a ratio to the same request with no tool.

Two pages of 200 rows through the whole middleware stack (Django's test client): one reads
two foreign keys lazily per row (a real N+1: 401 queries), one loads them with
select_related (1 query). Tools: none, django-dbtune (NPlusOneMiddleware), django-zeal
(zeal_middleware) and nplusone (its middleware; it only runs on older Django). A tool's
patches are installed for the whole process, so each tool runs in its own process; rounds
alternate the tools, and each figure is the median over rounds of tool time / no-tool time
from the same round.

    bench/env.sh 5.2   # or 6.1: a venv with the peer tools (never package dependencies)
    .venv-bench-django5.2/bin/python bench/nplusone_overhead.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from side_by_side import alternating_rounds, run_worker

ROOT = Path(__file__).resolve().parent.parent
PAGES = {"n-plus-one": "/n-plus-one/", "eager": "/eager/"}


def worker(requests: int, batches: int) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "example_project"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.nplusone_settings"
    import logging
    import warnings

    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from dashboard import seed

    # Every tool reports through logging or warnings; keep the terminal out of the timing.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    setup_test_environment()
    # A worker that stopped halfway may have left its test database behind (PostgreSQL).
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        seed.seed(0.1)
        client = Client()
        result = {}
        for name, url in PAGES.items():
            for _ in range(3):  # warm up
                assert client.get(url).status_code == 200
            times = []
            for _ in range(batches):
                start = time.perf_counter()
                for _ in range(requests):
                    client.get(url)
                times.append((time.perf_counter() - start) / requests)
            result[name] = statistics.median(times)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(json.dumps(result))


def run(tool: str, requests: int, batches: int) -> dict[str, float]:
    return run_worker(__file__, tool, ["--requests", str(requests), "--batches", str(batches)])


def available(tool: str) -> str | None:
    """Why a tool cannot run here, or None."""
    module = {"zeal": "zeal", "nplusone": "nplusone"}.get(tool)
    if module and importlib.util.find_spec(module) is None:
        return "not installed (bench/env.sh installs it)"
    if tool == "nplusone":
        try:
            run(tool, 1, 1)
        except subprocess.CalledProcessError as error:
            last = (error.stderr.strip().splitlines() or ["?"])[-1]
            return f"does not run on this Django: {last}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.requests, args.batches)
        return
    import django

    tools = ["dbtune", "zeal", "nplusone"]
    skipped = {tool: why for tool in tools if (why := available(tool))}
    tools = [tool for tool in tools if tool not in skipped]
    ratios: dict[str, dict[str, list[float]]] = {t: {p: [] for p in PAGES} for t in tools}
    for times in alternating_rounds(
        args.rounds, tools, lambda tool: run(tool, args.requests, args.batches)
    ):
        for tool in tools:
            for page in PAGES:
                ratios[tool][page].append(times[tool][page] / times["none"][page])
    vendor = os.environ.get("DBTUNE_DB", "sqlite")
    print(
        f"Django {django.get_version()}, Python {sys.version.split()[0]}, {vendor}, "
        f"{args.rounds} rounds; request time / no tool (median)"
    )
    print(f"{'tool':<14} {'200 rows N+1 (401 queries)':>28} {'200 rows select_related':>25}")
    for tool in tools:
        row = [statistics.median(ratios[tool][page]) for page in PAGES]
        name = "django-dbtune" if tool == "dbtune" else tool
        print(f"{name:<14} {row[0]:>27.3f}x {row[1]:>24.3f}x")
    for tool, why in skipped.items():
        print(f"{tool:<14} {why}")


if __name__ == "__main__":
    main()
