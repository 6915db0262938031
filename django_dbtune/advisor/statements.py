"""A workload from production: PostgreSQL's ``pg_stat_statements``.

PostgreSQL aggregates every app server's queries there, with constants replaced by ``$1``,
``$2``... Each SELECT is parsed with sqlglot (no regular expressions over SQL); its table is
mapped to the model that owns it and its columns to that model's fields, so the same
candidates and the same planner proof as for a recorded workload apply.
"""

from __future__ import annotations

from typing import Any

import sqlglot
from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from sqlglot import exp
from sqlglot.errors import SqlglotError

from django_dbtune.advisor.proof import ProofError
from django_dbtune.advisor.workload_candidates import Outcome
from django_dbtune.schema import ModelSchema
from django_dbtune.sql import DIALECTS, to_qmark
from django_dbtune.workload import OrmUse, Shape

LIMIT = 2000
"""The statements read, the most total time first."""

SOURCE = "pg_stat_statements"

_RANGES = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)


def read_statements(
    connection: BaseDatabaseWrapper, schemas: dict[str, ModelSchema], outcome: Outcome
) -> list[Shape]:
    """The SELECTs ``pg_stat_statements`` holds for this database, as workload shapes."""
    if connection.vendor != "postgresql":
        raise ProofError(f"pg_stat_statements is PostgreSQL's; {connection.alias!r} is not.")
    rows = _rows(connection)
    tables = {schema.table: schema.model for schema in schemas.values()}
    shapes = []
    hidden = 0
    for query, calls, total_ms, max_ms in rows:
        if query == "<insufficient privilege>":
            hidden += 1
            continue
        try:
            tree = sqlglot.parse_one(query, read="postgres")
        except SqlglotError:
            outcome.skip("statements the SQL parser cannot read")
            continue
        if not isinstance(tree, exp.Select):
            continue  # writes and utility statements are never planned
        shape = _shape(tree, query, tables, outcome)
        if shape is None:
            continue
        shape.database = connection.alias
        shape.calls, shape.total_ms, shape.max_ms = int(calls), float(total_ms), float(max_ms)
        shape.call_sites[SOURCE] = int(calls)
        shapes.append(shape)
    if hidden and not shapes:
        raise ProofError(
            f"The role of database {connection.alias!r} may not read the statements other "
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
    _, use = found
    read = sorted({table.name for table in tree.find_all(exp.Table)})
    return Shape(
        database="",
        vendor="postgresql",
        sql=query,
        kind="read",
        tables=read,
        orm=use,
        placeholders="$",
    )


def use_of(
    sql: str, vendor: str, tables: dict[str, type[Model]]
) -> tuple[type[Model], OrmUse] | None:
    """What a SELECT as Django runs it (``%s`` placeholders) filters and sorts by, in the
    fields of the model that owns its table; None for anything else."""
    try:
        tree = sqlglot.parse_one(to_qmark(sql), read=DIALECTS.get(vendor))
    except SqlglotError:
        return None
    return use_of_tree(tree, tables) if isinstance(tree, exp.Select) else None


def use_of_tree(
    tree: exp.Select, tables: dict[str, type[Model]]
) -> tuple[type[Model], OrmUse] | None:
    source = tree.args.get("from_") or tree.args.get("from")
    base = source.this if source is not None else None
    if not isinstance(base, exp.Table):
        return None
    model = tables.get(base.name)
    if model is None:
        return None
    names = {base.alias_or_name, base.name}
    fields = {f.column: f.name for f in model._meta.concrete_fields if f.column}
    use = OrmUse(model._meta.label)
    where = tree.args.get("where")
    if where is not None:
        _predicates(where.this, names, fields, use, composite=True)
    order = tree.args.get("order")
    for ordered in order.expressions if order is not None else ():
        name = _field(ordered.this, names, fields)
        if name is None:
            break
        use.sort.append(f"-{name}" if ordered.args.get("desc") else name)
    use.explicit_sort = bool(use.sort)
    use.sliced = tree.args.get("limit") is not None
    return model, use


def _predicates(
    node: exp.Expression, names: set[str], fields: dict[str, str], use: OrmUse, composite: bool
) -> None:
    if isinstance(node, exp.Paren):
        _predicates(node.this, names, fields, use, composite)
        return
    if isinstance(node, exp.And):
        _predicates(node.this, names, fields, use, composite)
        _predicates(node.expression, names, fields, use, composite)
        return
    if isinstance(node, exp.Or | exp.Not):
        for child in node.iter_expressions():
            _predicates(child, names, fields, use, composite=False)
        return
    name = _field(node.this, names, fields) if isinstance(node, exp.Expression) else None
    if name is None:
        return
    if isinstance(node, exp.EQ | exp.In | exp.Is):
        (use.equality if composite else use.single).append(name)
    elif isinstance(node, _RANGES):
        (use.ranges if composite else use.single).append(name)
    elif isinstance(node, exp.Like) and _prefix(node.expression):
        (use.patterns if composite else use.single).append(name)


def _prefix(pattern: Any) -> bool:
    """A LIKE pattern that is a constant prefix (``'abc%'``)."""
    return (
        isinstance(pattern, exp.Literal)
        and pattern.is_string
        and pattern.this.endswith("%")
        and not pattern.this.startswith("%")
        and "_" not in pattern.this
    )


def _field(column: Any, names: set[str], fields: dict[str, str]) -> str | None:
    """The model field a column of the base table is, or None."""
    if not isinstance(column, exp.Column):
        return None
    if column.table and column.table not in names:
        return None
    return fields.get(column.name)
