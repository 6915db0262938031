"""What a SELECT filters and sorts by, read from its SQL: the queries one request ran (the
Indexes panel), the statements ``pg_stat_statements`` holds, and the constants of recorded
reads.

Parsed with sqlglot (no regular expressions over SQL); the base table's columns are mapped to
its model's fields. Comparisons ANDed at the top of the ``WHERE`` can share a composite index;
those under ``OR`` or ``NOT`` cannot (``single``). A query's constants are what every row it
returns holds in a column: as its SQL states it (``IS NULL``, a boolean column alone as Django
writes ``filter(is_active=True)``, a literal), or as the parameter it compares the column to,
when every run passed the same value. A partial index whose condition they imply serves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Model
from sqlglot import exp

from django_dbtune.schema.conditions import constant
from django_dbtune.sql import parse_quietly, to_named
from django_dbtune.workload import OrmUse

_RANGES = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)


@dataclass
class SelectRead:
    """What one SELECT filters and sorts by, in the fields of the model that owns its table."""

    model: type[Model]
    use: OrmUse
    literals: dict[str, Any] = field(default_factory=dict)
    """Fields the SQL itself compares for equality to a constant (None for ``IS NULL``)."""
    parameters: dict[str, int] = field(default_factory=dict)
    """Fields compared for equality to a parameter: the parameter's position."""
    placeholders: int = 0

    def constants(self, runs: Iterable[Sequence[Any] | None] = ()) -> dict[str, Any]:
        """The literals, and each parameter every run passed the same value (when every
        run's parameters are known and match the statement's placeholders)."""
        found = dict(self.literals)
        given = list(runs)
        known = [
            params
            for params in given
            if isinstance(params, list | tuple) and len(params) == self.placeholders
        ]
        if not known or len(known) < len(given):
            return found
        for name, position in self.parameters.items():
            first = known[0][position]
            if first is not None and all(params[position] == first for params in known):
                found.setdefault(name, first)
        return found


def use_of(sql: str, vendor: str, tables: dict[str, type[Model]]) -> SelectRead | None:
    """What a SELECT as Django runs it (``%s`` placeholders) filters and sorts by; None for
    anything else, or a table no model owns."""
    tree = parse_quietly(to_named(sql), vendor)
    return use_of_tree(tree, tables) if isinstance(tree, exp.Select) else None


def use_of_tree(tree: exp.Select, tables: dict[str, type[Model]]) -> SelectRead | None:
    source = tree.args.get("from_") or tree.args.get("from")
    base = source.this if source is not None else None
    if not isinstance(base, exp.Table):
        return None
    model = tables.get(base.name)
    if model is None:
        return None
    names = {base.alias_or_name, base.name}
    fields = {f.column: f.name for f in model._meta.concrete_fields if f.column}
    read = SelectRead(model, OrmUse(model._meta.label))
    read.placeholders = sum(1 for _ in tree.find_all(exp.Placeholder))
    where = tree.args.get("where")
    if where is not None:
        _predicates(where.this, names, fields, read, composite=True)
    use = read.use
    order = tree.args.get("order")
    for ordered in order.expressions if order is not None else ():
        name = _field(ordered.this, names, fields)
        if name is None:
            break
        use.sort.append(f"-{name}" if ordered.args.get("desc") else name)
    use.explicit_sort = True  # the SQL says its order: none at all without an ORDER BY
    use.sliced = tree.args.get("limit") is not None
    return read


def _predicates(
    node: exp.Expression,
    names: set[str],
    fields: dict[str, str],
    read: SelectRead,
    composite: bool,
) -> None:
    use = read.use
    if isinstance(node, exp.Paren):
        _predicates(node.this, names, fields, read, composite)
        return
    if isinstance(node, exp.And):
        _predicates(node.this, names, fields, read, composite)
        _predicates(node.expression, names, fields, read, composite)
        return
    if composite and isinstance(node, exp.Column | exp.Not):
        # A boolean column alone, as Django writes filter(flag=True) (NOT for False).
        flag = _field(node if isinstance(node, exp.Column) else node.this, names, fields)
        if flag is not None:
            use.equality.append(flag)
            read.literals.setdefault(flag, isinstance(node, exp.Column))
            return
    if isinstance(node, exp.Or | exp.Not):
        for child in node.iter_expressions():
            _predicates(child, names, fields, read, composite=False)
        return
    name = _field(node.this, names, fields) if isinstance(node, exp.Expression) else None
    if name is None:
        return
    if isinstance(node, exp.EQ | exp.In | exp.Is):
        (use.equality if composite else use.single).append(name)
        if composite:
            _note_constant(node, name, read)
    elif isinstance(node, _RANGES):
        (use.ranges if composite else use.single).append(name)
    elif isinstance(node, exp.Like) and _prefix(node.expression):
        (use.patterns if composite else use.single).append(name)


def _note_constant(node: exp.Expression, name: str, read: SelectRead) -> None:
    """The constant an ANDed ``column = ...`` or ``column IS NULL`` compares to, if any."""
    if isinstance(node, exp.Is):
        if not node.args.get("negate") and isinstance(node.expression, exp.Null):
            read.literals.setdefault(name, None)
        return
    if not isinstance(node, exp.EQ):
        return
    value = node.expression
    if isinstance(value, exp.Placeholder) and value.name.startswith("p"):
        position = value.name[1:]
        if position.isdigit():
            read.parameters.setdefault(name, int(position))
        return
    literal = constant(value)
    if literal is not ... and literal is not None:
        read.literals.setdefault(name, literal)


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
