"""``manage.py dbtune_report --output report.html``: every finding on one self-contained page."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections
from django.template.loader import render_to_string

import django_dbtune
from django_dbtune import workload
from django_dbtune.advisor import proof, suggest
from django_dbtune.advisor.health import health, human_size
from django_dbtune.conf import conf
from django_dbtune.findings import Finding, Proof
from django_dbtune.management.apps_arguments import add_app_arguments, checked_apps
from django_dbtune.management.pages import (
    Page,
    add_visit_arguments,
    check_paths,
    explain,
    find_user,
    nplusone_pages,
    refused,
)
from django_dbtune.schema import model_schemas

CHART_WIDTH = 560
"""Pixels of the longest bar in the before/after chart."""


class Command(BaseCommand):
    help = (
        "Write one self-contained HTML page (no external files) with django-dbtune's "
        "findings, readable without a terminal: the index findings with their evidence (from "
        "the code, or proven from a recorded --workload), the N+1 findings of --url pages or "
        "of a dbtune_nplusone --format json file, the index health report, and a chart of "
        "query time per shape before and after when a --benchmark file is given. A --url page "
        "that answers other than 2xx is shown with its status; the report is still written, "
        "then the command exits with status 1 unless --allow-status accepts that status."
    )
    requires_system_checks = "__all__"

    def add_arguments(self, parser: CommandParser) -> None:
        add_app_arguments(parser)
        parser.add_argument("--output", required=True, metavar="PATH", help="The HTML file.")
        parser.add_argument(
            "--workload",
            metavar="PATH",
            help="A recorded workload: index findings proven by the planner (PostgreSQL and "
            "HypoPG) instead of those read from the code.",
        )
        parser.add_argument(
            "--allow-build",
            action="store_true",
            help="With --workload, where HypoPG is not installed: build each candidate inside "
            "a transaction that is rolled back (lock_timeout 2s). Development databases only: "
            "building locks writes to the table.",
        )
        parser.add_argument(
            "--url",
            action="append",
            default=[],
            metavar="URL",
            help="A page of the site to request in-process and check for N+1 queries "
            "(repeat it for more pages).",
        )
        add_visit_arguments(parser)
        parser.add_argument(
            "--nplusone",
            metavar="PATH",
            help="N+1 findings recorded earlier: the JSON of manage.py dbtune_nplusone "
            "--format json.",
        )
        parser.add_argument(
            "--benchmark",
            metavar="PATH",
            help="Before/after times per query shape: the JSON of bench/workload_indexes.py "
            "--json PATH.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        database = options["database"]
        labels = checked_apps(options["app_labels"], database)
        output = Path(options["output"])
        if not output.parent.is_dir():
            raise CommandError(
                f"Cannot write {output}: the folder {output.parent} does not exist."
            )
        check_paths(options["url"])
        if options["user"] is not None:
            find_user(options["user"])  # an unknown user is an error before anything is written
        context = {
            "project": conf.PROJECT_ROOT.name,
            "database": database,
            "vendor": connections[database].vendor,
            "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "version": django_dbtune.__version__,
        }
        try:
            context.update(
                self._indexes(labels, database, options["workload"], options["allow_build"])
            )
            pages = nplusone_pages(options["url"], user=options["user"]) if options["url"] else []
            context.update(self._nplusone(pages, options["nplusone"], options["user"]))
            context["health"] = self._health(labels, database)
        except DatabaseError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else error
            raise CommandError(f"Cannot read database {database!r}: {first_line}") from None
        if options["benchmark"]:
            context.update(_benchmark(Path(options["benchmark"])))
        html = render_to_string("django_dbtune/report/report.html", context)
        _write(output, html)
        self.stdout.write(self.style.SUCCESS(f"wrote {output}"))
        problem = refused(pages, options["allow_status"], options["user"])
        if problem:
            raise CommandError(problem)

    def _indexes(
        self, labels: list[str], database: str, path: str | None, allow_build: bool
    ) -> dict[str, Any]:
        if path is None:
            report = suggest.static_report(labels, database)
            for line in report.warnings:
                self.stderr.write(f"warning: {line}")
            findings = report.findings
            source = "From the models and the project's code (suggest_indexes)."
        else:
            try:
                shapes = workload.read(path)
                schemas = {s.label: s for s in model_schemas(labels, database)}
                outcome = proof.prove(shapes, schemas, database, allow_build=allow_build)
            except (workload.WorkloadError, proof.ProofError) as error:
                raise CommandError(str(error)) from None
            for vendor, count in sorted(outcome.replanned.items()):
                self.stderr.write(
                    f"re-planned ({count}): reads recorded on {vendor}, rebuilt from their "
                    "ORM fields"
                )
            for reason, count in sorted(outcome.skipped.items()):
                self.stderr.write(f"left out ({count}): {reason}")
            findings = outcome.findings
            source = f"Proven from the recorded workload {path} (suggest_indexes --workload)."
        return {"index_findings": [_finding(f) for f in findings], "index_source": source}

    def _nplusone(self, pages: list[Page], path: str | None, user: str | None) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        sources = []
        checked = [page.url for page in pages if page.ok]
        unchecked = [page for page in pages if not page.ok]
        if pages:
            for page in pages:
                rows.extend(_nplusone_row(f.as_dict(), f.message, page.url) for f in page.findings)
            sources.append(f"requested in-process: {', '.join(page.url for page in pages)}")
        if path is not None:
            recorded_pages = _json(Path(path), "dbtune_nplusone --format json")
            try:
                for recorded in recorded_pages:
                    page = Page(str(recorded["url"]), int(recorded.get("status", 200)))
                    if page.ok:
                        checked.append(page.url)
                    else:
                        unchecked.append(Page(page.url, page.status, recorded.get("location")))
                    for found in recorded["findings"]:
                        rows.append(_nplusone_row(found, None, recorded["url"]))
            except (TypeError, KeyError, ValueError, AttributeError) as error:
                raise CommandError(
                    f"{path} is not the JSON of dbtune_nplusone --format json ({error})."
                ) from None
            sources.append(f"recorded in {path}")
        return {
            "nplusone": rows,
            "nplusone_checked": bool(sources),
            # Pages that did not answer 2xx were not checked: each is shown with its status.
            "nplusone_pages_checked": checked,
            "nplusone_pages_unchecked": [
                {**page.as_dict(), "answer": explain(page, user)} for page in unchecked
            ],
            "nplusone_source": "Pages " + "; ".join(sources) + "." if sources else "",
        }

    def _health(self, labels: list[str], database: str) -> dict[str, Any]:
        report = health(labels, database)
        return {
            "stats_reset": report.stats_reset,
            "stats_window": report.stats_window,
            "tables": [
                {
                    "table": t.table,
                    "rows": f"{t.rows:,}",
                    "table_size": human_size(t.table_bytes),
                    "index_size": human_size(t.index_bytes),
                    "seq_scans": f"{t.seq_scans:,}",
                    "index_scans": f"{t.index_scans:,}",
                }
                for t in report.tables
            ],
            "findings": [_finding(f) for f in report.findings],
        }


def _finding(finding: Finding) -> dict[str, Any]:
    data = finding.as_dict()
    index = finding.index
    data["code"] = (
        (f"migrations.RunSQL({index.sql!r})" if index.sql else f"Meta.indexes: {index.as_code()}")
        if index is not None
        else ""
    )
    return data


def _nplusone_row(found: dict[str, Any], message: str | None, url: str) -> dict[str, Any]:
    headline = message.splitlines()[0] if message else f"{found['kind']}: {found['relation']}"
    proof = found.get("proof")
    return {**found, "headline": headline, "url": url, "proof_text": _proof_text(proof)}


def _proof_text(proof: dict[str, Any] | None) -> str | None:
    """A finding's proof as its text says it (the JSON of a --nplusone file has the dict)."""
    if not isinstance(proof, dict):
        return None
    try:
        return Proof(**proof).text
    except TypeError:
        return None


