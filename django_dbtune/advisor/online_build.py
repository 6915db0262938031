"""Trial indexes on MariaDB and MySQL: built online, dropped after, the table left as it was.

Their DDL commits, so nothing can be rolled back as on PostgreSQL. Each trial index is built
with ``ALGORITHM=INPLACE, LOCK=NONE`` (reads and writes go on; the build reads the whole table)
and dropped on the way out, whatever happened in between. Each statement waits at most the
lock timeout for the table's metadata lock and runs at most the build timeout (MariaDB's
``SET STATEMENT``; MySQL has none, its session's ``lock_wait_timeout`` applies).

InnoDB drops, without a word, the index it made itself for a foreign key constraint once
another index leading with the same column exists, and then refuses to drop that other index
("needed in a foreign key constraint"). So the indexes of each table are read before the
build, and any that went missing are built again, under their own names, before the trials
are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db.backends.base.base import BaseDatabaseWrapper

from django_dbtune.errors import DbtuneError


class OnlineBuildError(DbtuneError):
    """A trial index cannot be built here (inside a transaction its DDL would commit)."""


@dataclass(frozen=True)
class Trial:
    table: str
    name: str
    create_sql: str
    """``CREATE INDEX`` as the migration would run it (Django's ``Index.create_sql``)."""


@contextmanager
def built(
    connection: BaseDatabaseWrapper, trials: list[Trial], lock_timeout: str, build_timeout: str
) -> Iterator[None]:
    """While inside, ``trials`` exist; on the way out their tables are as they were."""
    if connection.in_atomic_block:
        raise OnlineBuildError(
            "On MariaDB and MySQL a trial index cannot be built inside a transaction: its "
            "CREATE INDEX would commit it."
        )

    def bounded(ddl: str) -> str:
        if not getattr(connection, "mysql_is_mariadb", False):
            return ddl
        lock = int(lock_timeout.removesuffix("s"))
        seconds = int(build_timeout.removesuffix("min")) * 60
        limits = f"lock_wait_timeout = {lock}, max_statement_time = {seconds}"
        return f"SET STATEMENT {limits} FOR {ddl}"

    quote = connection.ops.quote_name
    tables = {trial.table: _indexes(connection, trial.table) for trial in trials}
    done: list[Trial] = []
    try:
        with connection.cursor() as cursor:
            for trial in trials:
                cursor.execute(bounded(f"{trial.create_sql} ALGORITHM=INPLACE LOCK=NONE"))
                done.append(trial)
        yield
    finally:
        with connection.cursor() as cursor:
            for table, had in tables.items():
                has = _indexes(connection, table)
                for name, columns in had.items():
                    if name not in has:
                        cursor.execute(
                            bounded(
                                f"CREATE INDEX {quote(name)} ON {quote(table)} ({columns}) "
                                "ALGORITHM=INPLACE LOCK=NONE"
                            )
                        )
            for trial in reversed(done):
                cursor.execute(
                    bounded(
                        f"ALTER TABLE {quote(trial.table)} DROP INDEX {quote(trial.name)}, "
                        "ALGORITHM=INPLACE, LOCK=NONE"
                    )
                )


def _indexes(connection: BaseDatabaseWrapper, table: str) -> dict[str, str]:
    """The table's non-unique indexes: name -> their column list as ``CREATE INDEX`` takes
    it (with a prefix length where the index has one)."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW INDEX FROM {quote(table)}")
        names = [column[0].lower() for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    found: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        if not row["non_unique"] or row["column_name"] is None:
            continue  # unique keys are never dropped for a foreign key; expressions skipped
        column = quote(row["column_name"])
        if row["sub_part"]:
            column += f"({int(row['sub_part'])})"
        found.setdefault(row["key_name"], []).append((int(row["seq_in_index"]), column))
    return {name: ", ".join(c for _, c in sorted(parts)) for name, parts in found.items()}
