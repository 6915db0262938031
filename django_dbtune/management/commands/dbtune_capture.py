"""``manage.py dbtune_capture URL [URL ...]``: the queries each page runs, grouped by shape."""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbtune import workload
from django_dbtune.capture import QueryLog, capture_queries
from django_dbtune.management.pages import (
    Page,
    add_page_arguments,
    answered,
    check_paths,
    client,
    refused,
)


class Command(BaseCommand):
    help = (
        "Request each URL in-process (as the test client does, through every middleware) "
        "and report the queries it ran, grouped by shape, the most repeated first, with "
        "the line of your code that ran them. A shape repeated once per row is an N+1. A "
        "page that answers other than 2xx (a redirect to the login page, an error) makes "
        "the command exit with status 1 unless --allow-status accepts that status."
    )
    requires_system_checks = "__all__"

    def add_arguments(self, parser: CommandParser) -> None:
        add_page_arguments(parser)
        parser.add_argument(
            "--top",
            type=int,
            default=5,
            metavar="N",
            help="How many shapes to show per page in text output (default 5).",
        )
        parser.add_argument(
            "--record",
            metavar="PATH",
            help="Also append these pages' workload to PATH (JSON lines, no parameter values "
            "unless DBTUNE['WORKLOAD_PARAMS']), for suggest_indexes --workload PATH.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["top"] < 1:
            raise CommandError("--top must be at least 1.")
        check_paths(options["urls"])
        browser = client(options["user"])
        recorder = workload.Recorder(options["record"]) if options["record"] else None
        pages = []
        for url in options["urls"]:
            watching = recorder.watching() if recorder is not None else nullcontext()
            with capture_queries() as log, watching:
                response = browser.get(url)
            pages.append(
                (answered(url, response, queries=len(log), query_ms=log.duration * 1000), log)
            )
            if recorder is not None:
                recorder.add(log)
        if recorder is not None:
            try:
                count = recorder.flush()
            except OSError as error:
                raise CommandError(f"Cannot write {recorder.path}: {error.strerror}.") from None
            self.stderr.write(f"Recorded {count} query shape(s) in {recorder.path}.")
        if options["format"] == "json":
            self.stdout.write(json.dumps([_page_json(*page) for page in pages], indent=2))
        else:
            for page in pages:
                self._write_text(*page, top=options["top"])
        problem = refused([page for page, _ in pages], options["allow_status"], options["user"])
        if problem:
            raise CommandError(problem)

    def _write_text(self, page: Page, log: QueryLog, top: int) -> None:
        heading = (
            f"GET {page.url}  ->  {page.answer}, {len(log)} queries, {log.duration * 1000:.1f} ms"
        )
        self.stdout.write(self.style.MIGRATE_HEADING(heading))
        shapes = log.shapes()
        for group in shapes[:top]:
            shape = group.shape if len(group.shape) <= 160 else group.shape[:157] + "..."
            self.stdout.write(f"  {group.count:>4}x  {group.duration * 1000:7.2f} ms  {shape}")
            for site, count in group.call_sites[:3]:
                self.stdout.write(f"                       {count:>4}x from {site}")
        if len(shapes) > top:
            more = len(shapes) - top
            self.stdout.write(f"  ... and {more} more shape{'s' if more > 1 else ''}")
        self.stdout.write("")


def _page_json(page: Page, log: QueryLog) -> dict[str, Any]:
    return {**page.as_dict(), "shapes": [group.as_dict() for group in log.shapes()]}
