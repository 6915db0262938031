"""How a workload's candidate indexes are made present to the planner, as the database and the
options allow: HypoPG's hypothetical indexes, a build rolled back (PostgreSQL), a build
online and dropped (MariaDB, MySQL), or a build on scratch copies of the tables."""

from __future__ import annotations

from typing import Literal

from django.db.backends.base.base import BaseDatabaseWrapper

from django_dbtune.advisor import planner
from django_dbtune.advisor.planner import TrialIndexes
from django_dbtune.conf import conf
from django_dbtune.errors import DbtuneError
from django_dbtune.schema.innodb import database_name


class ProofError(DbtuneError):
    """The planner cannot be asked (no HypoPG and building not allowed, no permission...)."""


def trial_indexes(
    connection: BaseDatabaseWrapper, allow_build: bool, scratch_rows: int | None
) -> TrialIndexes:
    """HypoPG where the database has it; else a build (rolled back on PostgreSQL, dropped
    on MariaDB), only when allowed and never on a production alias; on MariaDB and MySQL,
    when asked, a build on scratch copies of the tables."""
    if scratch_rows is not None:
        if connection.in_atomic_block:
            raise ProofError(
                "--scratch-copy cannot run inside a transaction: each copy's CREATE TABLE "
                "would commit it."
            )
        return TrialIndexes(connection, _buildable(connection, "sample", "--scratch-copy"))
    if connection.vendor == "mysql":
        if allow_build and connection.in_atomic_block:
            raise ProofError(
                f"On {database_name(connection)} --allow-build cannot run inside a transaction: "
                "each trial index's CREATE INDEX would commit it."
            )
        if allow_build:
            return TrialIndexes(connection, _buildable(connection, "online"))
        raise ProofError(
            f"Proving indexes on {database_name(connection)} means building each candidate: "
            "it has no hypothetical indexes. Pass --allow-build to build each one online "
            "(ALGORITHM=INPLACE, LOCK=NONE: reads and writes go on, but it reads the whole "
            "table and DDL cannot be rolled back there), plan the queries, and drop it. Use a "
            "development or staging copy, not production. Or pass --scratch-copy to build "
            "each one on a sampled copy of its table instead, leaving the table alone."
        )
    state = planner.hypopg_state(connection)
    if state == "installed":
        return TrialIndexes(connection, "hypopg")
    if allow_build:
        return TrialIndexes(connection, _buildable(connection, "build"))
    hint = (
        "It is installed on the server: run CREATE EXTENSION hypopg; in the database"
        if state == "available"
        else "Install it on the server (Debian: postgresql-15-hypopg) and run CREATE "
        "EXTENSION hypopg; in the database"
    )
    raise ProofError(
        f"Proving indexes needs HypoPG (hypothetical indexes), which database "
        f"{connection.alias!r} does not have. {hint}, or pass --allow-build to build "
        "each candidate inside a transaction that is rolled back (development databases "
        "only: it locks writes to the table while it builds)."
    )


Method = Literal["build", "online", "sample"]


def _buildable(
    connection: BaseDatabaseWrapper, method: Method, option: str = "--allow-build"
) -> Method:
    """``method``, unless the alias is a production one: a build there is refused, and so is
    a scratch copy (it reads whole tables, and runs every recorded read)."""
    alias = connection.alias
    if alias in conf.PRODUCTION_DATABASES:
        raise ProofError(
            f"{option} is refused on database {alias!r}: DBTUNE['PRODUCTION_DATABASES'] "
            "lists it. Prove the workload on a copy instead (a development or staging "
            "database with the same schema and similar data)."
        )
    return method