def _json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise CommandError(f"{path} is not the JSON of {what} ({error}).") from None


def _benchmark(path: Path) -> dict[str, Any]:
    rows = _json(path, "bench/workload_indexes.py --json")
    try:
        shapes = [
            (str(r["shape"]), float(r["before_ms"]), float(r["after_ms"])) for r in rows["shapes"]
        ]
    except (TypeError, KeyError, ValueError) as error:
        raise CommandError(
            f"{path} is not the JSON of bench/workload_indexes.py ({error})."
        ) from None
    longest = max((before for _, before, _ in shapes), default=0.0) or 1.0
    chart = []
    for number, (shape, before, after) in enumerate(shapes):
        before_width = max(round(before / longest * CHART_WIDTH), 1)
        after_width = max(round(after / longest * CHART_WIDTH), 1)
        chart.append(
            {
                "y": number * 34,
                "label": shape if len(shape) <= 58 else shape[:57] + "…",
                "before_ms": f"{before:.2f}",
                "after_ms": f"{after:.2f}",
                "ratio": f"{before / after:.1f}" if after else "∞",
                "before_width": before_width,
                "after_width": after_width,
                "before_end": 360 + before_width + 4,
                "after_end": 360 + after_width + 4,
            }
        )
    return {
        "benchmark": chart,
        "benchmark_height": len(chart) * 34 + 10,
        "benchmark_source": str(path),
    }


def _write(output: Path, html: str) -> None:
    """Whole or not at all: a temporary file in the same folder, then renamed."""
    descriptor, temporary = tempfile.mkstemp(dir=output.parent, suffix=".html.tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(html)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)  # as an ordinary new file (mkstemp makes it 0600)
        os.replace(temporary, output)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise CommandError(f"Cannot write {output}: {error.strerror}.") from None
