"""A filtered read of a related manager, once per row, as the project wrote it
(``self.links.filter(person__live=True)``), turned into the ``Prefetch`` to a list that
reads it once for the whole queryset; and a read that picks by a value of the calling code
(``self.values.get(field=field)`` in a loop over fields), whose rows are prefetched without
that condition and picked from the list in Python. Nothing is run; a read this cannot read
from its line gives None."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from django.core.exceptions import FieldDoesNotExist

from django_dbtune.call_sites import relative_path
from django_dbtune.fix_targets import RowCall
from django_dbtune.nplusone.per_row_source import (
    ROWS_CALLS,
    chain_of,
    free_name,
    local_names,
    module_of,
    parsed_source,
    reads_name,
    rewritten,
    statement_at,
)

if TYPE_CHECKING:
    from django.db.models import Model

    from django_dbtune.nplusone.state import Load


def list_read(load: Load) -> tuple[str, str, RowCall] | None:
    """For a filtered read of a related manager on a project line that can be read
    (``self.links.filter(person__live=True)``): the fix, a ``Prefetch`` of that very
    queryset to a list, its advice, and the read for a proof to answer from the list. A
    read that picks by a value of the code (``self.values.get(field=field)``) prefetches
    the rows without that condition, and the advice picks from the list in Python."""
    if load.site is None or load.related_model is None:
        return None
    file, line, function = load.site
    model = load.related_model
    module = module_of(file)
    if function == "template" or module is None:
        return None
    # A read of a slice is no list; .get() is sliced by Django itself (at most 21 rows).
    text = None if load.sliced else read_rows(file, line, model=model.__name__, accessor=load.name)
    picked = None
    if text is None:
        picked = picked_read(file, line, model=model, accessor=load.name)
        if picked is None:
            return None
        text = picked.rows
    to_attr = free_name(load.tag.group.model, f"{load.name}_list")
    code = f'.prefetch_related(Prefetch("{load.name}", queryset={text}, to_attr="{to_attr}"))'
    where = f"{function} ({relative_path(file)}:{line})"
    picks: tuple[tuple[str, str, bool], ...] = ()
    if picked is None:
        advice = f"Then read obj.{to_attr} where {where} filters .{load.name} once per row."
    else:
        fields = [model._meta.get_field(name) for name, _ in picked.picks]
        # reviewer=reviewer compares to an instance (its .pk); reviewer_id=x to the key.
        picks = tuple(
            (field.attname, value, field.is_relation and name == field.name)  # type: ignore[union-attr]
            for field, (name, value) in zip(fields, picked.picks, strict=True)
        )
        free = [n for n in ("row", "item", "entry", "obj", "one") if n not in picked.taken]
        if not free:
            return None
        each = free[0]
        test = " and ".join(
            f"{each}.{attname} == {value}{'.pk' if relation else ''}"
            for attname, value, relation in picks
        )
        advice = (
            f"Then, where {where} calls .{load.name}.{picked.method}(...), pick from the "
            f"list: [{each} for {each} in {picked.row}.{to_attr} if {test}]"
            + (
                " (one row; .get() raised DoesNotExist for none and MultipleObjectsReturned "
                "for several)."
                if picked.method == "get"
                else "."
            )
        )
    call = RowCall(
        "rows", to_attr, text, relative_path(file), line, module, path=load.name, picks=picks
    )
    return code, advice, call


def read_rows(filename: str, line: int, *, model: str, accessor: str) -> str | None:
    """The queryset a ``Prefetch`` needs for the filtered read of related manager
    ``accessor`` in the statement at ``filename:line`` (``self.links.filter(person__live=
    True).select_related("person")`` gives ``Link.objects.filter(person__live=True)
    .select_related("person")``); None unless the statement holds exactly one such read,
    with no slice and no condition that reads the row again."""
    found = _statement(filename, line)
    if found is None:
        return None
    source, tree, statement = found
    longest: dict[int, tuple[ast.Attribute, list[ast.Call]]] = {}
    for node in ast.walk(statement):
        chain = chain_of(node, ROWS_CALLS) if isinstance(node, ast.Call) else None
        if chain is None or not chain[1]:
            continue
        start, calls = chain
        if not (isinstance(start, ast.Attribute) and start.attr == accessor):
            continue
        seen = longest.get(id(start))
        if seen is None or len(calls) > len(seen[1]):  # the whole chain, not a part of it
            longest[id(start)] = (start, calls)
    if len(longest) != 1:
        return None
    [(_, calls)] = longest.values()
    return rewritten(source, calls, None, f"{model}.objects", local_names(tree, line))


@dataclass(frozen=True)
class Picked:
    """A read of a related manager that picks by a value of the calling code, once per
    row and value (``self.values.get(field=field)`` in a loop over fields)."""

    rows: str
    """The ``Prefetch`` queryset: the read without the picking conditions."""
    row: str
    """How the code names the row (``self``)."""
    method: Literal["get", "filter"]
    picks: tuple[tuple[str, str], ...]
    """(field, name): each condition ``field=name`` whose value the code holds."""
    taken: frozenset[str] = frozenset()
    """The names of the calling function: the pick's own loop variable must be another."""


