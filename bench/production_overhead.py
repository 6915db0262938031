"""What production mode costs a request at its default rate, measured in one process.

The example project (PostgreSQL, ``seed_demo --scale 1``, DEBUG off, none of the development
middleware) serves its five N+1 pages through Django's WSGI handler, with no tool and with
``ProductionMiddleware`` outermost at ``SAMPLE_RATE`` 0.01 writing to the database store. The
two run in one process, in blocks of the same requests that alternate (the order turns every
round), timed by the wall clock: a request's time includes its waits on the database, which
is what a user waits for. Each round's two blocks are one pair; the figure is the ratio of
the total times, with a 95% bootstrap interval over the rounds. Two servers measured side by
side (``production_load.py --paired``) differ by more than this from one server to another;
one process has no such difference.

    python bench/production_overhead.py [--rounds 400] [--requests 10] [--rate 0.01]

Needs PostgreSQL on 127.0.0.1 (user postgres).
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from nplusone_overhead import request
from production_load import PAGES

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "dbtune_bench_production_overhead"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="pairs of blocks")
    parser.add_argument("--requests", type=int, default=10, help="requests per block")
    parser.add_argument("--rate", type=float, default=0.01, help="SAMPLE_RATE")
    args = parser.parse_args()
    psql = ("psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc")
    drop = f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'
    subprocess.run([*psql, drop], check=True, capture_output=True)
    subprocess.run([*psql, f'CREATE DATABASE "{DATABASE}"'], check=True, capture_output=True)
    try:
        pairs, sampled = _measure(args)
    finally:
        from django.db import connections

        connections.close_all()
        subprocess.run([*psql, drop], check=True, capture_output=True)
    _print(pairs, sampled, args)


def _measure(args: argparse.Namespace) -> tuple[list[tuple[float, float]], int]:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "example_project"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings", DBTUNE_DB="postgres", DBTUNE_PG_NAME=DATABASE
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.handlers.exception import convert_exception_to_response
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.test import override_settings

    from django_dbtune.middleware import ProductionMiddleware
    from django_dbtune.models import ProductionFinding

    override_settings(
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        MIDDLEWARE=[
            m for m in settings.MIDDLEWARE if not m.startswith(("django_dbtune", "debug_toolbar"))
        ],
        DBTUNE={"PRODUCTION": {"SAMPLE_RATE": args.rate}},
    ).enable()
    call_command("migrate", verbosity=0)
    call_command("seed_demo", "--scale", "1", verbosity=0, stdout=io.StringIO())
    off = WSGIHandler()
    on = copy.copy(off)
    sampled = ProductionMiddleware(off._middleware_chain)
    on._middleware_chain = convert_exception_to_response(sampled)
    pages = _pages(args)

    def block(handler: WSGIHandler) -> float:
        started = time.perf_counter()
        for page in pages:
            status = request(handler, page)
            if status != 200:
                sys.exit(f"{page} answered {status}")
        return time.perf_counter() - started

    for handler in (off, on, off, on):  # warm: connections, templates, caches
        block(handler)
    pairs = []
    for number in range(args.rounds):
        if number % 2:
            at_rate = block(on)
            pairs.append((block(off), at_rate))
        else:
            pairs.append((block(off), block(on)))
    from django_dbtune.production.sampler import sampler

    sampler().flush(None, now=True)
    return pairs, sum(row.seen for row in ProductionFinding.objects.filter(kind="n_plus_one"))


def _pages(args: argparse.Namespace) -> list[str]:
    """One block's requests: the pages in turn, as many rounds of them as fit."""
    return list(PAGES) * (args.requests // len(PAGES) or 1)


def _print(pairs: list[tuple[float, float]], sampled: int, args: argparse.Namespace) -> None:
    def ratio(sample: list[tuple[float, float]]) -> float:
        return sum(on for _, on in sample) / sum(off for off, _ in sample)

    draw, draws = random.Random(0), 2000
    spread = sorted(ratio(draw.choices(pairs, k=len(pairs))) for _ in range(draws))
    low, high = spread[int(draws * 0.025)], spread[int(draws * 0.975) - 1]
    requests = len(pairs) * len(_pages(args))
    off = sum(off for off, _ in pairs) / requests
    print(
        f"One process, {len(pairs)} rounds of two blocks of {requests // len(pairs)} requests "
        f"(off, and SAMPLE_RATE {args.rate} writing to the database store), alternating:"
    )
    print(f"  off {off * 1000:.2f} ms per request")
    interval = f"95% interval {low:.4f}x to {high:.4f}x"
    print(f"  SAMPLE_RATE {args.rate}: {ratio(pairs):.4f}x ({interval})")
    print(f"  {sampled} of {requests} requests were sampled and found an N+1")


if __name__ == "__main__":
    main()
