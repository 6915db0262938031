"""What the workload advisor's indexes buy: the example project's pages on PostgreSQL (or
MariaDB), before and after the indexes suggest_indexes --workload proves and writes.

In a copy of the example project and a fresh database (PostgreSQL: HypoPG created in it):
migrate, seed (scale 200: 1,000,000 page results), record the pages' workload (with one
parameter set per shape, so it can be replayed), replay every recorded read, run
``suggest_indexes --workload --write`` (MariaDB: ``--allow-build``, and with a workload
recorded without values, as a user's is by default), migrate, replay again. Prints, per query
shape on a table that got an index, the median time before and after (each shape run
``--runs`` times per phase, in this one run), the ratio, and whether the planner now uses the
new index.

    python bench/workload_indexes.py [--scale 200] [--runs 7] [--database mariadb]

Needs PostgreSQL on 127.0.0.1 with HypoPG installed (scripts/postgres_setup), or MariaDB
(scripts/mariadb_setup, and mysqlclient: pip install -e ".[mysql]").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "dbtune_bench_workload"
PAGES = [
    "/crawler/broken/",
    "/crawler/pages/?url=https://site-1.example/",
    "/crawler/recommendations/",
    "/crawler/websites/7/",
    "/marketplace/jobs/",
    "/marketplace/freelancers/",
    "/marketplace/payments/?status=failed",
    "/publisher/queue/",
]

RECORD = """
import django, sys
django.setup()
from django.test import Client
from django_dbtune.workload import record
client = Client(HTTP_HOST="localhost")
with record(sys.argv[1], params=sys.argv[2] == "params"):
    for page in sys.argv[3:]:
        assert client.get(page).status_code == 200, page
"""

ANALYZE = """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    for table in connection.introspection.table_names(cursor):
        cursor.execute("ANALYZE TABLE " + connection.ops.quote_name(table))
        cursor.fetchall()
"""

REPLAY = """
import django, json, statistics, sys, time
django.setup()
from django.db import connection
from django_dbtune.workload import read
runs = int(sys.argv[2])
result = {}
for shape in read(sys.argv[1]):
    if shape.kind != "read" or shape.params is None:
        continue
    times = []
    with connection.cursor() as cursor:
        for _ in range(runs):
            start = time.perf_counter()
            cursor.execute(shape.sql, shape.params)
            cursor.fetchall()
            times.append(time.perf_counter() - start)
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN (FORMAT JSON) " + shape.sql, shape.params)
            plan = json.dumps(cursor.fetchone()[0])
        else:
            cursor.execute("EXPLAIN FORMAT=JSON " + shape.sql, shape.params)
            plan = cursor.fetchone()[0]
    result[shape.sql] = {"median": statistics.median(times), "plan": plan,
                         "tables": shape.tables, "calls": shape.calls}
with connection.cursor() as cursor:
    if connection.vendor == "postgresql":
        cursor.execute("SELECT indexname, tablename FROM pg_indexes WHERE schemaname = 'public'")
    else:
        cursor.execute("SELECT DISTINCT index_name, table_name FROM information_schema.statistics "
                       "WHERE table_schema = DATABASE()")
    indexes = dict(cursor.fetchall())
