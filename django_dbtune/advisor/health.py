"""The index health report: what the indexes cost and whether they earn it.

On PostgreSQL, from its statistics (``pg_stat_user_indexes``, ``pg_stat_user_tables``,
``pg_index``) for the tables the checked models own: indexes never scanned since the
statistics were reset (primary keys and unique indexes aside: they enforce something; advised
for removal only as ``unused_indexes`` allows), invalid
indexes a failed ``CREATE INDEX CONCURRENTLY`` left behind, tables read mostly by sequential
scans, and every table's and index's size (on MariaDB and MySQL the sizes alone). On every
database: duplicate and redundant
indexes, drift between the models and the database, and connection settings that cost time
on every request.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from django_dbtune.advisor.admin_usage import admin_usages
from django_dbtune.advisor.connection_settings import connection_findings
from django_dbtune.advisor.drift import drift
from django_dbtune.advisor.health_mysql import mysql_sizes, mysql_usage
from django_dbtune.advisor.index_stats import IndexStats, TableStats
from django_dbtune.advisor.queryset_chains import scan
from django_dbtune.advisor.schema_rules import redundant_indexes
from django_dbtune.advisor.unused_indexes import (
    StatsWindow,
    age_days,
    backed_foreign_key,
    births,
    field_pattern_index,
    serving_use,
    stats_window,
)
from django_dbtune.conf import conf
from django_dbtune.errors import DbtuneError
from django_dbtune.findings import Finding, Severity
from django_dbtune.schema import ModelSchema, model_schemas
from django_dbtune.schema.innodb import reversible_drop


class HealthError(DbtuneError):
    """The report cannot be made as asked (replicas of a database that is not PostgreSQL)."""


SEQ_SCAN_ROWS = 10_000
"""Tables smaller than this are left out of the sequential-scan check: scanning them is fine."""


@dataclass
class Health:
    database: str
    vendor: str
    stats_reset: str | None = None
    """When PostgreSQL's statistics were last reset (None: never, or not PostgreSQL)."""
    stats_since: str | None = None
    """When the statistics began (the reset, else the database's creation); None: unknown."""
    stats_days: float | None = None
    """How many days they cover; None: unknown (or not PostgreSQL)."""
    stats_window: str = ""
    """The period the statistics cover, as a sentence ("" on other databases)."""
    min_days: float = 0.0
    """UNUSED_INDEX_MIN_DAYS: the least statistics window and index age for removal advice."""
    tables: list[TableStats] = field(default_factory=list)
    indexes: list[IndexStats] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    usage_statistics: bool = False
    """Whether index usage was read (PostgreSQL's statistics, MariaDB's performance_schema):
    without it, no index is reported unused."""
    replicas: list[str] = field(default_factory=list)
    """Aliases of replicas whose statistics were added to the database's: each node counts
    only the queries it ran, and an index is unused only if unused on every node."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "vendor": self.vendor,
            "usage_statistics": self.usage_statistics,
            "replicas": self.replicas,
            "stats_reset": self.stats_reset,
            "stats_since": self.stats_since,
            "stats_days": None if self.stats_days is None else round(self.stats_days, 3),
            "stats_window": self.stats_window,
            "unused_index_min_days": self.min_days,
            "tables": [asdict(table) for table in self.tables],
            "indexes": [_index_dict(index) for index in self.indexes],
            "findings": [finding.as_dict() for finding in self.findings],
        }


def health(app_labels: Iterable[str], database: str, replicas: Iterable[str] = ()) -> Health:
    """The report of ``database``; on PostgreSQL with the index and table usage counted on
    each of ``replicas`` (aliases of its streaming replicas) added in."""
    connection = connections[database]
    schemas = model_schemas(app_labels, database, read_database=True)
    report = Health(database, connection.vendor, min_days=conf.UNUSED_INDEX_MIN_DAYS)
    report.replicas = list(replicas)
    if report.replicas and connection.vendor != "postgresql":
        raise HealthError(
            f"Replicas' statistics are read on PostgreSQL only; {database!r} is "
            f"{connection.vendor}."
        )
    for schema in schemas:
        report.findings.extend(redundant_indexes(schema))
        report.findings.extend(drift(schema))
    report.findings.extend(connection_findings(database))
    if connection.vendor == "postgresql":
        _postgresql(report, {schema.table: schema for schema in schemas})
    elif connection.vendor == "mysql":
        _mysql(report, {schema.table: schema for schema in schemas})
    report.tables.sort(key=lambda t: -(t.table_bytes + t.index_bytes))
    report.indexes.sort(key=lambda i: -i.bytes)
    return report


def _mysql(report: Health, schemas: dict[str, ModelSchema]) -> None:
    connection = connections[report.database]
    report.tables, report.indexes = mysql_sizes(connection, schemas)
    window, why_not = mysql_usage(connection, report.indexes)
    if window is None:
        report.stats_window = why_not  # performance_schema is off, or may not be read
        return
    report.usage_statistics = True
    report.stats_since = window.since.isoformat(timespec="seconds") if window.since else None
    report.stats_days = window.days
    report.stats_window = window.describe()
    _keep_unused(report, window, schemas)
    report.findings.extend(_index_findings(report))


def _postgresql(report: Health, schemas: dict[str, ModelSchema]) -> None:
    connection = connections[report.database]
    window = stats_window(connection)
    if window.source == "reset" and window.since is not None:
        report.stats_reset = window.since.isoformat(timespec="seconds")
    _read_postgresql(report, schemas, connection)
    windows = {report.database: window}
    for alias in report.replicas:
        windows[alias] = _add_replica(report, schemas, alias)
    # Unused on every node for the period the shortest of their statistics covers.
    window = min(windows.values(), key=lambda w: -1.0 if w.days is None else w.days)
    report.stats_since = window.since.isoformat(timespec="seconds") if window.since else None
    report.stats_days = window.days
    report.stats_window = window.describe()
    if report.replicas:
        report.stats_window = "; ".join(
            f"on {alias!r}: {node.describe()}" for alias, node in windows.items()
        )
    report.usage_statistics = True
    _keep_unused(report, window, schemas)
    report.findings.extend(_index_findings(report))
    report.findings.extend(_scan_findings(report))


def _add_replica(report: Health, schemas: dict[str, ModelSchema], alias: str) -> StatsWindow:
    """Adds the scans counted on replica ``alias`` to each table and index of the report."""
    replica = connections[alias]
    if replica.vendor != "postgresql":
        raise HealthError(f"Replica {alias!r} is {replica.vendor}, not PostgreSQL.")
    node = Health(alias, replica.vendor)
    _read_postgresql(node, schemas, replica)
    tables = {table.table: table for table in node.tables}
    for table in report.tables:
        found = tables.get(table.table)
        if found is not None and table.seq_scans is not None and table.index_scans is not None:
            table.seq_scans += found.seq_scans or 0
            table.index_scans += found.index_scans or 0
    indexes = {(index.table, index.name): index for index in node.indexes}
    for index in report.indexes:
        if not index.scans_by_node:
            index.scans_by_node[report.database] = index.scans or 0
        scans = getattr(indexes.get((index.table, index.name)), "scans", None) or 0
        index.scans_by_node[alias] = scans
        index.scans = (index.scans or 0) + scans
    return stats_window(replica)


def _read_postgresql(
    report: Health, schemas: dict[str, ModelSchema], connection: BaseDatabaseWrapper
) -> None:
    """The tables' and indexes' sizes and the scans counted on this node."""
    with connection.cursor() as cursor:
        # Rows: the planner's count from the last ANALYZE, else the statistics' running one.
        cursor.execute(
            "SELECT s.relname, (CASE WHEN c.reltuples >= 0 THEN c.reltuples "
            "ELSE s.n_live_tup END)::bigint, pg_relation_size(s.relid), "
            "pg_indexes_size(s.relid), coalesce(s.seq_scan, 0), coalesce(s.idx_scan, 0) "
            "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.relname = ANY(%s)",
            [list(schemas)],
        )
        for table, rows, table_bytes, index_bytes, seq, idx in cursor.fetchall():
            model = schemas[table].label
            report.tables.append(
                TableStats(table, model, rows, table_bytes, index_bytes, seq, idx)
            )
        cursor.execute(_INDEXES, [list(schemas)])
        for (
            name,
            table,
            size,
            scans,
            primary,
            unique,
            valid,
            constraint,
            columns,
            method,
        ) in cursor.fetchall():
            model = schemas[table].label
            report.indexes.append(
                IndexStats(
                    name,
                    table,
                    model,
                    size,
                    scans,
                    primary,
                    unique,
                    valid,
                    () if None in columns else tuple(columns),
                    constraint,
                    method=method,
                )
            )


_INDEXES = """
SELECT s.indexrelname, s.relname, pg_relation_size(s.indexrelid), s.idx_scan,
       i.indisprimary, i.indisunique, i.indisvalid,
       EXISTS (SELECT 1 FROM pg_constraint c
               WHERE c.conindid = s.indexrelid AND c.conrelid = s.relid
               AND c.contype IN ('p', 'u', 'x')),
       ARRAY(
           SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
           LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           ORDER BY k.position
       ),
       am.amname
FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
JOIN pg_class ic ON ic.oid = s.indexrelid JOIN pg_am am ON am.oid = ic.relam
WHERE s.relname = ANY(%s)
"""


def _index_dict(index: IndexStats) -> dict[str, Any]:
    data = asdict(index)
    since = index.counted_since
    data["counted_since"] = since.isoformat(timespec="seconds") if since is not None else None
    return data


def _unused(index: IndexStats) -> bool:
    return index.valid and index.scans == 0 and not index.primary and not index.unique


def _keep_unused(report: Health, window: StatsWindow, schemas: dict[str, ModelSchema]) -> None:
    """Mark each unused index that must not be advised for removal, with why."""
    unused = [index for index in report.indexes if _unused(index)]
    if not unused:
        return
    days = window.days
    if days is None or days < report.min_days:
        for index in unused:
            index.kept = (
                f"{window.describe()}; removal is advised only on statistics of at least "
                f"UNUSED_INDEX_MIN_DAYS = {report.min_days:g} days"
            )
        return
    connection = connections[report.database]
    born = births(connection)
    app_labels = {schema.model._meta.app_label for schema in schemas.values()}
    usages = scan(conf.PROJECT_ROOT).usages + admin_usages(app_labels)
    on_table: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for index in report.indexes:
        if index.valid and not index.constraint:
            on_table.setdefault(index.table, []).append((index.name, index.columns))
    for index in unused:
        schema = schemas[index.table]
        if index.constraint:
            index.kept = "it backs a constraint"
            continue
        since = index.counted_since
        if since is not None and age_days(window.now, since) < report.min_days:
            index.kept = (
                f"its reads are counted only since {since.isoformat(timespec='seconds')}, when "
                f"{index.table} was last altered (an ALTER TABLE, a migration's or a trial "
                "index's, starts the count again), under UNUSED_INDEX_MIN_DAYS = "
                f"{report.min_days:g} days ago"
            )
            continue
        key = backed_foreign_key(schema, index.name, index.columns, on_table[index.table])
        if key is not None:
            index.kept = (
                f"it is the index of the foreign key {key} (without it, suggest_indexes "
                "reports a missing foreign-key index)"
            )
            continue
        if field_pattern_index(schema, index.name, index.columns):
            index.kept = (
                "it is Django's own pattern index of the field's index (LIKE prefix searches); "
                "it goes only with that index"
            )
            continue
        used = serving_use(schema, index, usages)
        if used is not None:
            index.kept = f"{used}, which it serves"
            continue
        created = born.of(schema, index.name, index.columns)
        if created is not None and age_days(window.now, created[0]) < report.min_days:
            index.kept = (
                f"it was created {created[0].isoformat(timespec='seconds')} (migration "
                f"{created[1]}), under UNUSED_INDEX_MIN_DAYS = {report.min_days:g} days ago"
            )


def _index_findings(report: Health) -> Iterator[Finding]:
    since = f"in the {report.stats_window.removeprefix('statistics cover ')}"
    checked = "Statistics of a replica are its own: check there too before dropping."
    if report.replicas:
        nodes = ", ".join(repr(alias) for alias in [report.database, *report.replicas])
        since = f"on any of {nodes} ({report.stats_window})"
        checked = f"The queries of every node given were counted ({nodes})."
    for index in report.indexes:
        if not index.valid:
            yield _finding(
                report.database,
                index.model,
                "invalid_index",
                "high",
                (
                    f"Index {index.name} on {index.table} is invalid: a CREATE INDEX "
                    "CONCURRENTLY failed part way. Every write still maintains it "
                    f"({human_size(index.bytes)}), and no query can use it."
                ),
                (
                    f"DROP INDEX CONCURRENTLY {index.name}; then build it again (run the "
                    f"migration again, or REINDEX INDEX CONCURRENTLY {index.name};)."
                ),
            )
        elif _unused(index) and index.kept is None:
            yield _finding(
                report.database,
                index.model,
                "unused_index",
                "low",
                (
                    f"Index {index.name} on {index.table} ({human_size(index.bytes)}) has not "
                    f"been used by any query {since}; every write still maintains it."
                ),
                (
                    "If that period covers the site's usual traffic (and its monthly jobs), "
                    f"remove the index from the model and make a migration. {checked}"
                    + _trial_first(report, index)
                ),
            )


def _trial_first(report: Health, index: IndexStats) -> str:
    trial = reversible_drop(connections[report.database], index.table, index.name)
    return f" {trial}" if trial else ""


def _scan_findings(report: Health) -> Iterator[Finding]:
    for table in report.tables:
        seq, idx = table.seq_scans, table.index_scans
        if seq is None or idx is None or table.rows < SEQ_SCAN_ROWS or seq <= idx:
            continue  # (None: a database that keeps no scan counts)
        yield _finding(
            report.database,
            table.model,
            "sequential_scans",
            "medium",
            (
                f"{table.table} ({table.rows:,} rows) is read mostly by sequential scans: "
                f"{table.seq_scans:,} against {table.index_scans:,} index scans {_since(report)}."
            ),
            (
                "Record a workload (DBTUNE['WORKLOAD_FILE'] or pytest --dbtune-record) or use "
                "pg_stat_statements, then: manage.py suggest_indexes --workload PATH (or "
                "--from-pg-stat-statements)."
            ),
        )


def _since(report: Health) -> str:
    return f"since {report.stats_reset}" if report.stats_reset else "since statistics began"


def _finding(
    database: str, model: str, kind: str, severity: Severity, message: str, advice: str
) -> Finding:
    """A health finding: about a model's table or index, or a setting; no fields, no index."""
    return Finding(
        kind=kind,
        severity=severity,
        model=model,
        fields=(),
        database=database,
        message=message,
        advice=advice,
    )


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