def picked_read(filename: str, line: int, *, model: type[Model], accessor: str) -> Picked | None:
    """The read at ``filename:line`` when it ends in ``.get(...)`` or ``.filter(...)``
    whose conditions compare fields of ``model`` (no lookups across relations) to plain
    names of the calling function; every other argument of the chain is kept in the
    ``Prefetch`` queryset. None for anything else."""
    statement_found = _statement(filename, line)
    if statement_found is None:
        return None
    source, tree, statement = statement_found
    local = local_names(tree, line)
    found = []
    for node in ast.walk(statement):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ("get", "filter") or node.args:
            continue
        chain = chain_of(node.func.value, ROWS_CALLS)
        start = chain[0] if chain is not None else None
        if isinstance(start, ast.Attribute) and start.attr == accessor:
            found.append((node, start, chain[1] if chain is not None else []))
    if len(found) != 1:
        return None
    last, start, calls = found[0]
    parents = {child: node for node in ast.walk(statement) for child in ast.iter_child_nodes(node)}
    used = parents.get(last)
    get = isinstance(last.func, ast.Attribute) and last.func.attr == "get"
    if not get and isinstance(used, ast.Attribute | ast.Subscript):
        return None  # .filter(...).first(), .order_by(...), [:n]: a list is not what it read
    picks, kept = [], []
    for keyword in last.keywords:
        if keyword.arg is None:
            return None
        if not reads_name(keyword.value, local):
            kept.append(keyword)
        elif isinstance(keyword.value, ast.Name) and _is_own_field(model, keyword.arg):
            picks.append((keyword.arg, keyword.value.id))
        else:
            return None
    rows = rewritten(source, calls, None, f"{model.__name__}.objects", local)
    row = ast.get_source_segment(source, start.value)
    if not picks or rows is None or row is None:
        return None
    if kept:
        rows += f".filter({', '.join(ast.get_source_segment(source, k) or '' for k in kept)})"
    elif not calls:
        rows += ".all()"
    method: Literal["get", "filter"] = "get" if get else "filter"
    return Picked(rows, row, method, tuple(picks), local)


def _statement(filename: str, line: int) -> tuple[str, ast.Module, ast.stmt] | None:
    """The file's source and tree, and the innermost statement spanning ``line``."""
    read = parsed_source(filename)
    statement = statement_at(read[1], line) if read is not None else None
    if read is None or statement is None:
        return None
    return read[0], read[1], statement


def _is_own_field(model: type[Model], name: str) -> bool:
    """A concrete field of ``model`` itself, not a lookup through it."""
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:  # or a lookup such as "field__name"
        return False
    return bool(getattr(field, "concrete", False)) and not field.many_to_many
