"""``manage.py dbtune_nplusone URL [URL ...]``: each page's N+1 queries, with the fix."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbtune.management.pages import (
    add_page_arguments,
    check_paths,
    nplusone_pages,
    refused,
)


class Command(BaseCommand):
    help = (
        "Request each URL in-process (as the test client does, through every middleware) "
        "and report its N+1 queries and unused select_related/prefetch_related: the "
        "relation, how many extra queries, the line that triggered them, the line that "
        "built the queryset, and the fix as code. A page that answers other than 2xx (a "
        "redirect to the login page, an error) was not checked: the command then exits "
        "with status 1 unless --allow-status accepts that status. With --check, exit with "
        "status 1 when anything is found (for CI)."
    )
    requires_system_checks = "__all__"

    def add_arguments(self, parser: CommandParser) -> None:
        add_page_arguments(parser)
        parser.add_argument(
            "--threshold",
            type=int,
            default=None,
            metavar="N",
            help="Repeats of one relation from one line that make a finding (default: "
            'DBTUNE["NPLUSONE_THRESHOLD"], 2).',
        )
        parser.add_argument(
            "--check", action="store_true", help="Exit with status 1 if anything is found."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        threshold = options["threshold"]
        if threshold is not None and threshold < 2:
            raise CommandError("--threshold must be 2 or more.")
        check_paths(options["urls"])
        pages = nplusone_pages(options["urls"], threshold, options["user"])
        if options["format"] == "json":
            data = [
                {**page.as_dict(), "findings": [f.as_dict() for f in page.findings]}
                for page in pages
            ]
            self.stdout.write(json.dumps(data, indent=2))
        else:
            for page in pages:
                heading = f"GET {page.url}  ->  {page.answer}, {len(page.findings)} finding(s)"
                self.stdout.write(self.style.MIGRATE_HEADING(heading))
                for finding in page.findings:
                    self.stdout.write("  " + finding.message.replace("\n", "\n  "))
                self.stdout.write("")
        problem = refused(pages, options["allow_status"], options["user"])
        if problem:
            raise CommandError(problem)
        if options["check"] and any(page.findings for page in pages):
            raise CommandError("N+1 queries or unused eager loads found.", returncode=1)
