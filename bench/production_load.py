"""Production mode under load: the example project served by gunicorn (several worker
processes) on PostgreSQL, with ProductionMiddleware off, at the default sampling rate and at
every request, in alternating blocks of one run (the default rate's blocks write what they
find to each worker's memory, so that the shared store counts the other blocks' requests).

Prints the mean request time of each setting and its ratio to "off" (blocks alternate, so
each ratio compares times measured side by side), then what the workers stored between them:
for each N+1 page of the example project's KNOWN_ISSUES.md, whether production mode found it
and whether its fix is the one ``manage.py dbtune_nplusone`` gives for the same page.

    python bench/production_load.py [--workers 3] [--clients 4] [--requests 300] [--rounds 2]
        [--paired PAIRS]

With ``--paired``, it then measures the default rate against "off" more finely: two servers
run at once, one of each, and one client requests the same page from both in turn (the
order alternating), so that every pair of requests is measured side by side; it prints the
ratio of the two mean times with a 95% bootstrap interval over the pairs.

Needs PostgreSQL on 127.0.0.1 (user postgres) and gunicorn (bench/env.sh installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "dbtune_bench_production"
# The example project's N+1 pages (KNOWN_ISSUES.md), with the relation each one loads per row.
PAGES = {
    "/crawler/pages/": "crawler.PageResult.crawl_job",
    "/publisher/businesses/": "publisher.Business.social_accounts",
    "/publisher/posts/": "publisher.Post.tags",
    "/marketplace/jobs/": "marketplace.Job.client",
    "/marketplace/freelancers/": "marketplace.UserProfile.applications",
}
SETTINGS = """
import os
from config.settings import *  # noqa: F403

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [a for a in INSTALLED_APPS if a != "debug_toolbar"]  # noqa: F405
# Production's chain: none of the development middleware, ProductionMiddleware first.
MIDDLEWARE = [
    m for m in MIDDLEWARE if not m.startswith(("django_dbtune", "debug_toolbar"))  # noqa: F405
]
rate = os.environ.get("BENCH_RATE", "off")
store = {"FLUSH_SECONDS": 1}
if os.environ.get("BENCH_REDIS"):
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": os.environ["BENCH_REDIS"],
        }
    }
    store.update(STORE="cache", CACHE="default")
if rate != "off":
    MIDDLEWARE = ["django_dbtune.middleware.ProductionMiddleware", *MIDDLEWARE]
    store["SAMPLE_RATE"] = float(rate)
