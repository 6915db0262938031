"""Proving on a sampled scratch copy of a table (MariaDB and MySQL): no index is built on the
project's tables, and nothing is written to them.

For each table a candidate index is for, a new table ``dbtune_scratch_<connection>_<n>`` is
made like it (``CREATE TABLE ... LIKE``: the same columns and indexes, no foreign key
constraints) and filled with a sample of its rows: every row when it has at most ``rows``,
else the rows whose primary key hashes (``CRC32``) below the sampled share, so the same rows
every run, spread over the whole table. The rows are read with plain ``SELECT``s (consistent
reads: no row locks), in batches along the primary key, and written to the copy. Trial
indexes are built on the copy and the recorded reads run against it (the other tables of a
join are the real ones). The rows a read without a ``LIMIT`` reads from the copy are scaled
by the table's rows over the sample's; a read with one stops early whatever the table's size,
and is not scaled.

The copies are dropped on the way out; copies whose run's connection is gone stop the next
run, with their ``DROP TABLE``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from itertools import count
from typing import Any

from django.db import DatabaseError, models
from django.db.backends.base.base import BaseDatabaseWrapper
from sqlglot import exp

from django_dbtune.advisor.planner import TRIAL_PREFIX, Plan, index_sql, replace_name
from django_dbtune.errors import DbtuneError
from django_dbtune.schema.innodb import is_mariadb
from django_dbtune.sql import parse_quietly, to_named

SCRATCH_PREFIX = "dbtune_scratch_"
DEFAULT_ROWS = 100_000
"""The rows of a table its copy holds at most."""
_BATCH = 2_000
"""The rows read and written at a time (what the process holds at once)."""
_SECONDS = 300
"""How long one of the reads that fill a copy may run (MariaDB)."""


class ScratchCopyError(DbtuneError):
    """A scratch copy cannot be made here (inside a transaction, copies a run left, no
    privilege, a sample that came out empty), or could not be dropped."""


@dataclass(frozen=True)
class Sample:
    table: str
    copy: str
    rows: int
    """The rows copied."""
    total: int
    """The rows the table has."""
    how: str = "sampled"
    """``sampled`` by the primary key's hash, or ``first`` rows (a table without one)."""

    @property
    def scale(self) -> float:
        """What the rows read from the copy are multiplied by to stand for the table."""
        return self.total / self.rows if self.rows else 1.0

    def describe(self, measured: bool = True) -> str:
        if self.rows >= self.total:
            return f"a scratch copy of {self.table} (all its {self.total:,} rows)"
        which = "its first" if self.how == "first" else "a sample of"
        scaled = (
            f"; rows read from it scaled by {self.scale:.1f}, by reads without a LIMIT"
            if measured
            else ""
        )
        return (
            f"a scratch copy of {self.table} ({which} {self.rows:,} of its {self.total:,} "
            f"rows{scaled})"
        )


