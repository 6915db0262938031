"""What indexes cover each model: declared, created implicitly by Django, and actual.

Coverage is a question about leading columns: an index on ``(a, b)`` serves filters on
``a``, not on ``b``; one on ``(a, lower(b))`` serves ``a`` too. A partial index serves the
queries that imply its condition (``conditions``); an index that leads with an expression,
or is no B-tree, serves no plain filter or sort.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import DatabaseError, connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper

from django_dbtune.schema.conditions import Call, Condition
from django_dbtune.schema.definitions import (
    BTREE,
    Definition,
    declared_definition,
    django_builds,
    parse_definition,
    sqlite_definitions,
)
from django_dbtune.schema.innodb import foreign_keys_innodb_indexes
from django_dbtune.schema.table_rows import TableRows, table_rows

__all__ = [
    "Call",
    "IndexInfo",
    "ModelSchema",
    "TableRows",
    "actual_indexes",
    "declared_indexes",
    "leads_with",
    "model_schemas",
]


def leads_with(index_columns: Sequence[str], columns: Sequence[str]) -> bool:
    """Whether an index on ``index_columns`` serves a lookup on ``columns``: they are its
    leading columns, in this order. The one coverage rule: an index on ``(a, b)`` serves
    ``(a)`` and ``(a, b)``, never ``(b)``; an index equal to another or a leading prefix of
    it is served by it (so it is redundant)."""
    return 0 < len(columns) <= len(index_columns) and tuple(
        index_columns[: len(columns)]
    ) == tuple(columns)


@dataclass(frozen=True)
class IndexInfo:
    name: str | None
    columns: tuple[str, ...]
    """The leading key parts that are plain database columns, in order: every column of an
    index on columns, those before the first expression of one with expressions (empty
    when it leads with an expression)."""
    origin: str
    """Where it comes from: "primary key", "unique field", "db_index", "foreign key",
    "pattern ops", "Meta.indexes", "unique_together", "UniqueConstraint" or "database"."""
    unique: bool = False
    partial: bool = False
    opclasses: tuple[str, ...] = ()
    implicit: bool = False
    """Created by Django without being declared as an index (a foreign key's index, the
    primary key, PostgreSQL's ``_like`` pattern index)."""
    condition: Condition | None = None
    """A partial index's condition, when it is read; None leaves it serving nothing."""
    keys: tuple[str, ...] = ()
    """Every key part, when some are expressions (``upper(email)``); else empty."""
    method: str = BTREE
    """The access method: ``btree`` (the only one SQLite and MySQL's InnoDB build), or
    PostgreSQL's ``gin``, ``gist``, ``hash``, ``brin``..."""

    @property
    def key_parts(self) -> tuple[str, ...]:
        """Every key part in order, columns and expressions."""
        return self.keys or self.columns

    @property
    def usable(self) -> bool:
        """Serves equality, range and sort on its leading columns, whatever the query."""
        return (
            bool(self.columns) and not self.partial and not self.opclasses and self.method == BTREE
        )

    def serves(
        self, columns: Sequence[str], *, pattern: bool = False, call: Call | None = None
    ) -> bool:
        """Whether this index serves equality, range and sort on ``columns`` (in order).
        ``pattern``: the last column is prefix-searched, which only a pattern-ops operator
        class on it serves. A partial index serves only a ``call`` that implies its
        condition; the columns the condition pins (``status`` of ``WHERE status =
        'open'``) then need no place among its columns."""
        if self.method != BTREE or not self.columns:
            return False
        if self.partial:
            if call is None or self.condition is None or not self.condition.implied_by(call):
                return False
            columns = [column for column in columns if column not in self.condition.pinned]
            if not columns:
                return True  # filtered on the condition alone: the index holds those rows
        if pattern:
            searched = len(columns) - 1  # the prefix-searched column comes last
            return (
                leads_with(self.columns, columns)
                and len(self.opclasses) > searched
                and self.opclasses[searched].endswith("pattern_ops")
            )
        return not self.opclasses and leads_with(self.columns, columns)


@dataclass
class ModelSchema:
    model: type[models.Model]
    database: str
    declared: list[IndexInfo]
    actual: list[IndexInfo] | None = None
    """None when the database could not be read."""
    auto_created: bool = field(default=False)
    table_found: bool | None = None
    """Whether the database has the model's table; None when it was not read."""
    _rows: dict[int, TableRows] = field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def indexes(self) -> list[IndexInfo]:
        """Declared indexes, and those only the database has. An index the models name is
        described by its declaration, which says whether it is partial or uses an opclass."""
        named = {index.name for index in self.declared if index.name}
        return self.declared + [index for index in self.actual or [] if index.name not in named]

    def rows(self, limit: int) -> TableRows:
        """How many rows the table holds, as the database estimates them, else counted up to
        ``limit``; read once."""
        if limit not in self._rows:
            if self.table_found is None:
                self._rows[limit] = TableRows(None, reason="the database was not read")
            elif not self.table_found:
                reason = f"the table {self.table} is not in the database yet"
                self._rows[limit] = TableRows(None, reason=reason)
            else:
                self._rows[limit] = table_rows(self.database, self.table, limit)
        return self._rows[limit]

    def covers(self, column: str) -> bool:
        """Whether some usable index, declared or present in the database, leads with it."""
        return self.serves((column,))

    def serves(
        self, columns: Sequence[str], *, prefix: bool = False, call: Call | None = None
    ) -> bool:
        """Whether some index, declared or present in the database, leads with ``columns``
        in this order. ``prefix``: the last column is prefix-searched (``LIKE 'x%'``), which
        on PostgreSQL only a pattern-ops operator class (``varchar_pattern_ops``) on that
        column serves under a non-C collation. ``call``: what the query compares, by
        column, so that a partial index whose condition it implies serves it too."""
        pattern = prefix and connections[self.database].vendor == "postgresql"
        return any(index.serves(columns, pattern=pattern, call=call) for index in self.indexes)


def model_schemas(
    app_labels: Iterable[str], database: str, *, read_database: bool = True
) -> list[ModelSchema]:
    """The schema of every concrete, managed model of these apps that lives in ``database``.

    Proxy, abstract, unmanaged and swapped models have no table of their own to index;
    many-to-many through tables that Django creates are included.
    """
    connection = connections[database]
    tables: set[str] = set()
    if read_database:
        try:
            with connection.cursor() as cursor:
                tables = set(connection.introspection.table_names(cursor))
        except DatabaseError:
            read_database = False
    schemas = []
    for label in app_labels:
        for model in apps.get_app_config(label).get_models(include_auto_created=True):
            meta = model._meta
            if meta.proxy or not meta.managed or meta.swapped:
                continue
            if not router.allow_migrate_model(database, model):
                continue
            found = read_database and _table_exists(connection, meta.db_table, tables)
            schemas.append(
                ModelSchema(
                    model,
                    database,
                    declared_indexes(model, connection),
                    # A table not created yet (migrations not run) has no indexes to compare.
                    actual_indexes(model, connection) if found else None,
                    auto_created=bool(meta.auto_created),
                    table_found=found if read_database else None,
                )
            )
    return schemas


def field_columns(model: type[models.Model], names: Iterable[str]) -> tuple[str, ...]:
    """The database columns of these fields, in order."""
    return tuple(column_of(model._meta.get_field(name)) for name in names)


def column_of(model_field: Any) -> str:
    """A concrete field's column (the stubs allow None, which only non-concrete fields have)."""
    return str(model_field.column)


def has_db_index(model_field: Any) -> bool:
    """``db_index`` as Django resolved it (a foreign key defaults to True)."""
    return bool(getattr(model_field, "db_index", False))


def declared_indexes(
    model: type[models.Model], connection: BaseDatabaseWrapper
) -> list[IndexInfo]:
    """Every index Django creates for this model on this kind of database, and on MySQL and
    MariaDB the one InnoDB makes for each foreign key constraint (see :mod:`.innodb`)."""
    meta = model._meta
    found: list[IndexInfo] = []
    innodb_keys = foreign_keys_innodb_indexes(model, connection)
    for model_field in meta.local_concrete_fields:
        column = column_of(model_field)
        if model_field.primary_key:
            found.append(IndexInfo(None, (column,), "primary key", unique=True, implicit=True))
        elif model_field.unique:
            found.append(IndexInfo(None, (column,), "unique field", unique=True))
        elif has_db_index(model_field) and model_field not in innodb_keys:  # (those: below)
            origin = "foreign key" if model_field.is_relation else "db_index"
            found.append(IndexInfo(None, (column,), origin, implicit=model_field.is_relation))
        pattern = _pattern_opclass(model_field, connection)
        if pattern:
            found.append(
                IndexInfo(None, (column,), "pattern ops", opclasses=(pattern,), implicit=True)
            )
    for names in meta.unique_together:
        found.append(IndexInfo(None, field_columns(model, names), "unique_together", unique=True))
    for index in meta.indexes:
        if not django_builds(index, connection):
            continue
        columns = (
            () if index.expressions else field_columns(model, (n for n, _ in index.fields_orders))
        )
        found.append(
            _declared(index, model, connection, columns, "Meta.indexes", tuple(index.opclasses))
        )
    for constraint in meta.constraints:
        if isinstance(constraint, models.UniqueConstraint):
            if not django_builds(constraint, connection):
                continue  # (a condition where the database has no partial indexes...)
            columns = () if constraint.expressions else field_columns(model, constraint.fields)
            opclasses = tuple(getattr(constraint, "opclasses", ()))
            found.append(
                _declared(constraint, model, connection, columns, "UniqueConstraint", opclasses)
            )
    for model_field in innodb_keys:
        column = column_of(model_field)
        if not any(index.usable and index.columns[:1] == (column,) for index in found):
            found.append(IndexInfo(None, (column,), "foreign key", implicit=True))
    return found


def _declared(
    declared: models.Index | models.UniqueConstraint,
    model: type[models.Model],
    connection: BaseDatabaseWrapper,
    columns: tuple[str, ...],
    origin: str,
    opclasses: tuple[str, ...],
) -> IndexInfo:
    """A ``Meta.indexes`` entry or a unique constraint. One with expressions or a condition
    is read from the ``CREATE INDEX`` Django renders for it (its key parts, its condition).
    Whether it uses an operator class is as declared, since the project's production
    database may take what this one ignores (SQLite drops operator classes). A condition
    counts only where the database has partial indexes: MySQL and MariaDB have none, and
    Django builds the index whole there, which serves every query on its columns."""
    unique = isinstance(declared, models.UniqueConstraint)
    partial = declared.condition is not None and connection.features.supports_partial_indexes
    method = _declared_method(declared)
    described: Definition | None = None
    if declared.expressions or partial:
        described = declared_definition(declared, model, connection)
    if described is None:
        return IndexInfo(declared.name, columns, origin, unique, partial, opclasses, method=method)
    keys = described.keys if described.keys != described.columns else ()
    return IndexInfo(
        declared.name,
        described.columns,
        origin,
        unique,
        partial,
        opclasses or described.opclasses,  # an expression's: OpClass(Upper("x"), ...)
        condition=described.condition if partial else None,
        keys=keys,
        method=method,
    )


def _declared_method(declared: models.Index | models.UniqueConstraint) -> str:
    """django.contrib.postgres's index classes name their access method (``GinIndex`` is
    ``gin``); matched by class name so that it, which needs psycopg, is not imported."""
    classes = {klass.__name__ for klass in type(declared).__mro__}
    return str(getattr(declared, "suffix", BTREE)) if "PostgresIndex" in classes else BTREE


def _pattern_opclass(
    model_field: models.Field[Any, Any], connection: BaseDatabaseWrapper
) -> str | None:
    """The opclass of the ``_like`` index PostgreSQL's schema editor adds, if it adds one."""
    if connection.vendor != "postgresql" or not (has_db_index(model_field) or model_field.unique):
        return None
    # A foreign key takes its target's column type, so a key to a text primary key gets one
    # too; its collation is the target's.
    target = getattr(model_field, "target_field", None) if model_field.is_relation else None
    if getattr(model_field, "db_collation", None) or getattr(target, "db_collation", None):
        return None
    db_type = model_field.db_type(connection) or ""
    if "[" in db_type:
        return None
    if db_type.startswith("varchar"):
        return "varchar_pattern_ops"
    if db_type.startswith("text"):
        return "text_pattern_ops"
    return None


def schema_qualified(db_table: str) -> bool:
    """Django's documented way to put a model in a PostgreSQL schema: '"schema"."table"'."""
    return db_table.startswith('"') and db_table.endswith('"') and '"."' in db_table


def _table_exists(connection: BaseDatabaseWrapper, db_table: str, tables: set[str]) -> bool:
    if not schema_qualified(db_table):
        return db_table in tables
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [db_table])
        row = cursor.fetchone()
    return bool(row and row[0])


