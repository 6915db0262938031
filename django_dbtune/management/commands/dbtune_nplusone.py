"""``manage.py dbtune_nplusone URL [URL ...]``: each page's N+1 queries, with the fix."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbtune.edits import write_all
from django_dbtune.errors import WriteError
from django_dbtune.management.pages import (
    Page,
    add_page_arguments,
    after_writing,
    again,
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
        "with status 1 unless --allow-status accepts that status. Each fix is proven first: "
        "the page is requested again with the fix applied in-process, in a transaction "
        "rolled back, and the finding shows the queries before and after. With --write, "
        "the proven fixes are written into the source (the existing queryset, get_queryset "
        "or list_select_related), then the pages are requested again and their query "
        "counts shown before and after. With --check, exit with status 1 when anything is "
        "found (for CI)."
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
        parser.add_argument(
            "--no-proof",
            action="store_true",
            help="Do not request the pages again to prove each fix (faster; the findings then "
            "say nothing of what the fix measured, and --write has nothing to write).",
        )
        parser.add_argument(
            "--write",
            action="store_true",
            help="Write the proven N+1 fixes into the project's source, then request the "
            "pages again and print their query counts before and after. Unproven fixes and "
            "removals of unused eager loads are left for you to judge.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        threshold = options["threshold"]
        if threshold is not None and threshold < 2:
            raise CommandError("--threshold must be 2 or more.")
        check_paths(options["urls"])
        if options["write"] and options["no_proof"]:
            raise CommandError("--write writes proven fixes only: leave out --no-proof.")
        started = time.time()
        pages = nplusone_pages(
            options["urls"], threshold, options["user"], prove=not options["no_proof"]
        )
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
        if options["write"]:
            self._write(pages, started, options)
            return
        if options["check"] and any(page.findings for page in pages):
            raise CommandError("N+1 queries or unused eager loads found.", returncode=1)

    def _write(self, pages: list[Page], started: float, options: dict[str, Any]) -> None:
        from django_dbtune.nplusone import codemod

        edits = codemod.plan([f for page in pages for f in page.findings], since=started)
        for finding, why in edits.skipped:
            where = f" for {finding.queryset_site}" if finding.queryset_site else ""
            self.stdout.write(f"Not written: {finding.relation}{where} ({finding.fix}): {why}.")
        if not edits.files:
            self.stdout.write("Nothing written: no proven fix to apply.")
            return
        try:
            write_all(edits.files)
        except WriteError as exc:
            raise CommandError(str(exc)) from None
        for finding, place in edits.written:
            code, _, owner = finding.fix.partition("  # on ")  # (the class: said after)
            where = f"{place}, in {owner}" if owner else place
            self.stdout.write(self.style.SUCCESS(f"Wrote {code} at {where}."))
        after, failure = again(options["urls"], options["user"])
        self.stdout.write("")
        self.stdout.write("Requested again with the fixes written:")
        lines, problem = after_writing(pages, after, failure)
        for line in lines:
            self.stdout.write(line)
        if problem:
            raise CommandError(problem)
