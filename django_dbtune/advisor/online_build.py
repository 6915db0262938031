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

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_dbtune.errors import DbtuneError
from django_dbtune.schema.innodb import is_mariadb

TRIAL_PREFIX = "dbtune_trial_"


class OnlineBuildError(DbtuneError):
    """A trial index cannot be built here (inside a transaction its DDL would commit, or an
    interrupted run left trials), or a table could not be put back as it was."""


@dataclass(frozen=True)
class Trial:
    table: str
    name: str
    create_sql: str
    """``CREATE INDEX`` as the migration would run it (Django's ``Index.create_sql``)."""


CLEANUP_LOCK_SECONDS = 60
"""How long the drop (and a restore) may wait for the table's metadata lock: longer than a
build's wait, since giving up leaves the table changed."""


@contextmanager
def built(
    connection: BaseDatabaseWrapper, trials: list[Trial], lock_seconds: int, build_seconds: int
) -> Iterator[None]:
    """While inside, ``trials`` exist; on the way out their tables are as they were, or
    :class:`OnlineBuildError` says what is left and the statements that undo it."""
    if connection.in_atomic_block or not connection.get_autocommit():
        raise OnlineBuildError(
            "On MariaDB and MySQL a trial index cannot be built inside a transaction: its "
            "CREATE INDEX would commit it."
        )
    quote = connection.ops.quote_name
    tables = {trial.table: _indexes(connection, trial.table) for trial in trials}
    left = [
        f"ALTER TABLE {quote(table)} DROP INDEX {quote(name)}"
        for table, had in tables.items()
        for name in had
        if name.startswith(TRIAL_PREFIX)
    ]
    if left:
        raise OnlineBuildError(
            "Trial indexes of an interrupted run are still there; drop them first: "
            + "; ".join(left)
            + ";"
        )
    started: list[Trial] = []
    try:
        for trial in trials:
            started.append(trial)  # before it runs: an interrupt may come as it ends
            _run(
                connection,
                f"{trial.create_sql} ALGORITHM=INPLACE LOCK=NONE",
                lock_seconds,
                build_seconds,
            )
        yield
    finally:
        # (statement, how it runs online): the indexes InnoDB dropped, then the trials.
        now = {table: _indexes(connection, table) for table in tables}
        undo = [
            (f"CREATE INDEX {quote(name)} ON {quote(table)} ({columns})", " ALGORITHM=INPLACE")
            for table, had in tables.items()
            for name, columns in had.items()
            if name not in now[table]
        ] + [
            (
                f"ALTER TABLE {quote(trial.table)} DROP INDEX {quote(trial.name)}",
                ", ALGORITHM=INPLACE",
            )
            for trial in reversed(started)
            if trial.name in now[trial.table]  # (a build that failed left nothing)
        ]
        failed = []
        for statement, online in undo:  # each on its own: one failing must not stop the rest
            try:
                lock = " LOCK=NONE" if online.startswith(" ") else ", LOCK=NONE"
                _run(connection, statement + online + lock, CLEANUP_LOCK_SECONDS, build_seconds)
            except DatabaseError as error:
                failed.append(f"{statement}; ({str(error).strip()})")
        if failed:
            raise OnlineBuildError(
                "The table could not be put back as it was; run these yourself: "
                + " ".join(failed)
            )


def _run(connection: BaseDatabaseWrapper, ddl: str, lock_seconds: int, seconds: int) -> None:
    """``ddl`` waiting at most ``lock_seconds`` for the table's metadata lock, and on
    MariaDB running at most ``seconds`` (MySQL has no ``SET STATEMENT``: its session's
    ``lock_wait_timeout`` is set for the statement, then put back)."""
    with connection.cursor() as cursor:
        if is_mariadb(connection):
            limits = f"lock_wait_timeout = {lock_seconds}, max_statement_time = {seconds}"
            cursor.execute(f"SET STATEMENT {limits} FOR {ddl}")
            return
        cursor.execute("SELECT @@SESSION.lock_wait_timeout")
        (saved,) = cursor.fetchone()
        cursor.execute(f"SET SESSION lock_wait_timeout = {int(lock_seconds)}")
        try:
            cursor.execute(ddl)
        finally:
            cursor.execute(f"SET SESSION lock_wait_timeout = {int(saved)}")


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