print(json.dumps({"shapes": result, "indexes": indexes}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=200, help="seed_demo scale (200: 1M pages)")
    parser.add_argument("--runs", type=int, default=7, help="runs per shape per phase")
    parser.add_argument("--keep", action="store_true", help="keep the database and the copy")
    parser.add_argument(
        "--database",
        choices=["postgres", "mariadb"],
        default="postgres",
        help="where to run (MariaDB: indexes proven with --allow-build, workload without values)",
    )
    parser.add_argument(
        "--scratch-copy",
        metavar="ROWS",
        help="MariaDB: prove on sampled scratch copies of ROWS rows (--scratch-copy "
        "--scratch-rows ROWS) "
        "instead of building on the tables (--allow-build)",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write the figures as JSON (manage.py dbtune_report --benchmark PATH)",
    )
    args = parser.parse_args()
    site = Path(tempfile.mkdtemp(prefix="dbtune-bench-")) / "site"
    shutil.copytree(
        ROOT / "example_project", site, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__")
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DBTUNE_DB": args.database,
        "DBTUNE_PG_NAME": DATABASE,
        "DBTUNE_MARIADB_NAME": DATABASE,
        "PYTHONDONTWRITEBYTECODE": "1",
    }

    def run(*command: str, errors: list[str] | None = None) -> str:
        result = subprocess.run(command, cwd=site, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"{' '.join(command[:3])} failed:\n{result.stdout}\n{result.stderr}")
        if errors is not None:
            errors.append(result.stderr)
        return result.stdout

    mariadb = args.database == "mariadb"
    python = sys.executable

    def sql(statement: str, database: str = "postgres") -> None:
        if mariadb:
            run("mariadb", "-h", "127.0.0.1", "-u", "dbtune", "-pdbtune", "-e", statement)
        else:
            run("psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-qc", statement)

    def analyze() -> None:
        """Fresh statistics, as autovacuum (PostgreSQL: and its visibility map) or InnoDB's
        own sampling would have by then."""
        if mariadb:
            run(python, "-c", ANALYZE)
        else:
            sql("VACUUM ANALYZE", DATABASE)

    drop = (
        f"DROP DATABASE IF EXISTS `{DATABASE}`"
        if mariadb
        else (f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    )
    sql(drop)
    sql(f"CREATE DATABASE `{DATABASE}`" if mariadb else f'CREATE DATABASE "{DATABASE}"')
    try:
        if not mariadb:
            sql("CREATE EXTENSION hypopg", DATABASE)
        run(python, "manage.py", "migrate", "-v0")
        started = time.perf_counter()
        run(python, "manage.py", "seed_demo", "--scale", str(args.scale), "-v0")
        print(f"seeded at scale {args.scale:g} in {time.perf_counter() - started:.0f} s")
        analyze()
        # The replay needs values; the advisor gets what a user records by default on
        # MariaDB (none: it reads values from the tables), all of it on PostgreSQL.
        workload, replayed = site / "workload.jsonl", site / "replayed.jsonl"
        run(python, "-c", RECORD, str(replayed), "params", *PAGES)
        if mariadb:
            run(python, "-c", RECORD, str(workload), "none", *PAGES)
        else:
            shutil.copy(replayed, workload)
        before = json.loads(run(python, "-c", REPLAY, str(replayed), str(args.runs)))
        summary: list[str] = []
        suggest = (python, "manage.py", "suggest_indexes", "--workload", str(workload))
        if mariadb and args.scratch_copy:
            suggest = (*suggest, "--scratch-copy", "--scratch-rows", args.scratch_copy)
        elif mariadb:
            suggest = (*suggest, "--allow-build")
        # One run proves, prints the findings as JSON, and writes them (after the JSON).
        output = run(*suggest, "--format", "json", "--write", errors=summary)
        findings, end = json.JSONDecoder().raw_decode(output)
        print(summary[0].rstrip())
        if args.keep:
            print(f"kept: {site} (workload {workload})")
        print(output[end:].strip().splitlines()[-1])
        run(python, "manage.py", "migrate", "-v0")
        analyze()
        after = json.loads(run(python, "-c", REPLAY, str(replayed), str(args.runs)))
    finally:
        if not args.keep:
            sql(drop)
            shutil.rmtree(site.parent, ignore_errors=True)
    rows = _print(findings, before, after)
    if args.json:
        Path(args.json).write_text(json.dumps({"shapes": rows}, indent=2))


def _print(findings: list[dict], before: dict, after: dict) -> list[dict]:
    names = sorted(f["index"]["name"] for f in findings if f.get("index"))
    tables = {after["indexes"].get(name) for name in names}
    print(f"\n{len(names)} index(es) suggested and written: " + ", ".join(names))
    print(
        f"\n{'before ms':>10} {'after ms':>10} {'ratio':>8}  {'new index used':<32}  query shape"
    )
    ratios = []
    rows: list[dict] = []
    unused = set(names)
    slowest_first = sorted(before["shapes"].items(), key=lambda item: -item[1]["median"])
    for sql_text, old in slowest_first:
        new = after["shapes"].get(sql_text)
        if new is None or not tables & set(old["tables"]):
            continue  # not on a table that got an index
        used = [name for name in names if f'"{name}"' in new["plan"]]
        unused -= set(used)
        ratio = old["median"] / new["median"] if new["median"] else float("inf")
        if used:
            ratios.append(ratio)
            rows.append(
                {
                    "shape": " ".join(sql_text.split()),
                    "index": used[0],
                    "before_ms": round(old["median"] * 1000, 3),
                    "after_ms": round(new["median"] * 1000, 3),
                }
            )
        shape = " ".join(sql_text.split())
        shape = shape if len(shape) <= 80 else shape[:79] + "…"
        print(
            f"{old['median'] * 1000:10.2f} {new['median'] * 1000:10.2f} {ratio:7.1f}x  "
            f"{', '.join(used) or '-':<32}  {shape}"
        )
    if ratios:
        print(
            f"\nShapes that use a new index: {len(ratios)}; speed-up median "
            f"{statistics.median(ratios):.1f}x, lowest {min(ratios):.1f}x."
        )
    print(
        "Suggested indexes the planner does not use afterwards: "
        + (", ".join(sorted(unused)) if unused else "none")
    )
    return rows


if __name__ == "__main__":
    main()
