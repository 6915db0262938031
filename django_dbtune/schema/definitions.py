"""What an index is, as its ``CREATE INDEX`` says: its key parts in order (a column, or an
expression such as ``upper(email)``), their operator classes, its access method, and a
partial index's condition.

Two sources, one parser (sqlglot, in the database's dialect): the definitions the database
keeps (PostgreSQL's ``pg_get_indexdef``, SQLite's ``sqlite_master.sql``), which also describe
indexes made by hand, by ``RunSQL`` or by a migration since removed; and, for a declared
index, the statement Django renders from the same ``models.Index`` the migration builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, models
from django.db.backends.base.base import BaseDatabaseWrapper
from sqlglot import exp

from django_dbtune.schema.conditions import Condition, bare, condition_of
from django_dbtune.sql import parse_quietly

__all__ = [
    "BTREE",
    "Definition",
    "declared_definition",
    "django_builds",
    "parse_definition",
    "sqlite_definitions",
]

BTREE = "btree"


@dataclass(frozen=True)
class Definition:
    keys: tuple[str, ...]
    """Each key part: a column's name, or an expression as ``upper(email)`` (function
    names in lower case, without casts and parentheses)."""
    columns: tuple[str, ...]
    """The leading key parts that are plain columns: an index on ``(a, lower(b))`` serves
    ``a`` as a plain index does."""
    opclasses: tuple[str, ...] = ()
    """Each key part's operator class ("" for the default); empty when all are default."""
    method: str = BTREE
    partial: bool = False
    condition: Condition | None = None
    """A partial index's condition, when it is read (see ``conditions``)."""


def parse_definition(sql: str, vendor: str) -> Definition | None:
    """The definition a ``CREATE INDEX`` states; None when it is no such statement or it
    is not read."""
    tree = parse_quietly(sql, vendor)
    index = tree.this if isinstance(tree, exp.Create) else None
    params = index.args.get("params") if isinstance(index, exp.Index) else None
    if params is None or not params.args.get("columns"):
        return None
    keys: list[str] = []
    columns: list[str] = []
    opclasses: list[str] = []
    for item in params.args["columns"]:
        node = item.this if isinstance(item, exp.Ordered) else item
        opclass = ""
        if isinstance(node, exp.Opclass):
            opclass, node = node.expression.name, node.this
        key = _key(node)
        if isinstance(bare(node), exp.Column) and len(columns) == len(keys):
            columns.append(key)
        keys.append(key)
        opclasses.append(opclass)
    where = params.args.get("where")
    using = params.args.get("using")
    return Definition(
        keys=tuple(keys),
        columns=tuple(columns),
        opclasses=tuple(opclasses) if any(opclasses) else (),
        method=using.name.lower() if using is not None else BTREE,
        partial=where is not None,
        condition=condition_of(where.this) if where is not None else None,
    )


def _key(node: Any) -> str:
    """A key part as text: ``upper((email)::text)`` (PostgreSQL), ``UPPER("email")`` (as
    Django renders ``Upper("email")``) and ``upper(email)`` are all ``upper(email)``; an
    expression of another form is its SQL, in parentheses."""
    node = bare(node)
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, exp.Collate):  # serves comparisons under that collation only
        return f"{_key(node.this)} collate {node.expression.name.lower()}"
    if isinstance(node, exp.Literal):
        return node.sql()
    if isinstance(node, exp.Func):
        name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
        parts = ", ".join(_key(child) for child in node.iter_expressions())
        return f"{name.lower()}({parts})"
    return f"({node.sql()})"


# --- SQLite's own definitions -----------------------------------------------------------------


def sqlite_definitions(connection: BaseDatabaseWrapper, db_table: str) -> dict[str, Definition]:
    """Each index of the table by name, as SQLite keeps its ``CREATE INDEX`` (nothing on
    another database: PostgreSQL's are read with its catalogs). One whose statement is not
    read (or that has none: a unique constraint's) is described only as partial or not."""
    if connection.vendor != "sqlite":
        return {}
    table = connection.ops.quote_name(db_table)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA index_list({table})")
            partial = {row[1]: bool(row[4]) for row in cursor.fetchall()}
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s",
                [db_table],
            )
            rows = cursor.fetchall()
    except DatabaseError:
        return {}
    found = {}
    for name, sql in rows:
        parsed = parse_definition(sql, "sqlite") if sql else None
        found[name] = parsed or Definition((), (), partial=partial.get(name, False))
    return found


# --- Declared indexes, as Django renders them -------------------------------------------------


def django_builds(
    declared: models.Index | models.UniqueConstraint, connection: BaseDatabaseWrapper
) -> bool:
    """Whether Django builds anything for ``declared`` on this database: it builds no unique
    constraint whose condition, expressions, included columns, ``nulls_distinct`` or deferral
    the database lacks (MariaDB: all but deferral), nor an index on expressions where it has
    none (its system checks warn). When the server cannot be asked its version: as
    declared."""
    features = connection.features
    try:
        if declared.contains_expressions and not features.supports_expression_indexes:
            return False
        if not isinstance(declared, models.UniqueConstraint):
            return True
        include = bool(getattr(declared, "include", None))  # (the stubs lack it)
        nulls = getattr(declared, "nulls_distinct", None) is not None
        return not (
            (declared.condition is not None and not features.supports_partial_indexes)
            or (include and not features.supports_covering_indexes)
            or (nulls and not features.supports_nulls_distinct_unique_constraints)
            or (declared.deferrable and not features.supports_deferrable_unique_constraints)
        )
    except DatabaseError:
        return True


def declared_definition(
    declared: models.Index | models.UniqueConstraint,
    model: type[models.Model],
    connection: BaseDatabaseWrapper,
) -> Definition | None:
    """The index Django builds for ``declared`` on this kind of database, read from the
    ``CREATE INDEX`` it renders; None when it renders none (a plain unique constraint is
    ``ALTER TABLE ... ADD CONSTRAINT``) or the statement is not read."""
    try:
        statement = declared.create_sql(model, connection.schema_editor())
    except Exception:  # rendering is a description, never a reason to fail a run
        return None
    return parse_definition(str(statement), connection.vendor) if statement else None
