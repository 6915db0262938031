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
from django_dbtune.advisor.online_build import OnlineBuildError
from django_dbtune.conf import conf
from django_dbtune.findings import SEVERITIES, Finding, Proof, by_severity, title, titled
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
from django_dbtune.management.production_findings import as_dict, production_findings
from django_dbtune.management.report_charts import ShapeTimes, benchmark_chart, page_chart
from django_dbtune.schema import model_schemas


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
            "--findings",
            action="store_true",
            help="Add what production mode stored (manage.py dbtune_findings), the most "
            "costly first.",
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
            context["health"] = self._health(labels, database, context["index_findings"])
        except DatabaseError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else error
            raise CommandError(f"Cannot read database {database!r}: {first_line}") from None
        if options["benchmark"]:
            context.update(_benchmark(Path(options["benchmark"])))
        if options["findings"]:
            context["production"] = [as_dict(row) for row in production_findings()]
        context.update(_summary(context))
        html = render_to_string("django_dbtune/report/report.html", context)  # (after the reads)
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
            except (workload.WorkloadError, proof.ProofError, OnlineBuildError) as error:
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
        findings = sorted(findings, key=by_severity)
        return {"index_findings": [_finding(f) for f in findings], "index_source": source}

    def _nplusone(self, pages: list[Page], path: str | None, user: str | None) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        sources = []
        checked = [page.url for page in pages if page.ok]
        unchecked = [page for page in pages if not page.ok]
        requested = [_page_row(page.as_dict(), page.findings) for page in pages]
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
                    requested.append(_page_row(recorded, recorded["findings"]))
            except (TypeError, KeyError, ValueError, AttributeError) as error:
                raise CommandError(
                    f"{path} is not the JSON of dbtune_nplusone --format json ({error})."
                ) from None
            sources.append(f"recorded in {path}")
        # Without a severity, the costliest first: the most extra queries.
        rows.sort(key=lambda row: -int(row.get("count") or 0))
        return {
            "nplusone": rows,
            "pages": requested,
            "nplusone_checked": bool(sources),
            # Pages that did not answer 2xx were not checked: each is shown with its status.
            "nplusone_pages_checked": checked,
            "nplusone_pages_unchecked": [
                {**page.as_dict(), "answer": explain(page, user)} for page in unchecked
            ],
            "nplusone_source": "Pages " + "; ".join(sources) + "." if sources else "",
        }

    def _health(
        self, labels: list[str], database: str, shown: list[dict[str, Any]]
    ) -> dict[str, Any]:
        report = health(labels, database)
        # Redundant indexes and drift are index findings too: shown once, under Indexes.
        already = [(f["kind"], f["model"], f["fields"], f["message"]) for f in shown]
        findings = [
            f
            for f in sorted(report.findings, key=by_severity)
            if (f.kind, f.model, list(f.fields), f.message) not in already
        ]
        return {
            "stats_reset": report.stats_reset,
            "stats_window": report.stats_window,
            "tables": [
                {
                    "table": t.table,
                    "rows": f"{t.rows:,}",
                    "table_size": human_size(t.table_bytes),
                    "index_size": human_size(t.index_bytes),
                    "seq_scans": "-" if t.seq_scans is None else f"{t.seq_scans:,}",
                    "index_scans": "-" if t.index_scans is None else f"{t.index_scans:,}",
                }
                for t in report.tables
            ],
            "findings": [_finding(f) for f in findings],
        }


def _finding(finding: Finding) -> dict[str, Any]:
    data = finding.as_dict()
    data["title"] = title(finding.kind)
    index = finding.index
    data["code"] = (
        (f"migrations.RunSQL({index.sql!r})" if index.sql else f"Meta.indexes: {index.as_code()}")
        if index is not None
        else ""
    )
    return data


def _nplusone_row(found: dict[str, Any], message: str | None, url: str) -> dict[str, Any]:
    relations = found.get("relations") or [found.get("relation", "")]
    headline = (
        message.splitlines()[0]
        if message
        else titled(
            str(found["kind"]),
            [str(r) for r in relations],
            str(found.get("path") or ""),
            str(found.get("model") or ""),
            int(found.get("count") or 0),
        )
    )
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
            ShapeTimes(
                str(r["shape"]),
                str(r.get("index") or ""),
                float(r["before_ms"]),
                float(r["after_ms"]),
            )
            for r in rows["shapes"]
        ]
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise CommandError(
            f"{path} is not the JSON of bench/workload_indexes.py ({error})."
        ) from None
    return {"benchmark": benchmark_chart(shapes), "benchmark_source": str(path)}


def _page_row(page: dict[str, Any], findings: list[Any]) -> dict[str, Any]:
    """A requested page as the summary lists it, with its queries once its proven fixes are
    applied: each proven fix takes off what its own re-run saved."""
    proofs = [f.get("proof") if isinstance(f, dict) else f.proof for f in findings]
    proofs = [p.as_dict() if isinstance(p, Proof) else p for p in proofs]
    saved = sum(
        p["before"] - p["after"]
        for p in proofs
        if isinstance(p, dict)
        and p.get("verdict") == "proven"
        and isinstance(p.get("before"), int)
        and isinstance(p.get("after"), int)
    )
    queries, query_ms = page.get("queries"), page.get("query_ms")
    status = int(page.get("status", 200))
    row = {
        "url": page["url"],
        "status": status,
        "queries": queries,
        "query_ms": None if query_ms is None else f"{float(query_ms):.1f}",
        "fixes": sum(1 for p in proofs if isinstance(p, dict) and p.get("verdict") == "proven"),
    }
    if isinstance(queries, int) and 200 <= status < 300:
        after = max(queries - saved, 0)
        row["after"] = after
        row["chart"] = page_chart(queries, after, None if query_ms is None else float(query_ms))
    return row


def _summary(context: dict[str, Any]) -> dict[str, Any]:
    """The counts by section and severity, and the table of contents."""

    def counted(findings: list[dict[str, Any]]) -> list[int]:
        severities = [f["severity"] for f in findings]
        return [severities.count(s) for s in reversed(SEVERITIES)] + [len(severities)]

    # Not looked for (no page asked, or none answered 2xx): no count, and no pass either.
    nplusone = len(context["nplusone"]) if context["nplusone_pages_checked"] else None
    counts: list[dict[str, Any]] = [
        {"id": "indexes", "title": "Indexes", "counts": counted(context["index_findings"])},
        {"id": "nplusone", "title": "N+1 queries", "total": nplusone},
        {
            "id": "health",
            "title": "Index health",
            "counts": counted(context["health"]["findings"]),
        },
    ]
    contents = [("summary", "Summary")]
    if context["pages"]:
        contents.append(("pages", "Requested pages"))
    contents += [(row["id"], row["title"]) for row in counts]
    if context.get("benchmark"):
        contents.append(("benchmark", "Query time per shape, before and after"))
    return {"counts": counts, "contents": contents}


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
