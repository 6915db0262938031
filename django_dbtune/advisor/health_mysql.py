"""``index_health`` on MariaDB and MySQL: sizes from ``information_schema`` and
``mysql.innodb_index_stats``, index use from ``performance_schema``.

``performance_schema.table_io_waits_summary_by_index_usage`` counts, per index, the rows read
through it since the server started (or since someone truncated it, or an ``ALTER TABLE`` of
its table ran: a migration, a trial index, ``ALTER INDEX ... IGNORED``; the table's
``CREATE_TIME`` tells when). MariaDB ships
``performance_schema`` switched off: then no index is reported unused, and the report says
how to switch it on. An index the summary has no row for keeps an unknown count, never a
made-up zero.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from django_dbtune.advisor.index_stats import IndexStats, TableStats
from django_dbtune.advisor.unused_indexes import StatsWindow
from django_dbtune.schema import ModelSchema

SWITCH_ON = (
    "performance_schema is off on this server, so unused indexes are not looked for. To "
    "switch it on, add performance_schema = ON under [mariadb] (MySQL: [mysqld]) in the "
    "server's configuration and restart the server; index use is counted from then on."
)
INSTRUMENT = "wait/io/table/sql/handler"


def mysql_sizes(
    connection: BaseDatabaseWrapper, schemas: dict[str, ModelSchema]
) -> tuple[list[TableStats], list[IndexStats]]:
    """Rows (as InnoDB estimates them) and sizes; the indexes are left out where
    ``mysql.innodb_index_stats`` cannot be read (it needs the privilege)."""
    tables = list(schemas)
    if not tables:
        return [], []
    marks = ", ".join(["%s"] * len(tables))
    found_tables = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT TABLE_NAME, COALESCE(TABLE_ROWS, 0), COALESCE(DATA_LENGTH, 0), "
            "COALESCE(INDEX_LENGTH, 0) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({marks})",
            tables,
        )
        for table, rows, table_bytes, index_bytes in cursor.fetchall():
            sizes_of = (int(rows), int(table_bytes), int(index_bytes))  # (DECIMAL there)
            found_tables.append(TableStats(table, schemas[table].label, *sizes_of, None, None))
        cursor.execute(
            "SELECT TABLE_NAME, INDEX_NAME, MIN(NON_UNIQUE) FROM information_schema.STATISTICS "
            f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({marks}) "
            "GROUP BY TABLE_NAME, INDEX_NAME",
            tables,
        )
        found = cursor.fetchall()
        try:  # (a failed statement leaves MariaDB's transaction as it was)
            cursor.execute(
                "SELECT table_name, index_name, stat_value * @@innodb_page_size "
                "FROM mysql.innodb_index_stats WHERE database_name = DATABASE() "
                f"AND stat_name = 'size' AND table_name IN ({marks})",
                tables,
            )
            sizes = {(table, name): int(size) for table, name, size in cursor.fetchall()}
        except DatabaseError:
            sizes = {}
    indexes = []
    for table, name, non_unique in found:
        if (table, name) in sizes:
            primary, unique = name == "PRIMARY", not non_unique
            actual = schemas[table].actual or []
            columns = next((tuple(i.columns) for i in actual if i.name == name), ())
            indexes.append(
                IndexStats(
                    name,
                    table,
                    schemas[table].label,
                    sizes[table, name],
                    None,
                    primary,
                    unique,
                    True,
                    columns,
                    constraint=primary or unique,
                )
            )
    return found_tables, indexes


def mysql_usage(
    connection: BaseDatabaseWrapper, indexes: list[IndexStats]
) -> tuple[StatsWindow | None, str]:
    """Sets each index's ``scans`` to the rows read through it since the server started;
    the period, or None and why index use cannot be read."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@performance_schema")
        if not cursor.fetchone()[0]:
            return None, SWITCH_ON
        try:
            cursor.execute(
                "SELECT ENABLED FROM performance_schema.setup_instruments WHERE NAME = %s",
                [INSTRUMENT],
            )
            row = cursor.fetchone()
            if not row or row[0] != "YES":
                return None, (
                    f"performance_schema does not count table I/O (instrument {INSTRUMENT} is "
                    "off), so unused indexes are not looked for. Switch it on in the server's "
                    f"configuration (performance-schema-instrument = '{INSTRUMENT}=ON') and "
                    "restart: the counts are read as covering the time since the server "
                    "started, which switching it on while the server runs would make untrue."
                )
            cursor.execute(
                "SELECT OBJECT_NAME, INDEX_NAME, COUNT_READ "
                "FROM performance_schema.table_io_waits_summary_by_index_usage "
                "WHERE OBJECT_SCHEMA = DATABASE() AND INDEX_NAME IS NOT NULL"
            )
            reads = {(table, name): int(count) for table, name, count in cursor.fetchall()}
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
            uptime = float(cursor.fetchone()[1])
            # An ALTER TABLE (ADD or DROP INDEX, IGNORED too) starts the table's counts
            # again, and moves its CREATE_TIME: read in the server's own clock.
            cursor.execute(
                "SELECT TABLE_NAME, TIMESTAMPDIFF(SECOND, CREATE_TIME, NOW()) "
                "FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND CREATE_TIME IS NOT NULL"
            )
            altered = {table: float(ago) for table, ago in cursor.fetchall() if ago is not None}
        except DatabaseError as error:
            return None, (
                f"performance_schema cannot be read by this user ({str(error).strip()}), so "
                "unused indexes are not looked for: GRANT SELECT ON performance_schema.* to it."
            )
    now = timezone.now()
    for index in indexes:
        index.scans = reads.get((index.table, index.name))
        ago = altered.get(index.table)
        if ago is not None and ago < uptime:
            index.counted_since = now - timedelta(seconds=max(ago, 0.0))
    return StatsWindow(now, now - timedelta(seconds=uptime), "started"), ""
