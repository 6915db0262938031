"""Whether an index no query has used may be advised for removal.

Zero scans mean little on statistics a few minutes old, or on an index built yesterday; and
``index_health`` must never advise dropping what ``suggest_indexes`` then asks to add again.
So removal is advised only when the statistics cover at least ``UNUSED_INDEX_MIN_DAYS``, the
index is at least that old (from when the migration that created it was applied), it backs
no constraint and no foreign key, and neither the project's code nor the model's ordering
shows a query it would serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import (
    AddField,
    AddIndex,
    AlterField,
    AlterIndexTogether,
    AlterUniqueTogether,
    CreateModel,
)
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from django_dbtune.advisor.code_scan import Usage
from django_dbtune.schema import ModelSchema, column_of

if TYPE_CHECKING:
    from django_dbtune.advisor.index_stats import IndexStats

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class StatsWindow:
    """The period the database's usage statistics cover, as far as it can tell."""

    now: datetime
    since: datetime | None
    """When they began: the last reset, else the database's creation; None: unknown."""
    source: str
    """``reset``, ``created`` (never reset), ``started`` (MariaDB's and MySQL's
    performance_schema: since the server started) or ``unknown``."""

    @property
    def days(self) -> float | None:
        return None if self.since is None else age_days(self.now, self.since)

    def describe(self) -> str:
        if self.since is None:
            return (
                "statistics cover an unknown period (never reset, and the database's age "
                "cannot be read)"
            )
        since = self.since.isoformat(timespec="seconds")
        start = {
            "reset": "reset",
            "started": "server started: its counts begin then",
        }.get(self.source, "database created, never reset")
        return f"statistics cover {_days(self.days)} (since {since}, {start})"


def stats_window(connection: BaseDatabaseWrapper) -> StatsWindow:
    window = _stats_window(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), pg_postmaster_start_time()")
        standby, started = cursor.fetchone()
    # A standby counts from its own start at the latest: a copy of the primary's files keeps
    # their dates, and a standby's counts do not survive every restart.
    if standby and (window.since is None or window.since < started):
        return StatsWindow(window.now, started, "started")
    return window


def _stats_window(connection: BaseDatabaseWrapper) -> StatsWindow:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT now(), stats_reset FROM pg_stat_database WHERE datname = current_database()"
        )
        now, reset = cursor.fetchone()
    if reset is not None:
        return StatsWindow(now, reset, "reset")
    try:
        # Never reset: they count from the database's creation (reading the age of its
        # folder needs superuser or pg_read_server_files).
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(
                "SELECT (pg_stat_file('base/' || oid || '/PG_VERSION')).modification "
                "FROM pg_database WHERE datname = current_database()"
            )
            row = cursor.fetchone()
    except DatabaseError:
        row = None
    if row and row[0] is not None:
        return StatsWindow(now, row[0], "created")
    return StatsWindow(now, None, "unknown")


@dataclass
class Births:
    """When the migrations that may have created each index were applied (the latest one)."""

    named: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    fields: dict[tuple[str, str, str], tuple[datetime, str]] = field(default_factory=dict)
    """(app label, model name, field name) -> when a migration last added or altered it."""
    together: dict[tuple[str, str], tuple[datetime, str]] = field(default_factory=dict)

    def of(
        self, schema: ModelSchema, name: str, columns: tuple[str, ...]
    ) -> tuple[datetime, str] | None:
        """When the index was created at the latest, and by which migration; None when no
        applied migration of the project created it."""
        meta = schema.model._meta
        key = (meta.app_label, meta.model_name or "")
        names = {column_of(f): f.name for f in meta.concrete_fields}
        found = [self.named.get(name)]
        if not found[0] and columns and all(column in names for column in columns):
            found += [self.fields.get((*key, names[column])) for column in columns]
            if len(columns) > 1:
                found.append(self.together.get(key))
        times = [time for time in found if time is not None]
        return max(times) if times else None


