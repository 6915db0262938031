"""A per-row count, existence check, aggregate or filtered read as the project wrote it,
turned into the annotation (or the ``Prefetch`` to a list) that runs it once for the whole
queryset.

``Ticket.objects.filter(kbitem=self, status__in=(1, 2)).count()`` run once per knowledge
item is not fixed by ``Count("ticket")``: that counts every ticket, not the open ones. The
fix keeps every condition of the call, read from its own source line, and only puts
``OuterRef("pk")`` where the code passed the row. Nothing is run; a call this cannot read
gives None, and the caller says that the fix must keep the call's conditions.
"""

from __future__ import annotations

import ast
import linecache
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from django.db.models import Model

    from django_dbtune.nplusone.state import Load

Kind = Literal["count", "exists", "aggregate"]

_CHAIN_CALLS = frozenset({"filter", "exclude", "all", "order_by", "distinct"})
"""Queryset methods a per-row read may chain before its count: all keep its meaning in a
subquery (an ordering is dropped there anyway)."""

ROWS_CALLS = _CHAIN_CALLS | {"select_related", "prefetch_related", "only", "defer"}
"""The same for a filtered read of rows, which a ``Prefetch`` queryset can do as well."""


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
    empty: str | None = None
    """What the aggregate returns over no rows, when not None (``0`` for ``Count``)."""

    def value(self) -> str:
        """The expression that gives each outer row what the call returned."""
        grouped = f'{self.inner}.order_by().values("{self.column}")'
        if self.kind == "exists":
            return f"Exists({self.inner})"
        if self.kind == "count":
            counted = f'{grouped}.annotate(n=Count("pk")).values("n")'
            return f"Coalesce(Subquery({counted}), 0)"
        value = f'Subquery({grouped}.annotate(value={self.aggregate}).values("value"))'
        return value if self.empty is None else f"Coalesce({value}, {self.empty})"

    def annotation(self, name: str) -> str:
        """``.annotate(<name>=...)``."""
        return f".annotate({name}={self.value()})"


def annotation_name(written: Written, accessor: str | None, model: type[Model]) -> str:
    """What the annotation on ``model``'s queryset is called: ``<accessor>_count``,
    ``has_<accessor>``, or after the aggregate (``time_spent_sum`` for
    ``Sum("time_spent")``), never a name ``model`` has already."""
    return free_name(model, _annotation_name(written, accessor or written.column))


def free_name(model: type[Model], name: str) -> str:
    """``name``, or ``name`` with a number, whichever ``model`` has no attribute of (an
    annotation or a ``to_attr`` may not shadow a field, a property or a method)."""
    free, number = name, 1
    while hasattr(model, free):
        number += 1
        free = f"{name}_{number}"
    return free


def _annotation_name(written: Written, accessor: str) -> str:
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
    read = parsed_source(filename)
    if read is None:
        return None
    source, tree = read
    call = _only_call(tree, line)
    if call is None:
        return None
    assert isinstance(call.func, ast.Attribute)
    kind: Kind = call.func.attr  # type: ignore[assignment]
    aggregate = empty = None
    if kind == "aggregate":
        values = [*call.args, *(keyword.value for keyword in call.keywords)]
        if len(values) != 1 or not isinstance(values[0], ast.Call):
            return None
        aggregate = ast.get_source_segment(source, values[0])
        empty = _empty(source, values[0])
    elif call.args or call.keywords:
        return None
    chain = chain_of(call.func.value)
    if chain is None:
        return None
    start, calls = chain
    if kind != "exists" and any(c.func.attr == "distinct" for c in calls):  # type: ignore[attr-defined]
        return None  # distinct rows over a join: a grouped count would count the join's
    local = local_names(tree, line)
    if accessor is not None:
        if not (isinstance(start, ast.Attribute) and start.attr == accessor):
            return None
        first = f'{model}.objects.filter({column}=OuterRef("pk"))'
        inner = rewritten(source, calls, None, first, local)
    else:
        if not _names_model(start, model):
            return None
        inner = rewritten(source, calls, names, ast.get_source_segment(source, start), local)
    if inner is None:
        return None
    return Written(kind, inner, column, aggregate, empty)


def statement_at(tree: ast.AST, line: int) -> ast.stmt | None:
    """The innermost statement spanning ``line``."""
    found: ast.stmt | None = None
    for node in ast.walk(tree):
        if not (isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or 0)):
            continue
        inner = found is None or (
            node.lineno >= found.lineno and (node.end_lineno or 0) <= (found.end_lineno or 0)
        )
        if inner:
            found = node
    return found


