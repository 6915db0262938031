"""``manage.py dbtune_findings``: what production mode found, from every process and host."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbtune.management.production_findings import (
    LOGIN_NOTE,
    as_dict,
    fix_label,
    production_findings,
    reproduce_command,
)
from django_dbtune.models import ProductionFinding


class Command(BaseCommand):
    help = (
        "List what production mode (DBTUNE['PRODUCTION'] with ProductionMiddleware) found "
        "on the sampled requests of every process: N+1 queries, unused eager loads, repeated "
        "statements and slow queries, the most costly first (times seen x what each cost: "
        "extra queries, or milliseconds for a slow query), with the route, the line, when it "
        "was last seen, the fix, and how to reproduce it locally."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--format", choices=("text", "json"), default="text", help="Output format."
        )
        parser.add_argument(
            "--kind",
            action="append",
            choices=(
                "n_plus_one",
                "unused_select_related",
                "unused_prefetch_related",
                "repeated_query",
                "slow_query",
            ),
            help="Only findings of this kind (repeat for several).",
        )
        parser.add_argument(
            "--limit", type=int, default=50, help="At most this many (default 50; 0: all)."
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Exit with status 1 when there is any finding (a CI gate on production's).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 0:
            raise CommandError("--limit must be 0 (all) or more.")
        found = production_findings(options["kind"])
        if options["limit"]:
            found = found[: options["limit"]]
        if options["format"] == "json":
            self.stdout.write(json.dumps([as_dict(row) for row in found], indent=2))
        elif not found:
            self.stdout.write("No production findings.")
        else:
            for row in found:
                self.stdout.write(_as_text(row))
            self.stdout.write(f"{len(found)} finding(s).")
        if options["check"] and found:
            sys.exit(1)


def _as_text(row: ProductionFinding) -> str:
    times = "time" if row.seen == 1 else "times"
    last = f"last {row.last_seen.isoformat(timespec='seconds')}"
    if row.kind == "slow_query":
        each = row.cost / row.seen if row.seen else 0.0
        cost = f"{row.cost:,.0f} ms in all ({each:,.0f} ms each; {last})"
    elif row.kind in ("n_plus_one", "repeated_query"):
        per = f"{row.cost / row.seen if row.seen else 0.0:,.1f}".removesuffix(".0")
        cost = f"{row.cost:,.0f} extra queries in all ({per} per request; {last})"
    else:
        cost = last
    lines = [
        f"{row.kind} on {row.route}: seen {row.seen:,} {times}, {cost}",
        f"  {row.message}",
    ]
    if row.call_site:
        lines.append(f"  at {row.call_site}")
    if row.queryset_site:
        lines.append(f"  queryset built at {row.queryset_site}")
    if row.plan:
        lines.append(f"  plan: {row.plan}")
    if row.fix:
        lines.append(f"  {fix_label(row)}: {row.fix}")
    reproduce = reproduce_command(row)
    if reproduce:
        lines.append(f"  reproduce: {reproduce}  {LOGIN_NOTE}")
    return "\n".join(lines) + "\n"
