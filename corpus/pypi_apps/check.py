"""The real-code check, run by scripts/realcode_check in its own environment.

For each app installed from PyPI (one folder per distribution under ``--apps``), with that
folder as ``DBTUNE["PROJECT_ROOT"]`` so its code is read as a project's own:

1. ``suggest_indexes --format json``, ``index_health`` and ``dbtune_report`` run as a user
   runs them (system checks included), on a freshly migrated PostgreSQL database; any
   exception, error or unexpected line on stderr fails, and so does a report page that
   lacks an index ``suggest_indexes`` proposed;
2. every index a finding proposes is built on PostgreSQL, as the migration ``--write``
   would write builds it (Django renders the ``models.Index``; the finding's own SQL where
   it carries one), one after another in a transaction that is rolled back at the end.

Prints one line per app and exits 1 when anything failed, naming what and why; the last
line counts the apps that passed and failed.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class AppRun:
    name: str
    version: str
    root: Path
    labels: list[str] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    built: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def proposed(self) -> list[dict[str, Any]]:
        return [finding for finding in self.findings if finding["index"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=Path, required=True, help="one folder per distribution")
    parser.add_argument("only", nargs="*", help="distributions to check (default: all)")
    parser.add_argument("--keep", type=Path, help="keep each command's output in this folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every warning")
    args = parser.parse_args()
    installed = sorted(path for path in args.apps.iterdir() if path.is_dir())
    unknown = set(args.only) - {path.name for path in installed}
    if unknown:
        parser.error(f"not installed: {', '.join(sorted(unknown))}")
    folders = [path for path in installed if not args.only or path.name in args.only]
    # The apps' own folders come first on the path: they are what is imported.
    sys.path[:0] = [str(path) for path in installed] + [str(REPO)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "corpus.pypi_apps.settings")
    started = time.monotonic()
    fresh_database()

    import django

    django.setup()
    from django.core.management import call_command

    migrated = time.monotonic()
    call_command("migrate", verbosity=0, interactive=False)
    print(f"migrated in {time.monotonic() - migrated:.0f}s", flush=True)
    failed = 0
    for folder in folders:
        run = check_app(folder, args.keep)
        print(
            f"{run.name} {run.version}: {len(run.labels)} Django apps with models, "
            f"{len(run.findings)} findings, {len(run.proposed)} indexes proposed, "
            f"{run.built} built, {len(run.warnings)} warnings, {run.seconds:.0f}s",
            flush=True,
        )
        for line in run.warnings if args.verbose else ():
            print(f"  {line}")
        for failure in run.failures:
            print(f"  FAILED {failure}")
        failed += bool(run.failures)
    print(f"real-code check done in {time.monotonic() - started:.0f}s")
    print(f"realcode: {len(folders) - failed} passed, {failed} failed")
    return 1 if failed else 0


def fresh_database() -> None:
    """Drop and create the check's database, so every run migrates from nothing."""
    import psycopg

    from corpus.pypi_apps import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        dbname="postgres",
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"],
        port=db["PORT"],
        autocommit=True,
    ) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{db["NAME"]}"')


def check_app(folder: Path, keep: Path | None) -> AppRun:
    from django.apps import apps
    from django.test import override_settings

    from django_dbtune.advisor.suggest import project_app_labels

    run = AppRun(folder.name, distribution_version(folder), folder)
    started = time.monotonic()
    with override_settings(DBTUNE={"PROJECT_ROOT": str(folder)}):
        run.labels = project_app_labels()
        if not run.labels:
            run.failures.append(f"no app with models under {folder}")
            return run
        output = run_command(run, "suggest_indexes", "--format", "json")
        if output is not None:
            run.findings = json.loads(output)
        run_command(run, "index_health")
        check_report(run, keep)
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            (keep / f"{run.name}-suggest_indexes.json").write_text(json.dumps(run.findings))
        build_indexes(run, apps)
    run.seconds = time.monotonic() - started
    return run