if rate not in ("off", "1.0") and not os.environ.get("BENCH_REAL_STORE"):
    # What the default rate's blocks find goes to each worker's own memory, so that the
    # shared store counts exactly the requests of the blocks that sample every one.
    CACHES = {**CACHES, "sink": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    store.update(STORE="cache", CACHE="sink")
DBTUNE = {"PRODUCTION": store}  # (off: no middleware; dbtune_findings reads the store)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--requests", type=int, default=300, help="requests per block")
    parser.add_argument("--rounds", type=int, default=2, help="blocks of each setting")
    parser.add_argument("--scale", type=float, default=1, help="seed_demo scale")
    parser.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="PAIRS",  # (an even number: as many of each order)
        help="then this many pairs of requests, off and at the default rate, to two servers "
        "running at once (0: none)",
    )
    parser.add_argument(
        "--store",
        choices=("database", "cache"),
        default="database",
        help="where the workers write (cache: a Redis of its own, appendonly, restarted in the "
        "middle of each block that samples every request)",
    )
    args = parser.parse_args()
    site = Path(tempfile.mkdtemp(prefix="dbtune-prod-")) / "site"
    shutil.copytree(
        ROOT / "example_project", site, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__")
    )
    (site / "config" / "production_bench.py").write_text(SETTINGS)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "config.production_bench",
        "DBTUNE_DB": "postgres",
        "DBTUNE_PG_NAME": DATABASE,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    python = sys.executable
    redis = _Redis(site.parent / "redis") if args.store == "cache" else None
    if redis is not None:
        env["BENCH_REDIS"] = f"redis://127.0.0.1:{redis.port}/0"

    def run(*command: str, rate: str = "off") -> str:
        done = subprocess.run(
            command, cwd=site, env={**env, "BENCH_RATE": rate}, capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.exit(f"{' '.join(command[:3])} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    psql = ("psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc")
    drop = f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'
    run(*psql, drop)
    run(*psql, f'CREATE DATABASE "{DATABASE}"')
    try:
        run(python, "manage.py", "migrate", "-v0")
        run(python, "manage.py", "seed_demo", "--scale", str(args.scale), "-v0")
        times: dict[str, list[float]] = {"off": [], "0.01": [], "1.0": []}
        sampled: dict[str, int] = dict.fromkeys(PAGES, 0)
        downtime: list[float] = []
        for _ in range(args.rounds):
            for rate in times:
                restart = redis if rate == "1.0" else None
                mean, asked = _block(site, env, python, rate, args, restart, downtime)
                times[rate].append(mean)
                if rate == "1.0":
                    for page, number in asked.items():
                        sampled[page] += number
        stored = json.loads(run(python, "manage.py", "dbtune_findings", "--format", "json"))
        development = json.loads(
            run(python, "manage.py", "dbtune_nplusone", *PAGES, "--format", "json")
        )
        pairs = _paired(site, env, python, args) if args.paired else []
    finally:
        run(*psql, drop)
        if redis is not None:
            redis.stop()
        shutil.rmtree(site.parent, ignore_errors=True)
    every = _print(times, stored, development, args, sampled, downtime)
    if pairs:
        _print_pairs(pairs, args)
    if not every:
        sys.exit(1)


class _Redis:
    """A Redis of the bench's own, with its append-only file on: what a restart keeps is
    what was written before it."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.start()

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--dir",
                str(self.folder),
            ],
            check=True,
            capture_output=True,
        )
        for _ in range(100):
            if self._answers():
                return
            time.sleep(0.05)
        sys.exit(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True)
        while self._answers():
            time.sleep(0.05)

    def _answers(self) -> bool:
        done = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True)
        return done.stdout.strip() == b"PONG"

    def restart(self) -> float:
        """Stops and starts it again; how long it did not answer, in seconds."""
        started = time.perf_counter()
        self.stop()
        self.start()
        return time.perf_counter() - started


@contextmanager
def _served(site, env, python, rate, args, real_store=False):
    """A gunicorn of ``args.workers`` workers with production mode at ``rate``, answering and
    each worker warm; yields its address and how many requests each page got meanwhile.
    ``real_store``: the default rate writes to the bench's store, not to worker memory."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            python,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-w",
            str(args.workers),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=site,
        env={**env, "BENCH_RATE": rate, "BENCH_REAL_STORE": "1" if real_store else ""},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):  # until it answers (the admin's login page: no N+1 page)
            try:
                urllib.request.urlopen(base + "/admin/login/", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        asked = dict.fromkeys(PAGES, 0)
        for page in list(PAGES) * args.workers:  # each worker warm
            urllib.request.urlopen(base + page, timeout=30).read()
            asked[page] += 1
        yield base, asked
    finally:
        server.terminate()
        server.wait(timeout=30)


def _get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as reply:
        reply.read()
    return time.perf_counter() - started


def _block(site, env, python, rate, args, restart=None, downtime=None):
    """The mean time of ``args.requests`` requests (the pages in turn, ``args.clients`` at a
    time) to a fresh gunicorn with production mode at ``rate``, and how many requests each
    page got in all. With ``restart``, that Redis is restarted half-way through."""
    with _served(site, env, python, rate, args) as (base, asked):
        pages = list(PAGES)

        def one(number: int) -> float:
            if restart is not None and number == args.requests // 2:
                downtime.append(restart.restart())
            return _get(base + pages[number % len(pages)])

        with ThreadPoolExecutor(args.clients) as pool:
            spent = list(pool.map(one, range(args.requests)))
        for number in range(args.requests):
            asked[pages[number % len(pages)]] += 1
        time.sleep(1.5)  # a last request per worker writes what it holds (FLUSH_SECONDS 1)
        for page in pages * args.workers:
            urllib.request.urlopen(base + page, timeout=30).read()
            asked[page] += 1
        return statistics.mean(spent), asked


def _paired(site, env, python, args):
    """``args.paired`` pairs of (off, default rate) times of one page each, from two servers
    running at once, one request at a time (no queueing to add noise): each pair's two
    requests follow each other, the order alternating from pair to pair. The default rate
    writes to the bench's store."""
    pages = list(PAGES)
    with (
        _served(site, env, python, "off", args) as (off, _),
        _served(site, env, python, "0.01", args, real_store=True) as (sampled, _),
    ):

        def pair(number: int) -> tuple[float, float]:
            page = pages[number % len(pages)]
            if number % 2:  # (5 pages: each page's order alternates too)
                at_rate = _get(sampled + page)
                return _get(off + page), at_rate
            return _get(off + page), _get(sampled + page)

        return [pair(number) for number in range(args.paired)]


def _print_pairs(pairs, args) -> None:
    """The default rate's mean time over off's, with a 95% bootstrap interval over pairs."""

    def ratio(sample):
        return sum(on for _, on in sample) / sum(off for off, _ in sample)

    draw, draws = random.Random(0), 2000
    spread = sorted(ratio(draw.choices(pairs, k=len(pairs))) for _ in range(draws))
    low, high = spread[int(draws * 0.025)], spread[int(draws * 0.975) - 1]
    off = statistics.mean(off for off, _ in pairs)
    print(
        f"\nPaired: {len(pairs)} pairs of requests, one at a time, to two servers "
        f"of {args.workers} workers each, running at once (off, and SAMPLE_RATE 0.01 writing "
        f"to the {args.store} store):"
    )
    print(
        f"  off {off * 1000:.2f} ms per request; SAMPLE_RATE 0.01 {ratio(pairs):.4f}x "
        f"(95% interval {low:.4f}x to {high:.4f}x)"
    )


def _print(times, stored, development, args, sampled, downtime) -> bool:
    """Prints the figures; whether every N+1 page was found with dbtune_nplusone's fix."""
    off = statistics.median(times["off"])
    print(
        f"gunicorn, {args.workers} workers, {args.clients} clients, {args.requests} requests "
        f"per block, {args.rounds} blocks per setting (alternating)"
    )
    for rate, blocks in times.items():
        mean = statistics.median(blocks)
        label = "off" if rate == "off" else f"SAMPLE_RATE {rate}"
        print(f"  {label:<18} {mean * 1000:8.2f} ms per request   {mean / off:.3f}x")
    fixes = {
        finding["relation"]: finding["fix"]
        for page in development
        for finding in page["findings"]
        if finding["kind"] == "n_plus_one"
    }
    print("\nN+1 pages of KNOWN_ISSUES.md, as production mode stored them:")
    every = True
    for page, relation in PAGES.items():
        found = [
            row
            for row in stored
            if row["kind"] == "n_plus_one" and relation in row["message"] and page in row["route"]
        ]
        if not found:
            print(f"  {page:<28} NOT FOUND ({relation})")
            every = False
            continue
        row = found[0]
        same = (
            "same fix as dbtune_nplusone"
            if fixes.get(relation) == row["fix"]
            else (f"dbtune_nplusone's fix: {fixes.get(relation)}")
        )
        every = every and fixes.get(relation) == row["fix"]
        seen = f"seen {row['seen']:>5} of {sampled[page]:>5}"
        print(f"  {page:<28} {seen}  {row['fix']}  ({same})")
    if downtime:
        print(
            f"\nRedis restarted {len(downtime)} time(s) mid-block, down "
            f"{max(downtime):.2f} s at most: the findings not stored are the batches the "
            "workers could not write meanwhile, and those they held when gunicorn stopped."
        )
    return every


if __name__ == "__main__":
    main()
