"""``manage.py seed_demo``: fill the example project with deterministic, realistic data."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError
from tqdm import tqdm

from dashboard import seed


class Command(BaseCommand):
    help = (
        "Fill the example project with demo data: users, websites, crawls and page results, "
        "businesses and posts, jobs and payments. --scale 1 (the default) writes about "
        "13,000 rows; page results grow as 5,000 x scale (--scale 200 writes 1,000,000). "
        "The same --scale and --seed always write the same rows."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scale", type=float, default=1.0, help="Size factor (default 1).")
        parser.add_argument("--seed", type=int, default=7, help="Random seed (default 7).")
        parser.add_argument(
            "--reset", action="store_true", help="Replace demo data that is already there."
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default 'default')."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scale, using = options["scale"], options["database"]
        if not 0 < scale <= 10_000:
            raise CommandError(f"--scale must be above 0 and at most 10000, not {scale}.")
        if using not in connections:
            raise CommandError(f"There is no database {using!r} in settings.DATABASES.")
        try:
            if seed.has_demo_data(using):
                if not options["reset"]:
                    raise CommandError(
                        "The database already has demo data. Pass --reset to replace it."
                    )
                seed.reset(using)
            plan = seed.Plan.for_scale(scale)
            started = time.perf_counter()
            with tqdm(
                total=plan.total, unit=" rows", disable=None if options["verbosity"] >= 1 else True
            ) as bar:
                counts = seed.seed(scale, seed=options["seed"], using=using, progress=bar.update)
        except DatabaseError as exc:
            raise CommandError(
                f"Could not write demo data: {exc}. If tables are missing, run "
                "'manage.py migrate' first."
            ) from exc
        elapsed = time.perf_counter() - started
        total = sum(counts.values())
        self.stdout.write(
            self.style.SUCCESS(f"Wrote {total:,} rows in {elapsed:.1f} s at scale {scale:g}:")
        )
        for label, count in sorted(counts.items()):
            self.stdout.write(f"  {label:<32} {count:>10,}")
