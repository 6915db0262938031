"""MySQL's and MariaDB's InnoDB indexes foreign keys itself: which keys those are."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, models
from django.db.backends.base.base import BaseDatabaseWrapper


def foreign_keys_innodb_indexes(
    model: type[models.Model], connection: BaseDatabaseWrapper
) -> list[Any]:
    """The foreign keys whose index InnoDB looks after, on MySQL and MariaDB: Django creates
    none for a key with a constraint (its MySQL schema editor leaves it to InnoDB), and
    InnoDB indexes the column of every foreign key constraint whatever ``db_index`` says,
    unless another index leads with it (and it drops its own once one does). A key with
    ``db_constraint=False`` has no constraint: Django indexes it as on any database."""
    if connection.vendor != "mysql" or not _innodb(connection):
        return []  # not InnoDB (MyISAM has no foreign keys)
    return [
        model_field
        for model_field in model._meta.local_concrete_fields
        if model_field.many_to_one
        and getattr(model_field, "db_constraint", False)
        and not model_field.primary_key
        and not model_field.unique
    ]


def _innodb(connection: BaseDatabaseWrapper) -> bool:
    """Whether tables are InnoDB's (the server is asked); when it cannot be asked (the
    models-only check of an unreachable server), InnoDB, the default engine."""
    try:
        return bool(connection.features.supports_foreign_keys)
    except DatabaseError:
        return True


def database_name(connection: BaseDatabaseWrapper) -> str:
    """The database's name for people: "MariaDB" or "MySQL" (the server is asked which),
    "MariaDB or MySQL" when it cannot be asked."""
    try:
        return str(connection.display_name)
    except DatabaseError:
        return "MariaDB or MySQL"


def is_mariadb(connection: BaseDatabaseWrapper) -> bool:
    """Whether the database is MariaDB (not MySQL, nor another vendor); False when the
    server cannot be asked, so callers fall back to what works on both."""
    if connection.vendor != "mysql":
        return False
    mysql: Any = connection  # MySQL's backend's own attributes
    try:
        return bool(mysql.mysql_is_mariadb)
    except DatabaseError:
        return False


def reversible_drop(connection: BaseDatabaseWrapper, table: str, index: str) -> str | None:
    """How to try a drop first, instantly and undoably: MariaDB 10.6+ can make the planner
    ignore an index (``IGNORED``), MySQL 8 hide it (``INVISIBLE``). None elsewhere, or when
    the server cannot be asked its version."""
    if connection.vendor != "mysql":
        return None
    try:
        mysql: Any = connection  # MySQL's backend's own attributes
        mariadb, version = bool(mysql.mysql_is_mariadb), tuple(mysql.mysql_version)
    except DatabaseError:
        return None
    if mariadb and version >= (10, 6):
        off, on = "IGNORED", "NOT IGNORED"
    elif not mariadb and version >= (8, 0):
        off, on = "INVISIBLE", "VISIBLE"
    else:
        return None
    quote = connection.ops.quote_name
    alter = f"ALTER TABLE {quote(table)} ALTER INDEX {quote(index)}"
    return (
        f"Try it first: {alter} {off} makes the planner leave it alone at once, and "
        f"{alter} {on} undoes that as fast; remove it once no query has slowed down."
    )


PREFIX_LENGTH = 100
"""Characters of a TEXT column a proposed prefix index keeps."""

_PREFIX_ONLY = frozenset(
    {"tinytext", "text", "mediumtext", "longtext", "tinyblob", "blob", "mediumblob", "longblob"}
)


def prefix_only(connection: BaseDatabaseWrapper, model_field: Any) -> bool:
    """Whether MariaDB or MySQL indexes this column by a prefix only (TEXT and BLOB): an
    index ``models.Index`` declares on it fails to build there."""
    if connection.vendor != "mysql":
        return False
    try:
        db_type = model_field.db_type(connection)
    except DatabaseError:  # the server cannot be asked its version: by the field's kind
        return str(model_field.get_internal_type()) in ("TextField", "BinaryField")
    return isinstance(db_type, str) and db_type.lower() in _PREFIX_ONLY


def prefix_index_sql(
    connection: BaseDatabaseWrapper, table: str, name: str, columns: list[tuple[str, bool]]
) -> str:
    """``CREATE INDEX`` keeping ``PREFIX_LENGTH`` characters of each prefix-only column:
    ``columns`` is each column with whether it is one."""
    quote = connection.ops.quote_name
    parts = ", ".join(
        f"{quote(column)}({PREFIX_LENGTH})" if prefix else quote(column)
        for column, prefix in columns
    )
    return f"CREATE INDEX {quote(name)} ON {quote(table)} ({parts})"
