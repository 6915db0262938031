"""What one sampled request found, as records that hold no data of the site's users.

From the N+1 detector's report: each N+1 and unused eager load (its relation, the line, the
fix); from the request's queries: a statement run ``REPEATED_QUERIES`` times with the same
values, and each query over ``SLOW_QUERY_MS`` with the accesses of its plan (plain
``EXPLAIN``, never ``ANALYZE``). A query is named by its shape (every literal a ``?``); the
request by its route (the URL pattern, never the path, which may hold a user's name).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.http import HttpRequest

from django_dbtune.production.store import Record
from django_dbtune.production_options import Production

if TYPE_CHECKING:
    from django_dbtune.capture import QueryRecord
    from django_dbtune.nplusone import Report

SHAPE_CHARS = 300
"""How much of a query's shape a record keeps."""


def route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None) if match is not None else None
    return f"{request.method} /{route}" if route is not None else f"{request.method} (no route)"


def records_of(route: str, report: Report, settings: Production) -> list[Record]:
    """What ``report`` found in the unit of work named ``route``."""
    found = [
        Record(
            kind=finding.kind,
            route=route,
            message=finding.message.splitlines()[0],
            fix=finding.fix,
            call_site=finding.call_site or "",
            cost=float(finding.count),
        )
        for finding in report.findings
    ]
    queries = list(report.queries)
    same: Counter[tuple[str, str, str]] = Counter(
        (query.alias, query.sql, repr(query.params)) for query in queries if not query.many
    )
    # A statement repeated from one line in a loop is the N+1 finding of that line already.
    reported = {("", finding.call_site or "") for finding in report.findings}
    for query in queries:
        times = same[(query.alias, query.sql, repr(query.params))]
        if (
            times >= settings.REPEATED_QUERIES
            and (query.alias, query.sql) not in reported
            and ("", query.call_site or "") not in reported
        ):
            reported.add((query.alias, query.sql))
            found.append(
                Record(
                    kind="repeated_query",
                    route=route,
                    message=f"The same statement ran {times} times with the same values: "
                    f"{_shape(query)}",
                    fix="Run it once and keep the result (a variable, cached_property, or "
                    "select_related/prefetch_related where a relation reads it).",
                    call_site=query.call_site or "",
                    cost=float(times - 1),
                )
            )
    for query in queries:
        ms = query.duration * 1000
        if ms >= settings.SLOW_QUERY_MS and query.kind == "read":
            found.append(
                Record(
                    kind="slow_query",
                    route=route,
                    message=f"A query took {ms:.0f} ms: {_shape(query)}",
                    fix="Record a workload or read pg_stat_statements/performance_schema, "
                    "then manage.py suggest_indexes proves an index for it.",
                    call_site=query.call_site or "",
                    plan=_plan(query),
                    cost=ms,
                )
            )
    return found


def _shape(query: QueryRecord) -> str:
    shape = query.shape
    return shape if len(shape) <= SHAPE_CHARS else shape[: SHAPE_CHARS - 1] + "…"


def _plan(query: QueryRecord) -> str:
    """The tables the plan reads and how (``Seq Scan on shop_book``, ``ref on shop_book using
    idx``): the plan's text would hold the query's values. Empty when it cannot be had."""
    from django_dbtune.advisor import planner

    connection = connections[query.alias]
    try:
        plan: Any = (
            planner.explain_generic(connection, query.sql)
            if connection.vendor == "postgresql"
            else planner.explain(connection, query.sql, query.params)
        )
    except Exception:  # a plan is a detail of the finding, never a reason to fail
        return ""
    read = "; ".join(
        f"{access.detail} using {access.index}" if access.index else access.detail
        for access in plan.accesses
    )
    return read or "no table read"