def births(connection: BaseDatabaseWrapper) -> Births:
    """What the applied migrations created, from Django's own migration records."""
    result = Births()
    recorder = MigrationRecorder(connection)
    if not recorder.has_table():
        return result
    applied = recorder.applied_migrations()
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    for key in sorted(applied, key=lambda k: applied[k].applied):
        migration = loader.graph.nodes.get(key)
        if migration is None:
            continue
        when = (applied[key].applied, f"{key[0]}.{key[1]}")
        app = key[0]
        for operation in migration.operations:
            if isinstance(operation, AddIndex):
                result.named[operation.index.name] = when
            elif isinstance(operation, CreateModel):
                model = operation.name_lower
                for index in operation.options.get("indexes", []):
                    result.named[index.name] = when
                for name, _ in operation.fields:
                    result.fields[(app, model, name)] = when
                result.together[(app, model)] = when
            elif isinstance(operation, AddField | AlterField):
                result.fields[(app, operation.model_name_lower, operation.name)] = when
            elif isinstance(operation, AlterIndexTogether | AlterUniqueTogether):
                result.together[(app, operation.name_lower)] = when
    return result


def serving_use(schema: ModelSchema, index: IndexStats, usages: list[Usage]) -> str | None:
    """Where the project's code (or the model's ordering) filters or sorts by the index's
    leading column, or searches it (a GIN or GiST index), which the index would serve;
    None when nowhere."""
    name, columns = index.name, index.columns
    if not columns:
        # An expression index (a trigram index on Upper(col)...): which columns it serves
        # cannot be read, so neither can whether the code uses it.
        return "an expression index: whether the code uses it cannot be told"
    # Django's pattern index of a text field serves prefix searches only.
    pattern_only = name.endswith("_like")
    model = schema.model
    names = {column_of(f): f.name for f in model._meta.concrete_fields}
    lead = names.get(columns[0])
    if lead is None:
        return None
    for usage in usages:
        if usage.model is not model and not issubclass(usage.model, model):
            continue
        if index.method in SEARCH_METHODS:
            used = {name for name, _ in usage.contains}  # trigram, containment, key lookups
        else:
            used = set(usage.patterns)
            if not pattern_only:
                used |= {name for name, _ in usage.equality} | set(usage.ranges)
                used |= set(usage.single) | {name.lstrip("-") for name in usage.sort[:1]}
        if lead in used:
            return f"the code filters or sorts by {lead} at {usage.file}:{usage.line}"
    ordering = [str(item).lstrip("-") for item in model._meta.ordering or ()]
    if ordering[:1] == [lead] and not pattern_only:
        return f"{model._meta.object_name}.Meta.ordering sorts by {lead}"
    return None


SEARCH_METHODS = frozenset({"gin", "gist"})
"""Index methods that serve ``contains``-like searches, not equality, range or sort."""


def field_pattern_index(schema: ModelSchema, name: str, columns: tuple[str, ...]) -> bool:
    """Django's own ``_like`` index of an indexed text field: it comes and goes with the
    field's index, and the models cannot drop it alone."""
    return name.endswith("_like") and any(
        info.origin == "pattern ops" and info.columns == columns for info in schema.declared
    )


def backed_foreign_key(
    schema: ModelSchema,
    name: str,
    columns: tuple[str, ...],
    others: list[tuple[str, tuple[str, ...]]],
) -> str | None:
    """The foreign key the index serves as its index (Django's own, or the only one that
    leads with it), which suggest_indexes would flag as missing once it is gone."""
    if not columns:
        return None
    for model_field in schema.model._meta.concrete_fields:
        if not model_field.is_relation or column_of(model_field) != columns[0]:
            continue
        alone = not any(other != name and cols[:1] == columns[:1] for other, cols in others)
        if columns == (columns[0],) or alone:
            return model_field.name
    return None


def age_days(now: datetime, then: datetime) -> float:
    if timezone.is_naive(then):  # USE_TZ = False: Django stored local time
        then = timezone.make_aware(then)
    return max((now - then).total_seconds(), 0.0) / SECONDS_PER_DAY


def _days(days: float | None) -> str:
    if days is None:
        return "an unknown period"
    if days * 24 < 1:  # a fresh server or database: "0.0 hours" says nothing
        minutes = days * 24 * 60
        return f"{minutes:.0f} minute{'' if round(minutes) == 1 else 's'}"
    if days < 1:
        return f"{days * 24:.1f} hours"
    return f"{days:.1f} days"
