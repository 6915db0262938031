"""A workload from production on MariaDB and MySQL: ``performance_schema``'s statement
digests.

The server aggregates every app server's statements there
(``events_statements_summary_by_digest``), constants replaced by ``?`` and lists by
``(...)``. Each digest is made a statement Django could have run (``%s`` placeholders), read
as ``pg_stat_statements``' statements are (``statements.statement_shapes``), and planned with
values read from the tables (``table_values``). MariaDB ships ``performance_schema``
switched off: the error says how to switch it on.
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_dbtune.advisor.statements import statement_shapes
from django_dbtune.advisor.trial_methods import ProofError
from django_dbtune.advisor.workload_candidates import Outcome
from django_dbtune.schema import ModelSchema
from django_dbtune.workload import Shape

SOURCE = "performance_schema"
LIMIT = 2000
"""The digests read, the most total time first."""
PICOSECONDS_PER_MS = 1_000_000_000

SWITCH_ON = (
    "performance_schema is off on this server, so it has no statement digests. To switch it "
    "on: add performance_schema = ON under [mariadb] (MySQL: [mysqld]) in the server's "
    "configuration (Debian: a file in /etc/mysql/mariadb.conf.d/), restart the server, and "
    "let the site run: digests are counted from then on. Until then, record a workload "
    "(DBTUNE['WORKLOAD_FILE']) and pass --workload."
)


def read_digests(
    connection: BaseDatabaseWrapper, schemas: dict[str, ModelSchema], outcome: Outcome
) -> list[Shape]:
    """The SELECTs ``performance_schema`` holds digests of for this database, as shapes."""
    if connection.vendor != "mysql":
        raise ProofError(
            f"performance_schema's digests are MariaDB's and MySQL's; {connection.alias!r} is "
            f"{connection.vendor} (PostgreSQL: --from-pg-stat-statements)."
        )
    rows = [
        (runnable(text), calls, total / PICOSECONDS_PER_MS, longest / PICOSECONDS_PER_MS)
        for text, calls, total, longest in _rows(connection)
        if text
    ]
    return statement_shapes(rows, schemas, outcome, connection.alias, "mysql", SOURCE)


def runnable(digest: str) -> str:
    """A digest as Django would run it: ``?`` as ``%s`` (a literal ``%`` doubled), a
    collapsed list ``(...)`` as one value. A digest cut short (``...`` at its end) stays
    unreadable, and is counted as such."""
    text = digest.replace("%", "%%").replace("?", "%s")
    return text.replace("(...)", "(%s)") if not text.rstrip().endswith("...") else text


def _rows(connection: BaseDatabaseWrapper) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@performance_schema")
        if not cursor.fetchone()[0]:
            raise ProofError(SWITCH_ON)
        try:
            cursor.execute(
                "SELECT ENABLED FROM performance_schema.setup_consumers "
                "WHERE NAME = 'statements_digest'"
            )
            row = cursor.fetchone()
            if not row or row[0] != "YES":
                raise ProofError(
                    "performance_schema does not keep statement digests here (its consumer "
                    "statements_digest is off). Switch it on with UPDATE "
                    "performance_schema.setup_consumers SET ENABLED = 'YES' WHERE NAME = "
                    "'statements_digest'; (or performance-schema-consumer-statements-digest = "
                    "ON in the server's configuration), and let the site run."
                )
            cursor.execute(
                "SELECT DIGEST_TEXT, COUNT_STAR, SUM_TIMER_WAIT, MAX_TIMER_WAIT "
                "FROM performance_schema.events_statements_summary_by_digest "
                "WHERE SCHEMA_NAME = DATABASE() ORDER BY SUM_TIMER_WAIT DESC LIMIT %s",
                [LIMIT],
            )
            return list(cursor.fetchall())
        except DatabaseError as error:
            raise ProofError(
                f"The user of database {connection.alias!r} may not read performance_schema "
                f"({str(error).strip()}): GRANT SELECT ON performance_schema.* to it."
            ) from None
