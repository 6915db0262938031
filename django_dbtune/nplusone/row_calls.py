"""Proving the fix for a count, ``exists()`` or aggregate the code runs once per row: the
queryset gets the annotation, and while the page runs again each such call at its line
returns the row's annotation instead of querying, as the changed code would read it.

The annotation is the call's own chain (read from its source line by
:mod:`.per_row_source`), evaluated in the call's module, so its names mean what they mean
there."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from django.db import models
from django.db.models import Model
from django.db.models.functions import Coalesce
from django.db.models.query import QuerySet

from django_dbtune.call_sites import call_site_finder, relative_path
from django_dbtune.findings import FixTarget, RowCall

_EXPRESSIONS = {
    name: getattr(models, name)
    for name in ("Avg", "Count", "Exists", "F", "Max", "Min", "OuterRef", "Q", "Subquery", "Sum")
}


def row_annotations(target: FixTarget) -> dict[str, Any]:
    """``{name: expression}`` for each per-row call of ``target``; raises what evaluating
    an expression raises (the proof then says the fix raised)."""
    found = {}
    for call in target.row_calls:
        module = sys.modules.get(call.module)
        names = {**vars(module), **_EXPRESSIONS, "Coalesce": Coalesce} if module else None
        if names is None:
            raise LookupError(f"module {call.module} is not imported")
        found[call.name] = eval(call.expression, names)  # the project's own chain, re-spelt
    return found


_MISSING = object()


@contextmanager
def stood_in(target: FixTarget) -> Iterator[None]:
    """While inside, each per-row call of ``target`` reads its row's annotation."""
    if not target.row_calls:
        yield
        return
    calls = {(call.file, call.line): call for call in target.row_calls}
    saved = {name: QuerySet.__dict__[name] for name in ("count", "exists", "aggregate")}

    def answered(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        frame: FrameType | None = sys._getframe(2)
        finder = call_site_finder()
        while frame is not None and finder.is_internal(frame.f_code):
            frame = frame.f_back
        if frame is None:
            return _MISSING
        call = calls.get((relative_path(frame.f_code.co_filename), frame.f_lineno))
        if call is None or call.kind != kind:
            return _MISSING
        rows = [
            value
            for value in list(frame.f_locals.values())
            if isinstance(value, Model) and call.name in value.__dict__
        ]
        if len(rows) != 1:
            return _MISSING
        return _as_returned(call, rows[0].__dict__[call.name], args, kwargs)

    def count(queryset: Any) -> Any:
        value = answered("count", (), {})
        return saved["count"](queryset) if value is _MISSING else value

    def exists(queryset: Any) -> Any:
        value = answered("exists", (), {})
        return saved["exists"](queryset) if value is _MISSING else value

    def aggregate(queryset: Any, *args: Any, **kwargs: Any) -> Any:
        value = answered("aggregate", args, kwargs)
        return saved["aggregate"](queryset, *args, **kwargs) if value is _MISSING else value

    QuerySet.count = count  # type: ignore[method-assign,assignment]
    QuerySet.exists = exists  # type: ignore[method-assign,assignment]
    QuerySet.aggregate = aggregate  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(QuerySet, name, method)


def _as_returned(call: RowCall, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What the call itself would have returned, given the row's annotation."""
    if call.kind == "count":
        return value or 0
    if call.kind == "exists":
        return bool(value)
    if kwargs:
        return {next(iter(kwargs)): value}
    return {args[0].default_alias: value}
