"""What a partial index's condition holds, and which queries imply it.

A condition is read from SQL (the database's own definition, or the one Django renders for a
declared index) into an AND of terms on the table's columns, each of one kind:

- the column equals one of a few constants: ``status = 'open'``, ``status IN ('a', 'b')``
  (PostgreSQL stores it as ``= ANY (ARRAY[...])``), a boolean column alone (``WHERE
  is_active``, ``WHERE NOT is_active``);
- the column ``IS NULL``, or ``IS NOT NULL``.

A query implies the condition when it implies every term: it compares the column for equality
to one of those constants (``None`` for ``IS NULL``); for ``IS NOT NULL``, it compares the
column to anything (SQL's ``=``, ``<``, ``LIKE`` never match NULL). Anything else (a range,
``OR``, a function, a comparison of two columns) is not read: such an index serves no query
in general, which is the safe side (a suggestion too many, never a query left unindexed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

__all__ = ["Call", "Condition", "Term", "bare", "condition_of", "constant"]

NULL = "null"
NOT_NULL = "not null"
EQUALS = "equals"


@dataclass(frozen=True)
class Call:
    """What one query compares, by column of its table."""

    equal: Mapping[str, Any] = field(default_factory=dict)
    """Each column compared for equality to a constant the query names: the constant, or
    None for ``IS NULL``."""
    compared: frozenset[str] = frozenset()
    """Every column compared to anything (equality, range, prefix), constant or not."""


@dataclass(frozen=True)
class Term:
    column: str
    kind: str
    """``EQUALS`` one of ``values``, ``NULL`` or ``NOT_NULL``."""
    values: frozenset[Any] = frozenset()

    def implied_by(self, call: Call) -> bool:
        if self.kind == NOT_NULL:
            if self.column in call.equal:
                return call.equal[self.column] is not None
            return self.column in call.compared
        if self.column not in call.equal:
            return False
        value = call.equal[self.column]
        if self.kind == NULL or value is None:
            return self.kind == NULL and value is None
        try:
            return value in self.values
        except TypeError:  # an unhashable constant: not one of these
            return False


@dataclass(frozen=True)
class Condition:
    terms: tuple[Term, ...]

    def implied_by(self, call: Call) -> bool:
        return all(term.implied_by(call) for term in self.terms)

    @property
    def pinned(self) -> frozenset[str]:
        """The columns the condition narrows to a few values (or NULL): within the index,
        a query's equality on them is already done."""
        return frozenset(term.column for term in self.terms if term.kind != NOT_NULL)


def condition_of(node: exp.Expression) -> Condition | None:
    """The condition a ``WHERE`` expression states, or None when it is not read."""
    terms: list[Term] = []
    return Condition(tuple(terms)) if _read(node, terms) and terms else None


def _read(node: exp.Expression, terms: list[Term]) -> bool:
    node = bare(node)
    if isinstance(node, exp.And):
        return _read(node.this, terms) and _read(node.expression, terms)
    term = _term(node)
    if term is not None:
        terms.append(term)
    return term is not None


def _term(node: exp.Expression) -> Term | None:
    if isinstance(node, exp.Column):  # a boolean column alone
        return Term(node.name, EQUALS, frozenset({True}))
    if isinstance(node, exp.Not):
        inner = bare(node.this)
        if isinstance(inner, exp.Column):
            return Term(inner.name, EQUALS, frozenset({False}))
        if isinstance(inner, exp.Is) and _column(inner.this) and _is_null(inner.expression):
            return Term(_column(inner.this) or "", NOT_NULL)
        return None
    if isinstance(node, exp.Is):
        column = _column(node.this)
        if column is None or not _is_null(node.expression):
            return None
        return Term(column, NOT_NULL if node.args.get("negate") else NULL)
    if isinstance(node, exp.EQ):
        column, other = _column(node.this), node.expression
        if column is None:
            column, other = _column(node.expression), node.this
        if column is None:
            return None
        other = bare(other)
        listed = other.this if isinstance(other, exp.Any) else None
        values = _values(bare(listed).expressions) if listed is not None else _values([other])
        return Term(column, EQUALS, values) if values else None
    if isinstance(node, exp.In) and not node.args.get("query"):
        column = _column(node.this)
        values = _values(node.expressions)
        return Term(column, EQUALS, values) if column and values else None
    return None


def bare(node: Any) -> Any:
    """The expression without parentheses and casts (``((kind)::text)`` is ``kind``)."""
    while isinstance(node, exp.Paren | exp.Cast):
        node = node.this
    return node


def _column(node: Any) -> str | None:
    node = bare(node)
    return node.name if isinstance(node, exp.Column) else None


def _is_null(node: Any) -> bool:
    return isinstance(bare(node), exp.Null)


def _values(nodes: list[Any]) -> frozenset[Any] | None:
    """The constants of ``nodes``, or None if one is not a constant."""
    found = set()
    for node in nodes:
        value = constant(node)
        if value is ... or value is None:
            return None
        found.add(value)
    return frozenset(found) or None


def constant(node: Any) -> Any:
    """The Python value of a literal (string, number, boolean, NULL as None); Ellipsis
    for anything else."""
    node = bare(node)
    negative = isinstance(node, exp.Neg)
    if negative:
        node = bare(node.this)
    if isinstance(node, exp.Boolean) and not negative:
        return bool(node.this)
    if isinstance(node, exp.Null) and not negative:
        return None
    if not isinstance(node, exp.Literal):
        return ...
    if node.is_string:
        return ... if negative else str(node.this)
    text = str(node.this)
    try:
        number: int | float = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return ...
    return -number if negative else number
