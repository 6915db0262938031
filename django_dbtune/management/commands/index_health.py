"""``manage.py index_health``: what the indexes cost and whether they earn it."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from django_dbtune.advisor.health import Health, HealthError, health, human_size
from django_dbtune.findings import to_text
from django_dbtune.management.apps_arguments import add_app_arguments, checked_apps


class Command(BaseCommand):
    help = (
        "Report the health of the project's indexes. On PostgreSQL, from its statistics "
        "(how long they cover is printed): indexes no query has used, advised for removal "
        "only on statistics of at least UNUSED_INDEX_MIN_DAYS (default 7) and never for an "
        "index younger than that, one backing a constraint or a foreign key, or one the "
        "project's code filters or sorts by (primary keys and unique indexes aside), "
        "invalid indexes "
        "left by a failed CREATE INDEX CONCURRENTLY (with the fix), tables read mostly by "
        "sequential scans, and the size of every table and index. Everywhere: duplicate and "
        "redundant indexes, drift between the models and the database, and connection "
        "settings that cost time on every request."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_app_arguments(parser)
        parser.add_argument(
            "--format", choices=("text", "json"), default="text", help="Output format."
        )
        parser.add_argument(
            "--check", action="store_true", help="Exit with status 1 when findings remain."
        )
        parser.add_argument(
            "--replica",
            action="append",
            default=[],
            metavar="ALIAS",
            help="PostgreSQL: also count the index and table scans of this replica (a "
            "database alias reaching a streaming replica of --database; repeat for each). "
            "Each node counts only the queries it ran: an index is reported unused only if "
            "no node used it, over the period the shortest of their statistics covers.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        database = options["database"]
        labels = checked_apps(options["app_labels"], database)
        replicas = list(dict.fromkeys(options["replica"]))  # (each node once)
        for alias in [database, *replicas]:
            checked_apps(labels, alias)  # (the alias exists)
            try:
                connections[alias].ensure_connection()
            except DatabaseError as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else error
                raise CommandError(f"Cannot read database {alias!r}: {first}") from None
        if database in replicas:
            raise CommandError(f"--replica {database!r} is --database itself.")
        try:
            report = health(labels, database, replicas)
        except HealthError as error:
            raise CommandError(str(error)) from None
        except DatabaseError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else error
            raise CommandError(f"Cannot read database {database!r}: {first_line}") from None
        if options["format"] == "json":
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self._text(report)
        if options["check"] and report.findings:
            sys.exit(1)

    def _text(self, report: Health) -> None:
        heading = f"Index health of database {report.database!r} ({report.vendor})"
        self.stdout.write(self.style.MIGRATE_HEADING(heading))
        if report.usage_statistics:
            self.stdout.write(f"The {report.stats_window}.")
            if report.stats_days is None or report.stats_days < report.min_days:
                self.stdout.write(
                    "No index is advised for removal: that needs statistics of at least "
                    f"UNUSED_INDEX_MIN_DAYS = {report.min_days:g} days."
                )
        elif report.stats_window:
            self.stdout.write(report.stats_window)  # why index use could not be read
        else:
            self.stdout.write(
                "Index usage comes from PostgreSQL's statistics and MariaDB's or MySQL's "
                "performance_schema: on this database unused indexes are not looked for."
            )
        if report.tables:
            self.stdout.write("\nTables, largest first:")
            self.stdout.write(
                f"  {'table':<32} {'rows':>12} {'table':>10} {'indexes':>10} "
                f"{'seq scans':>10} {'idx scans':>10}"
            )
            for table in report.tables:
                self.stdout.write(
                    f"  {table.table:<32} {table.rows:>12,} {human_size(table.table_bytes):>10} "
                    f"{human_size(table.index_bytes):>10} {_count(table.seq_scans):>10} "
                    f"{_count(table.index_scans):>10}"
                )
        if report.indexes:
            self.stdout.write("\nIndexes, largest first:")
            # MariaDB's and MySQL's names are the table's own (each table has a PRIMARY), and
            # their count is of the rows read through the index, not of scans.
            names = [index.name for index in report.indexes]
            shown = [
                f"{index.table}.{index.name}" if names.count(index.name) > 1 else index.name
                for index in report.indexes
            ]
            unit = "rows read" if report.vendor == "mysql" else "scans"
            width = max(len(name) for name in shown)
            for name, index in zip(shown, report.indexes, strict=True):
                kind = "primary key" if index.primary else "unique" if index.unique else ""
                state = "" if index.valid else "  INVALID"
                if index.scans_by_node:  # with replicas: where they were counted
                    nodes = ", ".join(f"{a} {n:,}" for a, n in index.scans_by_node.items())
                    state += f"  ({nodes})"
                self.stdout.write(
                    f"  {name:<{width}} {human_size(index.bytes):>10}"
                    f" {_count(index.scans):>12} {unit}"
                    f"  {kind}{state}"
                )
            kept = [index for index in report.indexes if index.kept]
            if kept and report.stats_days is not None and report.stats_days >= report.min_days:
                self.stdout.write("\nUnused, but not advised for removal:")
                for index in kept:
                    self.stdout.write(f"  {index.name}: {index.kept}.")
        self.stdout.write("")
        if report.findings:
            self.stdout.write(to_text(report.findings))
            self.stdout.write(f"\n{len(report.findings)} finding(s).")
        else:
            self.stdout.write("No findings.")


def _count(number: int | None) -> str:
    """A scan count, or "-" where the database keeps none."""
    return "-" if number is None else f"{number:,}"
