"""Proving the fix for a count, ``exists()`` or aggregate the code runs once per row: the
queryset gets the annotation, and while the page runs again each such call at its line
returns the row's annotation instead of querying, as the changed code would read it.

The annotation is the call's own chain (read from its source line by
:mod:`.per_row_source`), evaluated in the call's module, so its names mean what they mean
there."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from django.db import models
from django.db.models import Model, Prefetch
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact, In
from django.db.models.query import ModelIterable, QuerySet
from django.db.models.sql.where import AND

from django_dbtune.call_sites import call_site_finder, relative_path
from django_dbtune.capture import unrecorded
from django_dbtune.fix_targets import FixTarget, RowCall
from django_dbtune.nplusone.state import pause

_EXPRESSIONS = {
    name: getattr(models, name)
    for name in ("Avg", "Count", "Exists", "F", "Max", "Min", "OuterRef", "Q", "Subquery", "Sum")
}


def row_annotations(target: FixTarget) -> dict[str, Any]:
    """``{name: expression}`` for each per-row call of ``target``; raises what evaluating
    an expression raises (the proof then says the fix raised)."""
    return {
        call.name: _evaluated(call)
        for call in target.row_calls
        if call.kind in ("count", "exists", "aggregate")
    }


def row_prefetches(target: FixTarget) -> list[Prefetch[Any]]:
    """The ``Prefetch(..., to_attr=...)`` of each filtered per-row read of ``target``, and
    of each read its model answers from a prefetch attribute of its own."""
    return [
        Prefetch(call.path, queryset=_evaluated(call), to_attr=call.name)
        for call in target.row_calls
        if call.kind in ("rows", "own")
    ]


def replaced_prefetches(target: FixTarget) -> set[str]:
    """Plain prefetches a fix puts a ``Prefetch(to_attr=...)`` in place of."""
    return {call.path for call in target.row_calls if call.kind == "own"}


def _evaluated(call: RowCall) -> Any:
    module = sys.modules.get(call.module)
    if module is None:
        raise LookupError(f"module {call.module} is not imported")
    names = {**_EXPRESSIONS, "Coalesce": Coalesce, **vars(module)}
    return eval(call.expression, names)  # the project's own chain, re-spelt


_MISSING = object()


@contextmanager
def stood_in(
    target: FixTarget,
    mismatches: list[str],
    rerun: Callable[[], bool],
    hit: Callable[[], None] = lambda: None,
) -> Iterator[None]:
    """While inside, in the re-run only (``rerun()`` says whether the code running now is
    it), each per-row call of ``target`` reads its row's annotation. The call itself runs
    too, unrecorded, and what it returned is compared: a difference goes to ``mismatches``
    (the fix would change what the page shows). ``hit()`` is called for each read a first
    result answered."""
    if not target.row_calls:
        yield
        return
    calls = {(call.file, call.line): call for call in target.row_calls}
    names = ("count", "exists", "aggregate", "_fetch_all")
    saved = {name: QuerySet.__dict__[name] for name in names}

    def site_call(kind: str) -> tuple[RowCall, FrameType] | None:
        if not rerun():
            return None
        start = sys._getframe(3)
        frame: FrameType | None = start
        finder = call_site_finder()
        while frame is not None and finder.is_internal(frame.f_code):
            frame = frame.f_back
        if frame is None:
            return None
        call = calls.get((relative_path(frame.f_code.co_filename), frame.f_lineno))
        if call is None and kind in ("reuse", "bulk"):
            # Read at a template's line (a library's get() under {{ result.object }}): the
            # line its finding names, found by the rule that grouped its queries.
            site = finder.find_trigger(start)
            if site is not None and site[2] == "template" and site[0] and site[1]:
                call = calls.get((relative_path(site[0]), site[1]))
        return (call, frame) if call is not None and call.kind == kind else None

    def checked(
        call: RowCall,
        value: Any,
        real: Callable[[], Any],
        loaded: Iterable[str] = (),
        differs: str | None = None,
    ) -> Any:
        """``value``, once ``real()`` (run unrecorded) is compared with it; ``loaded``
        names the annotations rows carry, ``differs`` what a difference means."""
        with pause(), unrecorded():
            returned = real()
        same = returned == value
        if isinstance(returned, list) and isinstance(value, list):
            # Model instances are equal by primary key: rows compare by what they hold.
            same = _field_values(returned, loaded) == _field_values(value, loaded)
        if not same:
            mismatches.append(
                differs
                or f"the call at {call.file}:{call.line} returned {_short(returned)} where "
                f"the fix gives {_short(value)}"
            )
        return value

    def answered(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any], real: Any) -> Any:
        found = site_call(kind)
        if found is None:
            return _MISSING
        call, frame = found
        rows = [
            value
            for value in list(frame.f_locals.values())
            if issubclass(type(value), Model) and call.name in value.__dict__
        ]
        if len(rows) != 1:
            return _MISSING
        value = _as_returned(call, rows[0].__dict__[call.name], args, kwargs)
        return checked(call, value, real)

    def fetch_all(queryset: Any) -> None:
        if queryset._result_cache is None and reusing and reused(queryset):
            return
        if queryset._result_cache is None and by_key and read_by_key(queryset):
            return
        # A filtered read of a related manager at the call's line: the prefetched list.
        row = queryset._hints.get("instance") if queryset._result_cache is None else None
        of_rows = row is not None and queryset._iterable_class is ModelIterable
        found = site_call("rows") if of_rows else None
        if found is not None and found[0].name in row.__dict__:
            again = queryset._chain()
            rows = picked(found[0], found[1], list(row.__dict__[found[0].name]))
            if rows is None:
                mismatches.append(
                    f"the pick at {found[0].file}:{found[0].line} cannot be made with the "
                    "values the code holds there (a variable missing, or no .pk on it)"
                )
                rows = []
            listed = checked(
                found[0], rows, lambda: saved["_fetch_all"](again) or again._result_cache
            )
            queryset._result_cache = listed
            queryset._prefetch_done = True
            return
        saved["_fetch_all"](queryset)

    reusing = any(call.kind == "reuse" for call in target.row_calls)
    first: dict[tuple[str, str, str], list[Any]] = {}

    def reused(queryset: Any) -> bool:
        """The same read at the call's line again: its first result, as the code would
        keep it. The read runs too, unrecorded, for the comparison."""
        found = site_call("reuse")
        if found is None:
            return False
        try:
            sql, params = queryset.query.sql_with_params()
        except Exception:  # EmptyResultSet, or a query that does not compile here
            return False
        key = (queryset.db, sql, repr(params))
        kept = first.get(key)
        if kept is None:
            saved["_fetch_all"](queryset)
            first[key] = list(queryset._result_cache)
            return True
        call, again = found[0], queryset._chain()
        queryset._result_cache = checked(
            call,
            kept,
            lambda: saved["_fetch_all"](again) or again._result_cache,
            loaded=again.query.annotation_select,
            differs=f"the read at {call.file}:{call.line} returned other rows or values than "
            "its first run, so its result cannot be reused",
        )
        queryset._prefetch_done = True
        hit()
        return True

    by_key = any(call.kind == "bulk" for call in target.row_calls)
    read: dict[tuple[Any, ...], list[Any]] = {}

    def read_by_key(queryset: Any) -> bool:
        """A read by key at the call's line: answered from one read of every key the
        first run asked for, in the query's order and slice; the read runs too,
        unrecorded, for the comparison. A key the first run did not ask for is read."""
        found = site_call("bulk")
        wanted = _keys(queryset, found[0].name) if found is not None else None
        if found is None or wanted is None:
            return False
        call, query = found[0], queryset.query
        others = _other_conditions(queryset, call.name)
        # Ordered as the query is: the rows of some keys then come in the order the
        # database gives them (by a related model's name, NULLs first or last). The read's
        # other conditions (a manager's is_public=True) are kept.
        place = (
            queryset.db,
            queryset.model,  # reads of two models by key on one template line
            call.name,
            repr(query.order_by),
            query.default_ordering,
            others,
        )
        try:
            hash(place)
        except TypeError:  # a condition Django cannot hash (extra(where=...))
            return False
        if place not in read:
            every = queryset._chain()
            every.query.clear_limits()
            every.query.where = type(every.query.where)(list(others))
            every = every.filter(**{f"{call.name}__in": call.keys})
            saved["_fetch_all"](every)
            read[place] = every._result_cache
        rows = read[place]
        asked = set(call.keys)  # a key with no row is answered too: no row
        if any(key not in asked for key in wanted):
            return False
        keys = set(wanted)
        answer = [row for row in rows if getattr(row, call.name) in keys]
        answer = answer[query.low_mark : query.high_mark]
        again = queryset._chain()
        queryset._result_cache = checked(
            call,
            answer,
            lambda: saved["_fetch_all"](again) or again._result_cache,
            loaded=query.annotation_select,  # an annotation per row must match too
        )
        queryset._prefetch_done = True
        hit()
        return True

    def count(queryset: Any) -> Any:
        value = answered("count", (), {}, lambda: saved["count"](queryset))
        return saved["count"](queryset) if value is _MISSING else value

    def exists(queryset: Any) -> Any:
        value = answered("exists", (), {}, lambda: saved["exists"](queryset))
        return saved["exists"](queryset) if value is _MISSING else value

    def aggregate(queryset: Any, *args: Any, **kwargs: Any) -> Any:
        def real() -> Any:
            return saved["aggregate"](queryset, *args, **kwargs)

        value = answered("aggregate", args, kwargs, real)
        return real() if value is _MISSING else value

    QuerySet.count = count  # type: ignore[method-assign,assignment]
    QuerySet.exists = exists  # type: ignore[method-assign,assignment]
    QuerySet.aggregate = aggregate  # type: ignore[method-assign,assignment]
    QuerySet._fetch_all = fetch_all  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(QuerySet, name, method)


def picked(call: RowCall, frame: FrameType, rows: list[Any]) -> list[Any] | None:
    """The rows of the list the advice's comprehension keeps, with the values the calling
    code holds now (``row.field_id == field.pk``); None when the advice's comparison could
    not be made (a name missing, ``.pk`` read on something else than a model instance)."""
    if not call.picks:
        return rows
    values = frame.f_locals
    wanted = []
    for attname, name, relation in call.picks:
        value = values.get(name, _MISSING)
        if relation:
            value = value.pk if isinstance(value, Model) else _MISSING
        if value is _MISSING:
            return None
        wanted.append((attname, value))
    return [row for row in rows if all(getattr(row, a) == v for a, v in wanted)]


def _field_values(rows: list[Any], annotations: Iterable[str]) -> list[Any]:
    """Rows as what the query loaded into them: each field and annotation (model instances
    compare by primary key only). Read from ``__dict__``: nothing deferred is loaded for it,
    and what the code caches on an instance afterwards is not the query's."""
    names = tuple(annotations)
    return [
        (
            type(row),
            [
                row.__dict__.get(name, _MISSING)
                for name in (*(f.attname for f in row._meta.concrete_fields), *names)
            ],
        )
        if isinstance(row, Model)
        else row
        for row in rows
    ]