class ScratchCopies:
    """The sampled copies of one run, made when first asked for."""

    def __init__(self, connection: BaseDatabaseWrapper, rows: int = DEFAULT_ROWS):
        self.connection = connection
        self.rows = rows
        self.samples: dict[str, Sample] = {}
        self._made: list[str] = []
        """Every copy created, filled or not: all dropped."""
        self._numbers = count(1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            self._run = f"{SCRATCH_PREFIX}{cursor.fetchone()[0]}_"

    def of(self, table: str) -> Sample:
        if table not in self.samples:
            self.samples[table] = self._copy(table, f"{self._run}{next(self._numbers)}")
        return self.samples[table]

    def _copy(self, table: str, copy: str) -> Sample:
        quote = self.connection.ops.quote_name
        with self.connection.cursor() as cursor:
            keys = self.connection.introspection.get_primary_key_columns(cursor, table) or []
            # Generated columns take no value; a column whose default is an expression
            # (MySQL's DEFAULT_GENERATED) does, and is copied.
            cursor.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "DATABASE() AND table_name = %s AND COALESCE(generation_expression, '') = '' "
                "ORDER BY ordinal_position",
                [table],
            )
            columns = [name for (name,) in cursor.fetchall()]
            cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")
            (total,) = cursor.fetchone()
            try:
                cursor.execute(f"CREATE TABLE {quote(copy)} LIKE {quote(table)}")
            except DatabaseError as error:
                raise ScratchCopyError(
                    f"A scratch copy of {table} could not be created: {str(error).strip()} "
                    "(the database user needs the CREATE and DROP privileges)."
                ) from None
        self._made.append(copy)
        how = "sampled" if keys else "first"
        try:
            copied = self._fill(table, copy, columns, keys, int(total))
        except DatabaseError as error:
            raise ScratchCopyError(
                f"The scratch copy of {table} could not be filled: {str(error).strip()}"
            ) from None
        if total and not copied:
            raise ScratchCopyError(
                f"The sample of {table} came out empty ({total:,} rows): give more rows to "
                "--scratch-rows."
            )
        return Sample(table, copy, copied, int(total), how)

    def _fill(self, table: str, copy: str, columns: list[str], keys: list[str], total: int) -> int:
        """Copies the sample in batches along the primary key; how many rows it copied."""
        quote = self.connection.ops.quote_name
        listed = ", ".join(quote(name) for name in columns)
        insert = (
            f"INSERT INTO {quote(copy)} ({listed.replace('%', '%%')}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        sampled = total > self.rows
        below = int(self.rows / total * 2**32) if sampled else 0
        copied = 0
        with self.connection.cursor() as reader, self.connection.cursor() as writer:
            if len(keys) != 1:
                # No single-column key to page along: one read, of at most ``rows`` rows
                # (by the hash of every key column; without a key, the first rows).
                hashed = f"CRC32(CONCAT_WS(',', {', '.join(quote(k) for k in keys)}))"
                where = f" WHERE {hashed} < {below}" if keys and sampled else ""
                self._read(
                    reader, f"SELECT {listed} FROM {quote(table)}{where} LIMIT {self.rows}", []
                )
                while batch := reader.fetchmany(_BATCH):
                    writer.executemany(insert, batch)
                    copied += len(batch)
            else:
                key = quote(keys[0])
                position = columns.index(keys[0])
                hashed = f" AND CRC32({key}) < {below}" if sampled else ""
                after: Any = None
                while True:
                    where = (
                        f"WHERE {key} > %s{hashed}" if after is not None else f"WHERE TRUE{hashed}"
                    )
                    self._read(
                        reader,
                        f"SELECT {listed} FROM {quote(table)} {where} ORDER BY {key} "
                        f"LIMIT {_BATCH}",
                        [after] if after is not None else [],
                    )
                    batch = reader.fetchall()
                    if not batch:
                        break
                    writer.executemany(insert, batch)
                    copied += len(batch)
                    after = batch[-1][position]
            writer.execute(f"ANALYZE TABLE {quote(copy)}")
            writer.fetchall()
        return copied

    def _read(self, cursor: Any, sql: str, params: list[Any]) -> None:
        """One bounded read: at most ``_SECONDS`` on MariaDB (its metadata lock on the table,
        which a waiting ALTER queues behind, lasts as long)."""
        if is_mariadb(self.connection):
            sql = f"SET STATEMENT max_statement_time = {_SECONDS} FOR {sql}"
        cursor.execute(sql, params)

    @contextmanager
    def built(
        self, indexes: list[tuple[type[models.Model], models.Index]], numbers: Iterator[int]
    ) -> Iterator[list[str]]:
        """While inside, ``indexes`` exist on their tables' copies, named
        ``dbtune_trial_<n>`` (``n`` from ``numbers``): yields those names."""
        built: list[tuple[str, str]] = []
        quote = self.connection.ops.quote_name
        try:
            with self.connection.cursor() as cursor:
                for model, index in indexes:
                    copy = self.of(model._meta.db_table).copy
                    trial = replace_name(index, f"{TRIAL_PREFIX}{next(numbers)}")
                    built.append((copy, trial.name))
                    cursor.execute(index_sql(self.connection, model, trial, copy))
            yield [name for _, name in built]
        finally:
            with self.connection.cursor() as cursor:
                for copy, name in reversed(built):
                    with suppress(DatabaseError):  # (a failed build left nothing)
                        cursor.execute(f"DROP INDEX {quote(name)} ON {quote(copy)}")

    def drop(self) -> None:
        quote = self.connection.ops.quote_name
        failed = []
        for copy in self._made:
            try:
                with self.connection.cursor() as cursor:
                    cursor.execute(f"DROP TABLE IF EXISTS {quote(copy)}")
            except DatabaseError as error:
                failed.append(f"DROP TABLE {quote(copy)}; ({str(error).strip()})")
        self._made.clear()
        self.samples.clear()
        if failed:
            raise ScratchCopyError(
                "A scratch copy could not be dropped; drop it yourself: " + " ".join(failed)
            )


def stops_early(sql: str) -> bool:
    """Whether a read has a ``LIMIT`` of its own: it reads about as many rows of a sample
    as of the whole table (``exists()``, a page), so its rows are not scaled."""
    tree = parse_quietly(to_named(sql), "mysql")
    return tree is None or tree.args.get("limit") is not None or isinstance(tree, exp.Union)


def on_sample(plan: Plan, sample: Sample, scaled: bool) -> Plan:
    """A plan of a read of ``sample``'s copy as one of its table: named by the table, the
    rows read from the copy scaled to the table's when ``scaled``."""
    factor = sample.scale if scaled else 1.0
    rows = {
        (sample.table if table == sample.copy else table): (
            number * factor if table == sample.copy else number
        )
        for table, number in plan.rows_read.items()
    }
    accesses = [
        replace(
            access,
            table=sample.table if access.table == sample.copy else access.table,
            detail=access.detail.replace(sample.copy, sample.table),
        )
        for access in plan.accesses
    ]
    cost = sum(rows.values()) if plan.unit != "cost" else plan.cost
    text = plan.text.replace(sample.copy, sample.table)
    return Plan(accesses, cost, plan.top, text, plan.unit, rows)


_RUN = re.compile(rf"^{SCRATCH_PREFIX}(\d+)_\d+$")


@contextmanager
def scratch_copies(connection: BaseDatabaseWrapper, rows: int) -> Iterator[ScratchCopies]:
    """Copies made while inside (``ScratchCopies.of``), all dropped on the way out."""
    if connection.in_atomic_block or not connection.get_autocommit():
        raise ScratchCopyError(
            "A scratch copy cannot be made inside a transaction: its CREATE TABLE would commit it."
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "DATABASE() AND table_name LIKE %s",
            [SCRATCH_PREFIX.replace("_", "\\_") + "%"],
        )
        names = [name for (name,) in cursor.fetchall()]
        cursor.execute("SELECT id FROM information_schema.processlist")
        running = {str(number) for (number,) in cursor.fetchall()}
    # A copy another run is using (its connection is there) is left alone; one whose run's
    # connection is gone was left by a run that was interrupted.
    left = [name for name in names if (m := _RUN.match(name)) is None or m[1] not in running]
    if left:
        quote = connection.ops.quote_name
        raise ScratchCopyError(
            "Scratch copies of an interrupted run are still there (their connection is "
            "gone); drop them first: "
            + " ".join(f"DROP TABLE {quote(name)};" for name in sorted(left))
        )
    copies = ScratchCopies(connection, rows)
    try:
        yield copies
    finally:
        copies.drop()
