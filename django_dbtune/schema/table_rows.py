"""How many rows a table holds: the database's own estimate where it keeps one, else a count
that stops at a limit.

PostgreSQL keeps an estimate in ``pg_class.reltuples`` (written by ANALYZE, VACUUM and
autovacuum; -1 from PostgreSQL 14, 0 before, until one of them has run); SQLite keeps one in
``sqlite_stat1`` after ``ANALYZE``. Where there is none, or it says empty (the table may have
filled since), the rows are counted, and the count stops at the limit: on a table of a billion
rows it reads as many rows as on one of ``limit``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

ESTIMATES = {
    "pg_class.reltuples": "PostgreSQL's estimate",
    "sqlite_stat1": "SQLite's statistics from ANALYZE",
}
"""The estimates read, as ``TableRows.source`` names them and the text describes them."""


@dataclass(frozen=True)
class TableRows:
    rows: int | None
    """None: unknown, and ``reason`` says why."""
    source: str | None = None
    """Where ``rows`` comes from: a key of ``ESTIMATES``, ``"count"`` (counted, all of
    them) or ``"count_limit"`` (the count stopped at the limit: at least ``rows``)."""
    reason: str = ""

    @property
    def described(self) -> str:
        """``about 1,200 rows (PostgreSQL's estimate)``; for an unknown size, why."""
        if self.rows is None or self.source is None:
            return self.reason
        if self.source == "count_limit":
            return f"at least {self.rows:,} rows (counted up to {self.rows:,})"
        rows = f"{self.rows:,} row{'s' * (self.rows != 1)}" if self.rows else "no rows"
        if self.source == "count":
            return f"{rows} (counted)"
        return f"about {rows} ({ESTIMATES[self.source]})"


def table_rows(database: str, db_table: str, limit: int) -> TableRows:
    """The rows of ``db_table``, a table that exists in ``database``, as its estimate says,
    else counted up to ``limit``. A read the database refuses gives an unknown size."""
    connection = connections[database]
    try:
        # In a transaction of the caller's (a test, a request), a refused read must not
        # break it: a savepoint takes the error.
        with transaction.atomic(using=database), connection.cursor() as cursor:
            estimate = _estimate(connection, cursor, db_table)
            if estimate is not None:
                return estimate
            limited = connection.ops.limit_offset_sql(0, limit)
            cursor.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM {connection.ops.quote_name(db_table)} "
                f"{limited}) counted"
            )
            row = cursor.fetchone()
    except DatabaseError as error:
        said = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return TableRows(None, reason=f"the database did not say: {said}")
    counted = int(row[0]) if row else 0
    return TableRows(counted, "count_limit" if counted >= limit else "count")


def _estimate(
    connection: BaseDatabaseWrapper, cursor: CursorWrapper, db_table: str
) -> TableRows | None:
    if connection.vendor == "postgresql":
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(db_table)],
        )
        row = cursor.fetchone()
        return TableRows(round(row[0]), "pg_class.reltuples") if row and row[0] > 0 else None
    if connection.vendor == "sqlite":
        cursor.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"
        )
        if cursor.fetchone() is None:
            return None  # never analyzed
        # One row per index (its first number: the rows it holds), or one for the table
        # without an index; a partial index holds fewer, so the largest one.
        cursor.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = %s", [db_table])
        counts = [int(stat.split()[0]) for (stat,) in cursor.fetchall()]
        return TableRows(max(counts), "sqlite_stat1") if counts else None
    return None
