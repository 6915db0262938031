"""What one sampled request found, as records that hold no data of the site's users.

From the N+1 detector's report: each N+1 and unused eager load (its relation, the line, the
fix); from the request's queries: a statement run ``REPEATED_QUERIES`` times with the same
values, and each query over ``SLOW_QUERY_MS`` with the accesses of its plan (plain
``EXPLAIN``, never ``ANALYZE``). A query is named by its shape (every literal a ``?``); the
request by its route (the URL pattern, never the path, which may hold a user's name).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.http import HttpRequest, HttpResponseBase

from django_dbtune.production.store import Record
from django_dbtune.production_options import Production

if TYPE_CHECKING:
    from django_dbtune.capture import QueryRecord
    from django_dbtune.nplusone import Report

SHAPE_CHARS = 300
"""How much of a query's shape a record keeps."""


CATCH_ALL = re.compile(r"<path:|(?<!\\)\.[*+]|/\)[*+]|\[(?!\^)[^\]]*/[^\]]*\][*+]")
"""What in a URL pattern matches paths of any depth (a CMS's pages, all on one pattern)."""


def route_of(request: HttpRequest, response: HttpResponseBase | None = None) -> str:
    """The request's URL pattern; on a pattern that matches paths of any depth, with the
    template the response rendered (a CMS's pages differ by that: the path is never kept)."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None) if match is not None else None
    if route is None:
        return f"{request.method} (no route)"
    if CATCH_ALL.search(route) and (template := _rendered(response, match)):
        return f"{request.method} /{route} [{template}]"
    return f"{request.method} /{route}"


def _rendered(response: HttpResponseBase | None, match: Any) -> str | None:
    """The name of the template a ``TemplateResponse`` rendered (the first of its candidates
    that exists); None when it names a part of the path, which may be a user's."""
    names = getattr(response, "template_name", None)
    resolve = getattr(response, "resolve_template", None)
    if names is None or resolve is None:  # not a TemplateResponse
        return None
    try:
        origin = getattr(resolve(names), "origin", None)
    except Exception:  # a name for a finding, never a reason to lose it
        return None
    name = getattr(origin, "template_name", None)
    if not isinstance(name, str):
        return None
    values = (*match.args, *match.kwargs.values())
    parts = [part for value in values for part in str(value).split("/") if part]
    return None if any(part in name for part in parts) else name


def records_of(route: str, report: Report, settings: Production) -> list[Record]:
    """What ``report`` found in the unit of work named ``route``."""
    findings = report.findings
    found = [
        Record(
            kind=finding.kind,
            route=route,
            message=finding.headline,
            fix=finding.fix,
            call_site=finding.call_site or "",
            queryset_site=finding.queryset_site or "",
            relations=finding.relations,
            cost=float(finding.count),
        )
        for finding in findings
    ]
    queries = list(report.queries)
    same: Counter[tuple[str, str, str]] = Counter(
        (query.alias, query.sql, repr(query.params)) for query in queries if not query.many
    )
    # A statement repeated from one line in a loop is the N+1 finding of that line already,
    # and an N+1's own per-row loads are that N+1, from whatever code they came.
    finding_sites = {finding.call_site for finding in findings if finding.call_site}
    loads = {index for finding in findings for index in finding.load_queries}
    reported: set[tuple[str, str]] = set()
    for index, query in enumerate(queries):
        times = same[(query.alias, query.sql, repr(query.params))]
        if (
            times >= settings.REPEATED_QUERIES
            and index not in loads
            and (query.alias, query.sql) not in reported
            and query.call_site not in finding_sites
        ):
            reported.add((query.alias, query.sql))
            found.append(
                Record(
                    kind="repeated_query",
                    route=route,
                    message="The same statement ran several times with the same values: "
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
                    message=f"A query over SLOW_QUERY_MS: {_shape(query)}",
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