# Every index of a table, from PostgreSQL's catalogs (introspection takes no schema-qualified
# table, and says nothing of partial, expression or operator-class indexes); the key columns
# only (``INCLUDE`` columns are not keys).
_POSTGRESQL_INDEXES = """
SELECT index_class.relname, i.indisunique OR i.indisprimary, i.indpred IS NOT NULL,
       ARRAY(
           SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
           LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE k.position <= i.indnkeyatts
           ORDER BY k.position
       ),
       pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class index_class ON index_class.oid = i.indexrelid
WHERE i.indrelid = to_regclass(%s)
"""


def actual_indexes(
    model: type[models.Model], connection: BaseDatabaseWrapper
) -> list[IndexInfo] | None:
    """The indexes the database really has on the model's table, or None if unreadable.
    Each is described by its definition where the database keeps one (PostgreSQL, SQLite):
    an index made by hand or by ``RunSQL`` counts for what it serves."""
    db_table = model._meta.db_table
    qualified = schema_qualified(db_table)
    if qualified or connection.vendor == "postgresql":
        try:
            with connection.cursor() as cursor:
                name = db_table if qualified else connection.ops.quote_name(db_table)
                cursor.execute(_POSTGRESQL_INDEXES, [name])
                rows = cursor.fetchall()
        except DatabaseError:
            return None
        return [
            _actual(name, tuple(columns), unique, partial, parse_definition(sql, "postgresql"))
            for name, unique, partial, columns, sql in rows
        ]
    try:
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, db_table)
    except DatabaseError:
        return None
    described = sqlite_definitions(connection, db_table)
    found = []
    for name, info in constraints.items():
        if not (info["index"] or info["unique"] or info["primary_key"]):
            continue
        kind = info.get("type")  # Django's "idx" is a B-tree; MySQL also says "fulltext"...
        found.append(
            _actual(
                name,
                tuple(info["columns"] or ()),
                bool(info["unique"] or info["primary_key"]),
                False,
                described.get(name),
                method=BTREE if kind in (None, "idx", BTREE) else str(kind),
            )
        )
    return found


def _actual(
    name: str,
    columns: tuple[str | None, ...],
    unique: bool,
    partial: bool,
    described: Definition | None,
    method: str = BTREE,
) -> IndexInfo:
    if described is not None and described.keys:
        return IndexInfo(
            name,
            described.columns,
            "database",
            unique,
            described.partial,
            described.opclasses,
            condition=described.condition,
            keys=described.keys if described.keys != described.columns else (),
            method=described.method,
        )
    # Not read: as introspection says, a partial index serving nothing and an expression
    # one nothing plain; an operator class is told by Django's ``_like`` name only.
    return IndexInfo(
        name,
        () if None in columns else tuple(str(column) for column in columns),
        "database",
        unique,
        partial or (described is not None and described.partial),
        opclasses=("unknown",) if name.endswith("_like") else (),
        method=method,
    )
