"""What query capture costs on a page of 200 rows, as a ratio to the same page uncaptured.

Two pages, each rendering 200 page results with their crawl job's status: one loads the
crawl job lazily per row (an N+1 page, 201 queries), one with select_related (1 query). Each
round times the page with and without capture, in alternating order, on the same database
in the same process; the figure is the median ratio over the rounds.

    python bench/capture_overhead.py [--rounds 60] [--calls 5]

DBTUNE_DB=postgres runs it on PostgreSQL (a scratch test database is created and dropped).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.template import Context, Template  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from crawler.models import PageResult  # noqa: E402
from dashboard import seed  # noqa: E402
from django_dbtune.capture import capture_queries  # noqa: E402

ROWS = 200
TEMPLATE = Template(
    "{% for page in pages %}{{ page.url }} {{ page.crawl_job.status }}\n{% endfor %}"
)


def n_plus_one_page() -> str:
    return TEMPLATE.render(Context({"pages": PageResult.objects.order_by("id")[:ROWS]}))


def joined_page() -> str:
    pages = PageResult.objects.select_related("crawl_job").order_by("id")[:ROWS]
    return TEMPLATE.render(Context({"pages": pages}))


def timed(page, calls: int, capture: bool) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        if capture:
            with capture_queries():
                page()
        else:
            page()
    return time.perf_counter() - start


def ratio(page, rounds: int, calls: int) -> float:
    ratios = []
    for round_number in range(rounds):
        if round_number % 2:
            plain = timed(page, calls, capture=False)
            captured = timed(page, calls, capture=True)
        else:
            captured = timed(page, calls, capture=True)
            plain = timed(page, calls, capture=False)
        ratios.append(captured / plain)
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        seed.seed(0.1)
        with capture_queries() as log:
            n_plus_one_page()
        assert len(log) == ROWS + 1, len(log)
        for page in (n_plus_one_page, joined_page):  # warm up caches and connections
            timed(page, args.calls, capture=True)
            timed(page, args.calls, capture=False)
        print(f"database: {connection.vendor}, {args.rounds} rounds x {args.calls} calls")
        print(f"{'page':<34} {'queries':>8} {'capture / none':>15}")
        for name, page, queries in (
            ("200 rows, lazy foreign key (N+1)", n_plus_one_page, ROWS + 1),
            ("200 rows, select_related", joined_page, 1),
        ):
            print(f"{name:<34} {queries:>8} {ratio(page, args.rounds, args.calls):>14.3f}x")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
