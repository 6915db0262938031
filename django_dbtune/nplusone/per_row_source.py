"""A per-row count, existence check or aggregate as the project wrote it, turned into the
annotation that runs it once for the whole queryset.

``Ticket.objects.filter(kbitem=self, status__in=(1, 2)).count()`` run once per knowledge
item is not fixed by ``Count("ticket")``: that counts every ticket, not the open ones. The
fix keeps every condition of the call, read from its own source line, and only puts
``OuterRef("pk")`` where the code passed the row. Nothing is run; a call this cannot read
gives None, and the caller says that the fix must keep the call's conditions.
"""

from __future__ import annotations

import ast
import linecache
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Kind = Literal["count", "exists", "aggregate"]

_CHAIN_CALLS = frozenset({"filter", "exclude", "all", "order_by", "distinct"})
"""Queryset methods a per-row read may chain before its count: all keep its meaning in a
subquery (an ordering is dropped there anyway)."""


@dataclass(frozen=True)
class Written:
    """The per-row read at one line, rewritten over the outer row."""

    kind: Kind
    inner: str
    """The queryset, compared to ``OuterRef("pk")`` instead of the row:
    ``Ticket.objects.filter(kbitem=OuterRef("pk"), status__in=(1, 2))``."""
    column: str
    """The field of the inner model that points at the row (``kbitem``)."""
    aggregate: str | None = None
    """The aggregate expression of an ``aggregate()`` call (``models.Sum("time_spent")``)."""

    def value(self) -> str:
        """The expression that gives each outer row what the call returned."""
        grouped = f'{self.inner}.order_by().values("{self.column}")'
        if self.kind == "exists":
            return f"Exists({self.inner})"
        if self.kind == "count":
            counted = f'{grouped}.annotate(n=Count("pk")).values("n")'
            return f"Coalesce(Subquery({counted}), 0)"
        return f'Subquery({grouped}.annotate(value={self.aggregate}).values("value"))'

    def annotation(self, name: str) -> str:
        """``.annotate(<name>=...)``."""
        return f".annotate({name}={self.value()})"


def annotation_name(written: Written, accessor: str) -> str:
    """What the annotation is called: ``<accessor>_count``, ``has_<accessor>``, or after
    the aggregate (``time_spent_sum`` for ``Sum("time_spent")``)."""
    if written.kind == "count":
        return f"{accessor}_count"
    if written.kind == "exists":
        return f"has_{accessor}"
    try:
        expression = ast.parse(written.aggregate or "", mode="eval").body
    except SyntaxError:
        expression = None
    if isinstance(expression, ast.Call) and expression.args:
        function = expression.func
        function_name = function.attr if isinstance(function, ast.Attribute) else None
        function_name = function_name or getattr(function, "id", None)
        over = expression.args[0]
        if function_name and isinstance(over, ast.Constant) and isinstance(over.value, str):
            return f"{over.value.replace('__', '_')}_{function_name.lower()}"
    return f"{accessor}_aggregate"


def read_call(
    filename: str,
    line: int,
    *,
    model: str,
    column: str,
    names: frozenset[str],
    accessor: str | None = None,
) -> Written | None:
    """The count, ``exists()`` or ``aggregate()`` call at ``filename:line`` that reads
    ``model`` (its class name) once per row, rewritten; None when the line holds no such
    call this can read. ``names`` are the keyword names that pass the row (``kbitem``,
    ``kbitem_id``, ``kbitem__pk``); ``accessor`` is the related manager's name when the
    call goes through one (``self.ticket_set.filter(...)``)."""
    source = _source(filename)
    tree = _tree(filename)
    if source is None or tree is None:
        return None
    call = _innermost_call(tree, line)
    if call is None:
        return None
    assert isinstance(call.func, ast.Attribute)
    kind: Kind = call.func.attr  # type: ignore[assignment]
    aggregate = None
    if kind == "aggregate":
        values = [*call.args, *(keyword.value for keyword in call.keywords)]
        if len(values) != 1:
            return None
        aggregate = ast.get_source_segment(source, values[0])
    elif call.args or call.keywords:
        return None
    chain = _chain(call.func.value)
    if chain is None:
        return None
    start, calls = chain
    if accessor is not None:
        if not (isinstance(start, ast.Attribute) and start.attr == accessor):
            return None
        inner = _rewritten(source, calls, None, f'{model}.objects.filter({column}=OuterRef("pk"))')
    else:
        if not _names_model(start, model):
            return None
        inner = _rewritten(source, calls, names, ast.get_source_segment(source, start))
    if inner is None:
        return None
    return Written(kind, inner, column, aggregate)


