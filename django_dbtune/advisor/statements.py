"""A workload from production: PostgreSQL's ``pg_stat_statements``.

PostgreSQL aggregates every app server's queries there, with constants replaced by ``$1``,
``$2``... Each SELECT is read as ``sql_reads`` reads any (sqlglot, no regular expressions
over SQL): its table is mapped to the model that owns it and its columns to that model's
fields, so the same candidates and the same planner proof as for a recorded workload apply.
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from sqlglot import exp

from django_dbtune.advisor.sql_reads import use_of_tree
from django_dbtune.advisor.trial_methods import ProofError
from django_dbtune.advisor.workload_candidates import Outcome
from django_dbtune.schema import ModelSchema
from django_dbtune.sql import parse_quietly, to_named
from django_dbtune.workload import Shape

LIMIT = 2000
"""The statements read, the most total time first."""

SOURCE = "pg_stat_statements"


def read_statements(
    connection: BaseDatabaseWrapper, schemas: dict[str, ModelSchema], outcome: Outcome
) -> list[Shape]:
    """The SELECTs ``pg_stat_statements`` holds for this database, as workload shapes."""
    if connection.vendor != "postgresql":
        raise ProofError(f"pg_stat_statements is PostgreSQL's; {connection.alias!r} is not.")
    return statement_shapes(_rows(connection), schemas, outcome, connection.alias)


def merged(*nodes: list[Shape]) -> list[Shape]:
    """The statements of several nodes (a primary and its replicas, each counting only what
    it ran) as one workload: the same statement's calls and times added up."""
    by_sql: dict[str, Shape] = {}
    for shapes in nodes:
        for shape in shapes:
            if shape.sql in by_sql:
                by_sql[shape.sql].merge(shape)
            else:
                by_sql[shape.sql] = shape
    return list(by_sql.values())


def statement_shapes(
    rows: list[tuple[Any, ...]],
    schemas: dict[str, ModelSchema],
    outcome: Outcome,
    database: str,
    vendor: str = "postgresql",
    source: str = SOURCE,
) -> list[Shape]:
    """The SELECTs among ``(query, calls, total ms, max ms)`` rows of ``pg_stat_statements``
    (``$1`` placeholders), or of MariaDB's statement digests (made Django's ``%s``), as
    workload shapes."""
    tables = {schema.table: schema.model for schema in schemas.values()}
    shapes = []
    hidden = 0
    for query, calls, total_ms, max_ms in rows:
        if query == "<insufficient privilege>":
            hidden += 1
            continue
        postgres = vendor == "postgresql"
        tree = parse_quietly(query if postgres else to_named(query), vendor)
        if tree is None:
            outcome.skip("statements the SQL parser cannot read")
            continue
        if not isinstance(tree, exp.Select):
            continue  # writes and utility statements are never planned
        shape = _shape(tree, query, tables, outcome)
        if shape is None:
            continue
        shape.database, shape.vendor = database, vendor
        shape.placeholders = "$" if postgres else "%s"
        shape.calls, shape.total_ms, shape.max_ms = int(calls), float(total_ms), float(max_ms)
        shape.call_sites[source] = int(calls)
        shapes.append(shape)
    if hidden and not shapes:
        raise ProofError(
            f"The role of database {database!r} may not read the statements other "
            f"roles ran ({hidden} hidden in pg_stat_statements). Grant it pg_read_all_stats "
            "(GRANT pg_read_all_stats TO <role>;) or run the command as a role that has it."
        )
    for _ in range(hidden):
        outcome.skip("statements of other roles this role may not read (pg_read_all_stats)")
    return shapes


def _rows(connection: BaseDatabaseWrapper) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
        if cursor.fetchone() is None:
            raise ProofError(
                f"Database {connection.alias!r} does not have pg_stat_statements. Add it to "
                "shared_preload_libraries in postgresql.conf, restart PostgreSQL, and run "
                "CREATE EXTENSION pg_stat_statements; in the database."
            )
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(
                "SELECT query, calls, total_exec_time, max_exec_time FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "ORDER BY total_exec_time DESC LIMIT %s",
                [LIMIT],
            )
            return list(cursor.fetchall())
    except DatabaseError as error:
        text = str(error)
        if "shared_preload_libraries" in text:
            raise ProofError(
                "pg_stat_statements is created in the database but not loaded by the server: "
                "add it to shared_preload_libraries in postgresql.conf and restart PostgreSQL."
            ) from None
        if "permission denied" in text:
            raise ProofError(
                f"The role of database {connection.alias!r} may not read pg_stat_statements "
                "(permission denied). Grant it pg_read_all_stats, or run as a role that can."
            ) from None
        raise


def _shape(
    tree: exp.Select, query: str, tables: dict[str, type[Model]], outcome: Outcome
) -> Shape | None:
    found = use_of_tree(tree, tables)
    if found is None:
        source = tree.args.get("from_") or tree.args.get("from")
        base = source.this if source is not None else None
        if isinstance(base, exp.Table) and not base.name.startswith("pg_"):
            outcome.skip("queries on tables no model of the checked apps owns")
        return None
    read = sorted({table.name for table in tree.find_all(exp.Table)})
    return Shape(
        database="",
        vendor="postgresql",
        sql=query,
        kind="read",
        tables=read,
        orm=found.use,
        placeholders="$",
    )
