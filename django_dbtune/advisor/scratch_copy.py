"""Proving on a sampled scratch copy of a table (MariaDB and MySQL): the project's tables are
read, never changed nor locked.

For each table a candidate index is for, a new table ``dbtune_scratch_<n>`` is made like it
(``CREATE TABLE ... LIKE``: the same columns and indexes, no foreign key constraints) and
filled with a sample of its rows: every row when it has at most ``rows``, else the rows
whose primary key hashes (``CRC32``) below the sampled share, so the same rows every run,
spread over the whole table. The rows are read with a plain ``SELECT`` (a consistent read:
no row locks) and written to the copy in batches. Trial indexes are built on the copy, the
recorded reads run against it (the other tables of a join are the real ones), and the rows
read from the copy are scaled by the table's rows over the sample's.

The copies are dropped on the way out; copies an interrupted run left stop the next one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from itertools import count

from django.db import DatabaseError, models
from django.db.backends.base.base import BaseDatabaseWrapper

from django_dbtune.advisor.planner import TRIAL_PREFIX, Plan, index_sql, replace_name
from django_dbtune.errors import DbtuneError

SCRATCH_PREFIX = "dbtune_scratch_"
DEFAULT_ROWS = 100_000
"""The rows of a table its copy holds at most: a read of the table, and that much written."""
_BATCH = 2_000


class ScratchCopyError(DbtuneError):
    """A scratch copy cannot be made here (copies of an interrupted run are left, the user
    may not create tables), or could not be dropped."""


@dataclass(frozen=True)
class Sample:
    table: str
    copy: str
    rows: int
    """The rows copied."""
    total: int
    """The rows the table has."""

    @property
    def scale(self) -> float:
        """What the rows read from the copy are multiplied by to stand for the table."""
        return self.total / self.rows if self.rows else 1.0

    def describe(self) -> str:
        if self.rows >= self.total:
            return f"a scratch copy of {self.table} (all its {self.total:,} rows)"
        return (
            f"a sampled scratch copy of {self.table} ({self.rows:,} of its {self.total:,} "
            f"rows; rows read from it scaled by {self.scale:.1f})"
        )


class ScratchCopies:
    """The sampled copies of one run, made when first asked for."""

    def __init__(self, connection: BaseDatabaseWrapper, rows: int = DEFAULT_ROWS):
        self.connection = connection
        self.rows = rows
        self.samples: dict[str, Sample] = {}
        self._numbers = count(1)

    def of(self, table: str) -> Sample:
        if table not in self.samples:
            self.samples[table] = self._copy(table, f"{SCRATCH_PREFIX}{next(self._numbers)}")
        return self.samples[table]

    def _copy(self, table: str, copy: str) -> Sample:
        quote = self.connection.ops.quote_name
        with self.connection.cursor() as cursor:
            key = self.connection.introspection.get_primary_key_column(cursor, table)
            cursor.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "DATABASE() AND table_name = %s AND extra NOT LIKE %s ORDER BY ordinal_position",
                [table, "%GENERATED%"],
            )
            columns = ", ".join(quote(name) for (name,) in cursor.fetchall())
            cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")
            (total,) = cursor.fetchone()
            try:
                cursor.execute(f"CREATE TABLE {quote(copy)} LIKE {quote(table)}")
            except DatabaseError as error:
                raise ScratchCopyError(
                    f"A scratch copy of {table} could not be created ({str(error).strip()}): "
                    "the database user needs the CREATE and DROP privileges on this database."
                ) from None
            # From here on the copy exists: registered before filling, so it is dropped.
            self.samples[table] = Sample(table, copy, 0, int(total))
            where = ""
            if total > self.rows and key:
                below = int(self.rows / total * 2**32)
                where = f" WHERE CRC32({quote(key)}) < {below}"
            elif total > self.rows:
                where = f" LIMIT {int(self.rows)}"  # no primary key: the first rows
            cursor.execute(f"SELECT {columns} FROM {quote(table)}{where}")
            insert = (
                f"INSERT INTO {quote(copy)} ({columns}) VALUES "
                f"({', '.join(['%s'] * len(columns.split(', ')))})"
            )
            copied = 0
            with self.connection.cursor() as writer:
                while batch := cursor.fetchmany(_BATCH):
                    writer.executemany(insert, batch)
                    copied += len(batch)
                writer.execute(f"ANALYZE TABLE {quote(copy)}")
                writer.fetchall()
        return Sample(table, copy, copied, int(total))

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
        for sample in self.samples.values():
            try:
                with self.connection.cursor() as cursor:
                    cursor.execute(f"DROP TABLE IF EXISTS {quote(sample.copy)}")
            except DatabaseError as error:
                failed.append(f"DROP TABLE {quote(sample.copy)}; ({str(error).strip()})")
        self.samples.clear()
        if failed:
            raise ScratchCopyError(
                "A scratch copy could not be dropped; drop it yourself: " + " ".join(failed)
            )


def on_sample(plan: Plan, sample: Sample) -> Plan:
    """A plan of a read of ``sample``'s copy as one of its table: named by the table, the
    rows read from the copy scaled to the table's."""
    rows = {
        (sample.table if table == sample.copy else table): (
            count * sample.scale if table == sample.copy else count
        )
        for table, count in plan.rows_read.items()
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
        left = [name for (name,) in cursor.fetchall()]
    if left:
        quote = connection.ops.quote_name
        raise ScratchCopyError(
            "Scratch copies of an interrupted run are still there; drop them first: "
            + " ".join(f"DROP TABLE {quote(name)};" for name in sorted(left))
        )
    copies = ScratchCopies(connection, rows)
    try:
        yield copies
    finally:
        copies.drop()