def _innermost_call(tree: ast.AST, line: int) -> ast.Call | None:
    """The smallest ``x.count()``/``x.exists()``/``x.aggregate(...)`` call spanning ``line``
    (Python reports a multi-line chain at the line of the call it is in)."""
    found: ast.Call | None = None
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ("count", "exists", "aggregate"):
            continue
        end = node.end_lineno or node.lineno
        if node.lineno <= line <= end and (
            found is None or end - node.lineno < (found.end_lineno or 0) - found.lineno
        ):
            found = node
    return found


def _chain(node: ast.expr) -> tuple[ast.expr, list[ast.Call]] | None:
    """``start.<manager>.filter(...).exclude(...)`` as (start, the calls in order), where
    start is what the manager is read on; None for anything else."""
    calls: list[ast.Call] = []
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr not in _CHAIN_CALLS:
            return None
        calls.append(node)
        node = node.func.value
    calls.reverse()
    return node, calls


def _names_model(start: ast.expr, model: str) -> bool:
    """``Model.objects`` or ``module.Model.objects`` (any manager name)."""
    if not isinstance(start, ast.Attribute):
        return False
    owner = start.value
    name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
    return name == model


def _rewritten(
    source: str, calls: list[ast.Call], names: frozenset[str] | None, start: str | None
) -> str | None:
    """The chain's text after ``start``, with the one keyword that passes the row (when
    ``names`` are given) compared to ``OuterRef("pk")``; None unless exactly one does."""
    if start is None:
        return None
    text = [start]
    replaced = 0
    passed = [
        keyword.value
        for call in calls
        for keyword in call.keywords
        if names is not None and keyword.arg in names
    ]
    row = passed[0].id if len(passed) == 1 and isinstance(passed[0], ast.Name) else None
    if row is not None and any(
        isinstance(node, ast.Name) and node.id == row
        for call in calls
        for argument in (*call.args, *(k.value for k in call.keywords if k.value is not passed[0]))
        for node in ast.walk(argument)
    ):
        return None  # another condition reads the row too: it has no value in a subquery
    for call in calls:
        assert isinstance(call.func, ast.Attribute)
        arguments = []
        for argument in call.args:
            segment = ast.get_source_segment(source, argument)
            if segment is None:
                return None
            arguments.append(segment)
        for keyword in call.keywords:
            if keyword.arg is None:
                return None  # **kwargs: what they name is not in the source
            value = ast.get_source_segment(source, keyword.value)
            if names is not None and keyword.arg in names and call.func.attr == "filter":
                value = 'OuterRef("pk")'
                replaced += 1
            arguments.append(f"{keyword.arg}={value}")
        text.append(f".{call.func.attr}({', '.join(arguments)})")
    if names is not None and replaced != 1:
        return None
    return "".join(text)


def _source(filename: str) -> str | None:
    lines = linecache.getlines(filename)
    return "".join(lines) if lines else None


@lru_cache(maxsize=64)
def _parsed(filename: str, source: str) -> ast.Module | None:
    try:
        return ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return None


def _tree(filename: str) -> ast.Module | None:
    source = _source(filename)
    return _parsed(filename, source) if source is not None else None
