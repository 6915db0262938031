"""``manage.py suggest_indexes``: the indexes the models are missing, and those they waste."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from django_dbtune import workload
from django_dbtune.advisor import proof, suggest, writer
from django_dbtune.advisor.digests import read_digests
from django_dbtune.advisor.online_build import OnlineBuildError
from django_dbtune.advisor.proof import DEFAULT_MAX_PER_TABLE, DEFAULT_MIN_REDUCTION
from django_dbtune.advisor.scratch_copy import DEFAULT_ROWS, ScratchCopyError
from django_dbtune.advisor.statements import merged, read_statements
from django_dbtune.advisor.workload_candidates import Outcome, plural
from django_dbtune.conf import conf
from django_dbtune.errors import WriteError
from django_dbtune.findings import SEVERITIES, Finding, to_json, to_text
from django_dbtune.management.apps_arguments import add_app_arguments, checked_apps
from django_dbtune.schema import model_schemas


class Command(BaseCommand):
    help = (
        "Find the indexes the project lacks and those it wastes, from the models, the "
        "project's own code and the admin (no queries run): foreign keys no index leads "
        "with; fields the code, the admin or REST framework filter, search or sort by with no "
        "covering index (one composite per call site, equality columns first); duplicate "
        "and redundant indexes; and drift between the models and the database. Each finding "
        "names the lines it comes from and the models.Index(...) to add; --write adds them. "
        "Tests, migrations and virtual environments are not scanned. With --workload, "
        "the queries a site really ran instead: each candidate index is proven with "
        "PostgreSQL's planner (HypoPG) before it is suggested."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_app_arguments(parser)
        parser.add_argument(
            "--format",
            choices=("text", "json"),
            default="text",
            help="text for people (default), json for machines.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Exit with status 1 when findings at or above --min-severity remain.",
        )
        parser.add_argument(
            "--write",
            action="store_true",
            help="Write the fix: one migration per app (AddIndex) and the same models.Index "
            "in each model's Meta.indexes. Without it, nothing is written.",
        )
        parser.add_argument(
            "--concurrently",
            action="store_true",
            help="With --write on PostgreSQL: AddIndexConcurrently in a non-atomic migration, "
            "so building the index does not lock writes.",
        )
        parser.add_argument(
            "--runsql",
            action="store_true",
            help="With --write on MariaDB or MySQL: also write each prefix index of a TEXT "
            "column (which Meta.indexes cannot declare) as a RunSQL operation of the app's "
            "migration, with the DROP INDEX that undoes it. No model declares such an index: "
            "makemigrations does not know it.",
        )
        parser.add_argument(
            "--workload",
            metavar="PATH",
            help="A recorded workload (JSON lines: DBTUNE['WORKLOAD_FILE'], pytest "
            "--dbtune-record, or django_dbtune.workload.record). Suggest only indexes that "
            "the planner would use for those queries, ranked by estimated time saved "
            "(PostgreSQL; MariaDB and MySQL with --allow-build or --scratch-copy). On "
            "SQLite: the recorded queries that scan a whole table.",
        )
        parser.add_argument(
            "--workload-store",
            action="store_true",
            help="Like --workload, from the cache DBTUNE['WORKLOAD_STORE'] names, where every "
            "process and host of the site recorded its workload (django-redis).",
        )
        parser.add_argument(
            "--from-pg-stat-statements",
            action="store_true",
            help="Like --workload, from PostgreSQL's pg_stat_statements (every app server's "
            "queries, aggregated by PostgreSQL): its SELECTs are parsed, mapped to the "
            "models, and their indexes proven with the planner.",
        )
        parser.add_argument(
            "--from-performance-schema",
            action="store_true",
            help="Like --workload, from MariaDB's or MySQL's performance_schema statement "
            "digests (every app server's statements, aggregated by the server), planned with "
            "values read from the tables; needs --allow-build or --scratch-copy to prove "
            "them. The error says how to switch performance_schema on where it is off.",
        )
        parser.add_argument(
            "--digests-from",
            metavar="ALIAS",
            help="With --from-performance-schema: read the digests on this database alias "
            "(production's), and prove them on --database (a copy with the same schema): "
            "proving builds indexes and runs the reads, which production should not pay for.",
        )
        parser.add_argument(
            "--replica",
            action="append",
            default=[],
            metavar="ALIAS",
            help="With --from-pg-stat-statements or --from-performance-schema: also read the "
            "statements of this replica (a database alias; repeat for each). Each node counts "
            "only the queries it ran: the same statement's calls are added up.",
        )
        parser.add_argument(
            "--allow-build",
            action="store_true",
            help="With --workload, where HypoPG is not installed: build each candidate inside "
            "a transaction that is rolled back (lock_timeout 2s); on MariaDB and MySQL, build "
            "it online (ALGORITHM=INPLACE, LOCK=NONE) and drop it. Development or staging "
            "databases only: refused on the aliases in DBTUNE['PRODUCTION_DATABASES'].",
        )
        parser.add_argument(
            "--scratch-copy",
            action="store_true",
            help="With --workload or --from-performance-schema on MariaDB or MySQL, instead "
            "of --allow-build: prove each candidate on a scratch copy of its table holding a "
            "sample of its rows (--scratch-rows), never on the table itself: the table is "
            "read with plain SELECTs (no row locks), the copy is created, filled, built on and "
            "dropped; the recorded reads run against it. Rows read are scaled to the whole "
            "table (not those of a read with a LIMIT); a plan on a sample can differ from the "
            "table's, and the finding names the copy. Refused on the aliases in "
            "DBTUNE['PRODUCTION_DATABASES'].",
        )
        parser.add_argument(
            "--scratch-rows",
            type=_positive,
            metavar="N",
            help=f"With --scratch-copy: at most N rows in each copy (default {DEFAULT_ROWS:,}).",
        )
        parser.add_argument(
            "--min-cost-reduction",
            type=_percent,
            default=round(DEFAULT_MIN_REDUCTION * 100),
            metavar="PERCENT",
            help="With --workload: suggest an index only if it cuts the planner's estimated "
            "cost of the queries it serves by at least this much (default "
            f"{round(DEFAULT_MIN_REDUCTION * 100)}).",
        )
        parser.add_argument(
            "--max-per-table",
            type=_positive,
            default=DEFAULT_MAX_PER_TABLE,
            metavar="N",
            help=f"With --workload: at most N new indexes per table (default "
            f"{DEFAULT_MAX_PER_TABLE}).",
        )
        parser.add_argument(
            "--min-severity",
            choices=SEVERITIES,
            default="low",
            help="Report only findings at least this severe (default low).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        app_labels: list[str] = options["app_labels"]
        database = options["database"]
        if options["concurrently"] and not options["write"]:
            raise CommandError("--concurrently only applies with --write.")
        if options["digests_from"] and not options["from_performance_schema"]:
            raise CommandError("--digests-from only applies with --from-performance-schema.")
        if options["digests_from"] and options["digests_from"] not in connections.settings:
            raise CommandError(
                f"--digests-from {options['digests_from']!r} is not a database alias in "
                f"DATABASES ({', '.join(connections.settings)})."
            )
        if options["runsql"] and not options["write"]:
            raise CommandError("--runsql only applies with --write.")
        if options["runsql"] and connections[database].vendor != "mysql":
            raise CommandError(
                "--runsql writes MariaDB's and MySQL's prefix indexes of TEXT columns; "
                f"database {database!r} is {connections[database].vendor}, which needs none."
            )
        if options["concurrently"] and connections[database].vendor != "postgresql":
            raise CommandError(
                "--concurrently needs PostgreSQL (AddIndexConcurrently); "
                f"database {database!r} is {connections[database].vendor}."
            )
        labels = checked_apps(app_labels, database)
        read_database = True
        try:
            connections[database].ensure_connection()
        except DatabaseError as exc:
            read_database = False
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
            self.stderr.write(
                f"warning: database {database!r} is unreachable ({first_line}); "
                "checking the models only."
            )
        sources = [name for name in _SOURCES if options[name]]
        if len(sources) > 1:
            raise CommandError(f"Give one of {', '.join(_SOURCES.values())}, not several.")
        for option, flag in (("allow_build", "--allow-build"), ("scratch_copy", "--scratch-copy")):
            if options[option] not in (None, False) and not sources:
                raise CommandError(
                    f"{flag} only applies with {', '.join(_SOURCES.values())} (it proves "
                    "their indexes by building them)."
                )
        if options["scratch_rows"] is not None and not options["scratch_copy"]:
            raise CommandError("--scratch-rows only applies with --scratch-copy.")
        options["replica"] = list(dict.fromkeys(options["replica"]))  # (each node once)
        for alias in options["replica"]:
            checked_apps(labels, alias)  # (the alias exists)
            if not (options["from_pg_stat_statements"] or options["from_performance_schema"]):
                raise CommandError(
                    "--replica only applies with --from-pg-stat-statements or "
                    "--from-performance-schema (a workload file has no nodes)."
                )
            if alias in (database, options["digests_from"]):
                raise CommandError(f"--replica {alias!r} is the database read already.")
            try:
                connections[alias].ensure_connection()
            except DatabaseError as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else error
                raise CommandError(f"Cannot read replica {alias!r}: {first}") from None
        if options["allow_build"] and options["scratch_copy"]:
            raise CommandError(
                "Give --allow-build (build on the tables) or --scratch-copy (build on copies "
                "of them), not both."
            )
        if sources:
            if not read_database:
                raise CommandError(f"Proving indexes needs database {database!r} to plan queries.")
            report = self._workload(labels, database, options)
        else:
            report = suggest.static_report(labels, database, read_database=read_database)
        for path, reason in report.skipped_files:
            self.stderr.write(f"warning: skipped {path}, which does not parse ({reason}).")
        for line in report.warnings:
            self.stderr.write(f"warning: {line}")
        findings = [f for f in report.findings if f.at_least(options["min_severity"])]
        if options["format"] == "json":
            self.stdout.write(to_json(findings))
        elif findings:
            self.stdout.write(to_text(findings))
            self.stdout.write(f"\n{len(findings)} finding(s).")
        else:
            self.stdout.write("No findings.")
        if options["write"]:
            self._write(findings, options["concurrently"], options["runsql"])
        elif options["check"] and findings:
            sys.exit(1)

    def _workload(
        self, labels: list[str], database: str, options: dict[str, Any]
    ) -> suggest.Report:
        schemas = {
            schema.label: schema for schema in model_schemas(labels, database, read_database=True)
        }
        outcome = Outcome()
        try:
            if options["from_pg_stat_statements"]:
                nodes = [database, *options["replica"]]
                shapes = merged(
                    *(read_statements(connections[a], schemas, outcome) for a in nodes)
                )
                source = "pg_stat_statements"
            elif options["from_performance_schema"]:
                nodes = [options["digests_from"] or database, *options["replica"]]
                shapes = merged(*(read_digests(connections[a], schemas, outcome) for a in nodes))
                source = "performance_schema"
            elif options["workload_store"]:
                store = conf.WORKLOAD_STORE
                if store is None:
                    raise CommandError(
                        "--workload-store reads the cache DBTUNE['WORKLOAD_STORE'] names, "
                        "which is not set."
                    )
                shapes = workload.read_store(store)
                source = f"The workload store (cache {store!r})"
            else:
                shapes = workload.read(options["workload"])
                source = f"The workload file {options['workload']}"
        except (workload.WorkloadError, proof.ProofError) as error:
            raise CommandError(str(error)) from None
        if not shapes:
            raise CommandError(f"{source} records no queries on the checked apps' tables.")
        try:
            outcome = proof.prove(
                shapes,
                schemas,
                database,
                allow_build=options["allow_build"],
                scratch_rows=(options["scratch_rows"] or DEFAULT_ROWS)
                if options["scratch_copy"]
                else None,
                min_reduction=options["min_cost_reduction"] / 100,
                max_per_table=options["max_per_table"],
                outcome=outcome,
            )
        except (proof.ProofError, OnlineBuildError, ScratchCopyError) as error:
            raise CommandError(str(error)) from None
        except DatabaseError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else error
            raise CommandError(f"The planner could not be asked: {first_line}") from None
        reads = sum(1 for shape in shapes if shape.kind == "read")
        self.stderr.write(
            f"{len(shapes)} query shape(s) recorded, {reads} read(s); planned on {database!r} "
            f"with {_METHODS[outcome.method]}."
        )
        for vendor, count in sorted(outcome.replanned.items()):
            self.stderr.write(
                f"  re-planned ({count}): reads recorded on {vendor}, rebuilt for "
                f"{connections[database].vendor} from their ORM fields (recorded values unused)"
            )
        for sample in outcome.samples:
            self.stderr.write(f"  candidates tried on {sample}")
        for reason, count in sorted(outcome.skipped.items()):
            self.stderr.write(f"  left out ({count}): {reason}")
        return suggest.Report(findings=outcome.findings)

    def _write(self, findings: list[Finding], concurrently: bool, runsql: bool) -> None:
        try:
            pending = writer.prepare(findings, concurrently=concurrently, runsql=runsql)
            paths = writer.apply(pending)
        except (WriteError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        for label, reason in pending.skipped:
            self.stderr.write(f"warning: wrote nothing for {label}: {reason.rstrip('.')}.")
        root = conf.PROJECT_ROOT
        for path in paths:
            shown = path.relative_to(root) if path.is_relative_to(root) else path
            self.stdout.write(self.style.SUCCESS(f"wrote {shown}"))
        count = len(pending.written)
        if count:
            self.stdout.write(
                f"{plural(count, 'index', 'indexes')} written. Run 'manage.py migrate' to build "
                f"{'it' if count == 1 else 'them'}."
            )
        else:
            self.stdout.write("No index written.")


_SOURCES = {
    "workload": "--workload",
    "workload_store": "--workload-store",
    "from_pg_stat_statements": "--from-pg-stat-statements",
    "from_performance_schema": "--from-performance-schema",
}

_METHODS = {
    "hypopg": "hypothetical indexes (HypoPG)",
    "build": "indexes built inside a rolled-back transaction (--allow-build)",
    "online": "indexes built online and dropped (--allow-build), each read run with ANALYZE "
    "and its rows read counted (MariaDB), with parameter values read from the tables where "
    "the workload kept none",
    "sample": "indexes built on scratch copies of the tables (--scratch-copy), each read run "
    "with ANALYZE and its rows read counted (MariaDB), with parameter values read from the "
    "copies where the workload kept none",
    "sqlite": "EXPLAIN QUERY PLAN (SQLite: nothing is tried, full scans are shown)",
}


def _percent(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= number < 100:
        raise argparse.ArgumentTypeError("give a percentage from 0 to 99")
    return number


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return int(value)