def _keys(queryset: Any, attname: str) -> list[Any] | None:
    """The keys a queryset reads when one of its conditions is ``<attname> = x`` or
    ``<attname> IN (...)`` on a model's rows, and-ed with conditions that do not change from
    row to row; None for any other read."""
    query = queryset.query
    where = query.where
    if queryset._iterable_class is not ModelIterable or query.combinator or query.distinct:
        return None
    if where.connector != AND or where.negated:
        return None
    keyed = [condition for condition in where.children if _on(condition, attname)]
    if len(keyed) != 1:
        return None
    condition = keyed[0]
    if isinstance(condition, Exact):
        return [condition.rhs]
    if isinstance(condition, In) and isinstance(condition.rhs, list | tuple | set):
        return list(condition.rhs)
    return None


def _on(condition: Any, attname: str) -> bool:
    target = getattr(getattr(condition, "lhs", None), "target", None)
    return getattr(target, "attname", None) == attname


def _other_conditions(queryset: Any, attname: str) -> tuple[Any, ...]:
    """A read by key's conditions besides the key's (the same for every row, or the
    comparison with the real read says otherwise)."""
    return tuple(c for c in queryset.query.where.children if not _on(c, attname))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_returned(call: RowCall, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What the call itself would have returned, given the row's annotation."""
    if call.kind == "count":
        return value or 0
    if call.kind == "exists":
        return bool(value)
    if kwargs:
        return {next(iter(kwargs)): value}
    return {args[0].default_alias: value}