def check_report(run: AppRun, keep: Path | None) -> None:
    """dbtune_report's page, which must show each index suggest_indexes proposed."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch, "report.html")
        if run_command(run, "dbtune_report", "--output", str(report)) is None:
            return
        html = report.read_text()
    absent = [f["index"]["name"] for f in run.proposed if f["index"]["name"] not in html]
    if "<html" not in html or absent:
        run.failures.append(f"dbtune_report's page lacks the indexes {absent}")
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        (keep / f"{run.name}-report.html").write_text(html)


def distribution_version(folder: Path) -> str:
    for found in metadata.distributions(path=[str(folder)]):
        return str(found.version)
    return "?"


def run_command(run: AppRun, *argv: str) -> str | None:
    """Run one command as ``manage.py`` would (system checks included); its stdout, or None
    when it failed (the failure is recorded with its traceback)."""
    from django.core.management import call_command

    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        call_command(*argv, stdout=stdout, stderr=stderr, skip_checks=False)
    except BaseException as error:  # a CommandError, a SystemExit (--check) or any bug
        if isinstance(error, KeyboardInterrupt):
            raise
        run.failures.append(f"{' '.join(argv)}: {traceback.format_exc()}")
        return None
    for line in stderr.getvalue().splitlines():
        if line.startswith("warning:"):
            run.warnings.append(f"{argv[0]}: {line}")
        elif line.strip():
            run.failures.append(f"{' '.join(argv)} wrote to stderr: {line}")
    return stdout.getvalue()


def build_indexes(run: AppRun, apps: Any) -> None:
    """Build every proposed index, all in one transaction rolled back at the end, each in a
    savepoint of its own so one failure does not hide the next. An index Meta.indexes would
    declare must also pass Django's model checks once declared there."""
    from django.db import DatabaseError, connection, transaction

    with transaction.atomic():
        for finding in run.proposed:
            model = apps.get_model(finding["model"])
            proposed = finding["index"]
            fields = ", ".join(proposed["fields"])
            what = f"index {proposed['name']} on {finding['model']} ({fields})"
            try:
                with transaction.atomic():
                    if proposed["sql"]:
                        with connection.cursor() as cursor:
                            if "gin_trgm_ops" in proposed["opclasses"]:
                                # What the finding's advice asks of the migration first.
                                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                            cursor.execute(proposed["sql"])
                    else:
                        index = model_index(proposed)
                        if errors := declared_errors(model, index):
                            run.failures.append(f"{what} fails Django's checks: {errors}")
                            continue
                        with connection.schema_editor() as editor:
                            editor.add_index(model, index)
                run.built += 1
            except (DatabaseError, ValueError, TypeError) as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else error
                run.failures.append(f"{what} did not build: {first}")
        transaction.set_rollback(True)


def declared_errors(model: Any, index: Any) -> list[str]:
    """What Django's model checks say once the index is in ``Meta.indexes`` (a name too long,
    a field of another table...), beyond what they said before."""
    before = {str(message) for message in model.check(databases=["default"])}
    declared = model._meta.indexes
    model._meta.indexes = [*declared, index]
    try:
        after = model.check(databases=["default"])
    finally:
        model._meta.indexes = declared
    return [f"{m.id}: {m.msg}" for m in after if m.is_serious() and str(m) not in before]


def model_index(proposed: dict[str, Any]) -> Any:
    """The ``models.Index`` a finding's JSON describes, as ``--write`` declares it (the
    package's own ``ProposedIndex`` renders it, NULLs placement included)."""
    from django_dbtune.findings import ProposedIndex

    lookup = condition(proposed["condition"])
    nulls = [(name, True) for name in proposed.get("nulls_first", [])]
    nulls += [(name, False) for name in proposed.get("nulls_last", [])]
    return ProposedIndex(
        tuple(proposed["fields"]),
        proposed["name"],
        tuple(proposed["opclasses"]),
        include=tuple(proposed["include"]),
        condition_lookup=next(iter(lookup.children), None) if lookup is not None else None,
        nulls=tuple(nulls),
    ).as_index()


def condition(code: str | None) -> Any:
    """``Q(status="open")`` (a finding's condition, as Python) as the ``Q`` itself."""
    from django.db.models import Q

    if not code:
        return None
    call = ast.parse(code, mode="eval").body
    if not (isinstance(call, ast.Call) and not call.args):
        raise ValueError(f"not a Q(field=value) condition: {code}")
    return Q(**{kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg})


if __name__ == "__main__":
    sys.exit(main())