def _only_call(tree: ast.AST, line: int) -> ast.Call | None:
    """The one ``x.count()``/``x.exists()``/``x.aggregate(...)`` call spanning ``line``
    (Python reports a multi-line chain at the line of the call it is in); None when there
    is none, or several: which one ran is not known."""
    found = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("count", "exists", "aggregate")
        and node.lineno <= line <= (node.end_lineno or node.lineno)
    ]
    return found[0] if len(found) == 1 else None


def _empty(source: str, aggregate: ast.Call) -> str | None:
    """What an aggregate returns over no rows, when not None: 0 for ``Count``, its
    ``default``. A subquery over no rows gives NULL, so the fix must say it."""
    for keyword in aggregate.keywords:
        if keyword.arg == "default":
            return ast.get_source_segment(source, keyword.value)
    function = aggregate.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    return "0" if name == "Count" else None


def chain_of(
    node: ast.expr, allowed: frozenset[str] = _CHAIN_CALLS
) -> tuple[ast.expr, list[ast.Call]] | None:
    """``start.<manager>.filter(...).exclude(...)`` as (start, the calls in order), where
    start is what the manager is read on; None for anything else."""
    calls: list[ast.Call] = []
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr not in allowed:
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


def rewritten(
    source: str,
    calls: list[ast.Call],
    names: frozenset[str] | None,
    start: str | None,
    local: frozenset[str],
) -> str | None:
    """The chain's text after ``start``, with the one keyword that passes the row (when
    ``names`` are given) compared to ``OuterRef("pk")``; None unless exactly one does, or
    when another argument reads a name ``local`` to the calling function (the row again,
    a parameter): it has no value where the fix goes."""
    if start is None:
        return None
    text = [start]
    replaced = 0
    for call in calls:
        assert isinstance(call.func, ast.Attribute)
        arguments = []
        for argument in [*call.args, *call.keywords]:
            keyword = argument if isinstance(argument, ast.keyword) else None
            if keyword is not None and keyword.arg is None:
                return None  # **kwargs: what they name is not in the source
            passes_row = (
                keyword is not None
                and names is not None
                and keyword.arg in names
                and call.func.attr == "filter"
            )
            value = keyword.value if keyword is not None else argument
            if not passes_row and reads_name(value, local):
                return None
            segment = 'OuterRef("pk")' if passes_row else ast.get_source_segment(source, value)
            if segment is None:
                return None
            replaced += passes_row
            arguments.append(f"{keyword.arg}={segment}" if keyword is not None else segment)
        text.append(f".{call.func.attr}({', '.join(arguments)})")
    if names is not None and replaced != 1:
        return None
    return "".join(text)


def reads_name(node: ast.AST, local: frozenset[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in local for n in ast.walk(node))


def local_names(tree: ast.AST, line: int) -> frozenset[str]:
    """The names local to the innermost function around ``line``: its parameters and
    whatever it assigns."""
    functions = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        and node.lineno <= line <= (node.end_lineno or 0)
    ]
    function = max(functions, key=lambda node: node.lineno, default=None)
    if function is None:
        return frozenset()
    names = {argument.arg for argument in ast.walk(function) if isinstance(argument, ast.arg)}
    names.update(
        n.id
        for n in ast.walk(function)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    )
    return frozenset(names)


def enclosing_function(filename: str, line: int) -> int | None:
    """The line of the ``def`` of the innermost function around ``filename:line``."""
    read = parsed_source(filename)
    if read is None:
        return None
    functions = [
        node.lineno
        for node in ast.walk(read[1])
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.lineno <= line <= (node.end_lineno or 0)
    ]
    return max(functions, default=None)


def module_of(filename: str) -> str | None:
    """The name of the module Python imported from ``filename``."""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return None


def parsed_source(filename: str) -> tuple[str, ast.Module] | None:
    """The file's source and its syntax tree, as Python imported it (None: unreadable)."""
    lines = linecache.getlines(filename)
    if not lines:
        return None
    source = "".join(lines)
    tree = _parsed(filename, source)
    return None if tree is None else (source, tree)


@lru_cache(maxsize=64)
def _parsed(filename: str, source: str) -> ast.Module | None:
    try:
        return ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return None


def written_through(load: Load) -> Written | None:
    """A per-row call through a related manager, read from its line (``book.reviews
    .filter(stars=5).count()``): its fix keeps the call's own conditions."""
    if load.site is None or load.related_model is None or load.related_query_name is None:
        return None
    file, line, function = load.site
    if function == "template":
        return None
    return read_call(
        file,
        line,
        model=load.related_model.__name__,
        column=load.related_query_name,
        names=frozenset(),
        accessor=load.name,
    )
