"""Parameter values for planning a read on MariaDB or MySQL, taken from the table it reads.

PostgreSQL plans a statement for any value (a generic plan); MariaDB's ``EXPLAIN`` needs
values. A recorded workload keeps none unless asked (they may be personal data), and a
``performance_schema`` digest has ``?`` for each. So each placeholder compared to a column
(``=``, ``<>``, ``<``, ``>``, ``IN``, ``BETWEEN``, ``LIKE``) is given a value that column
holds: of the values in its first ``SAMPLE`` rows (by primary key), the one of median
frequency (through a ``CONVERT_TZ``, its column's; the time zones are UTC). A placeholder
the SELECT returns (``exists()``'s ``SELECT %s AS a``) is 1. The plan is the plan for a
typical value that exists, as PostgreSQL's generic plan is for an average one; the most
common value (a status most rows have) would hide what an index does for the others. A
``LIKE`` gets that value as a prefix (``value%``); a digest's ``LIMIT ?`` is a page of
``PAGE`` rows, its ``OFFSET ?`` 0. A placeholder compared to no column, or a column with no
value, leaves the read unplanned; the caller says so.

Parsed with sqlglot's MySQL dialect (no regular expressions over SQL).
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from sqlglot import exp

from django_dbtune.sql import parse_quietly, to_named

SAMPLE = 100_000
"""The rows a column's value is chosen from (a bounded read, whatever the table's size)."""
PAGE = 20
"""The rows a ``LIMIT ?`` of a ``performance_schema`` digest is planned for."""

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ)
_PATTERNS = (exp.Like, exp.ILike)


class TableValues:
    """Values read from the tables of one database, one query per column."""

    def __init__(self, connection: BaseDatabaseWrapper):
        self.connection = connection
        self._read: dict[tuple[str, str], Any] = {}

    def params(self, sql: str) -> list[Any] | None:
        """Values for the ``%s`` placeholders of ``sql`` in order; None when one of them
        is compared to no column, or its column holds no value."""
        tree = parse_quietly(to_named(sql), self.connection.vendor)
        if tree is None:
            return None
        tables = {table.alias_or_name: table.name for table in tree.find_all(exp.Table)}
        given: dict[int, Any] = {}
        for placeholder in tree.find_all(exp.Placeholder):
            position = str(placeholder.name).removeprefix("p")
            if isinstance(placeholder.parent, exp.Limit | exp.Offset) and position.isdigit():
                # A digest's LIMIT ? (Django writes its numbers in the SQL): a page's worth.
                given[int(position)] = PAGE if isinstance(placeholder.parent, exp.Limit) else 0
                continue
            if _selected(placeholder) and position.isdigit():
                # What a read returns, not what it reads: exists()'s SELECT %s AS a.
                given[int(position)] = 1
                continue
            if isinstance(placeholder.parent, exp.ConvertTimezone) and position.isdigit():
                # A date lookup's CONVERT_TZ(col, %s, %s) (USE_TZ): from and to UTC.
                given[int(position)] = "UTC"
                continue
            found = _compared(placeholder)
            if found is None or not position.isdigit():
                return None
            column, pattern = found
            table = tables.get(column.table) if column.table else _only(tables)
            if table is None:
                return None
            value = self._value(table, column.name)
            if value is None:
                return None
            given[int(position)] = f"{value}%" if pattern else value
        if sorted(given) != list(range(len(given))):
            return None
        return [given[number] for number in range(len(given))]

    def _value(self, table: str, column: str) -> Any:
        """A value of median frequency among the column's values in the first ``SAMPLE``
        rows: neither its most common value (a status most rows have) nor a rare one."""
        if (table, column) not in self._read:
            quote = self.connection.ops.quote_name
            with self.connection.cursor() as cursor:
                # In the table's own order: through an index on the column, the first rows
                # would be its smallest values, and a range from one of them matches all.
                key = self.connection.introspection.get_primary_key_column(cursor, table)
                order = f" ORDER BY {quote(key)}" if key else ""
                cursor.execute(
                    f"SELECT v, COUNT(*) AS n FROM (SELECT {quote(column)} AS v "
                    f"FROM {quote(table)} WHERE {quote(column)} IS NOT NULL{order} "
                    f"LIMIT {SAMPLE}) AS sample GROUP BY v ORDER BY n, v"
                )
                rows = cursor.fetchall()
            self._read[table, column] = rows[(len(rows) - 1) // 2][0] if rows else None
        return self._read[table, column]


def _compared(placeholder: exp.Placeholder) -> tuple[exp.Column, bool] | None:
    """The column a placeholder is compared to, and whether as a ``LIKE`` pattern."""
    node: exp.Expression = placeholder
    while isinstance(node.parent, exp.Cast | exp.Paren):  # LIKE BINARY %s, (%s)
        node = node.parent
    parent = node.parent
    other: Any = None
    if isinstance(parent, exp.In | exp.Between):
        other = parent.this
    elif isinstance(parent, _COMPARISONS + _PATTERNS):
        other = parent.left if parent.right is node else parent.right
    while isinstance(other, exp.Cast | exp.Paren | exp.ConvertTimezone):
        other = other.args["timestamp"] if isinstance(other, exp.ConvertTimezone) else other.this
    if not isinstance(other, exp.Column):
        return None
    return other, isinstance(parent, _PATTERNS)


def _selected(placeholder: exp.Placeholder) -> bool:
    """Whether the placeholder is a column of what the SELECT returns."""
    node: exp.Expression = placeholder
    while isinstance(node.parent, exp.Alias | exp.Cast | exp.Paren):
        node = node.parent
    parent = node.parent
    return isinstance(parent, exp.Select) and any(e is node for e in parent.expressions)


def _only(tables: dict[str, str]) -> str | None:
    names = set(tables.values())
    return next(iter(names)) if len(names) == 1 else None
