"""django-debug-toolbar panels: N+1, Indexes and Query cache, per request.

    DEBUG_TOOLBAR_PANELS = [
        *debug_toolbar.settings.PANELS_DEFAULTS,
        "django_dbtune.toolbar.NPlusOnePanel",
        "django_dbtune.toolbar.IndexesPanel",
        "django_dbtune.toolbar.QueryCachePanel",
    ]

Each panel keeps plain JSON data in the toolbar's store (so the history panel and the
database or cache stores show it), computes its title and subtitle from that data, works
under ASGI, and ships its styles inside its own content (the toolbar renders in a shadow
DOM). They read what the rest of django-dbtune records: the N+1 detector's report (reused
from ``NPlusOneMiddleware`` when it runs), the request's captured queries (reused from
``CaptureMiddleware``), and the query cache's events. When the toolbar is off, nothing here
runs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from debug_toolbar.panels import Panel
from django.apps import apps
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponseBase

from django_dbtune.advisor.candidates import candidates_for
from django_dbtune.advisor.proof import usage_from
from django_dbtune.advisor.schema_rules import proposed_index
from django_dbtune.advisor.statements import use_of
from django_dbtune.cache import events as cache_events
from django_dbtune.capture import QueryLog, capture_queries, paused
from django_dbtune.middleware import NPLUSONE_ATTRIBUTE
from django_dbtune.schema import field_columns, model_schemas
from django_dbtune.testing import QueryPlan

EXPLAIN_BUDGET = 0.5
"""Seconds the Indexes panel may spend on EXPLAIN per request (a page of 500 queries stays
usable); what is left over is counted, not planned."""
MAX_SHAPES = 30


class _DbtunePanel(Panel):
    is_async = True

    def process_request(self, request: HttpRequest) -> Any:
        # As the toolbar itself decides: by the request. The next step of the chain may be
        # another panel's plain process_request that returns a coroutine.
        if isinstance(request, ASGIRequest):
            return self._aprocess(request)
        return self._process(request)

    def _process(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = super().process_request(request)
        return response

    async def _aprocess(self, request: HttpRequest) -> HttpResponseBase:
        response: Awaitable[HttpResponseBase] = super().process_request(request)
        return await response


# --- N+1 --------------------------------------------------------------------------------------


class NPlusOnePanel(_DbtunePanel):
    """This request's N+1 queries and unused eager loads, each with its fix."""

    title = "N+1 queries"
    template = "django_dbtune/toolbar/nplusone.html"

    def _process(self, request: HttpRequest) -> HttpResponseBase:
        if getattr(request, NPLUSONE_ATTRIBUTE, None) is not None or _detecting():
            # A detection already surrounds this request (NPlusOneMiddleware before the
            # toolbar, dbtune_nplusone, the pytest plugin): a nested one would take its events.
            self._outer = True
            return super()._process(request)
        from django_dbtune.nplusone import detect

        with detect(url=request.path, baseline=False) as report:
            response = super()._process(request)
        self._report = report
        return response

    async def _aprocess(self, request: HttpRequest) -> HttpResponseBase:
        if _detecting():
            self._outer = True
            return await super()._aprocess(request)
        from django_dbtune.nplusone import detect

        async with detect(url=request.path, baseline=False) as report:
            response = await super()._aprocess(request)
        self._report = report
        return response

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        report = getattr(request, NPLUSONE_ATTRIBUTE, None) or getattr(self, "_report", None)
        findings = list(report.findings) if report is not None else []
        rows = []
        for finding in findings:
            row = finding.as_dict()
            row["headline"] = finding.message.splitlines()[0]
            rows.append(row)
        self.record_stats(
            {
                "findings": rows,
                "elsewhere": report is None and getattr(self, "_outer", False),
                "n_plus_one": sum(1 for f in findings if f.kind == "n_plus_one"),
                "unused": sum(1 for f in findings if f.kind != "n_plus_one"),
                "extra_queries": sum(f.count for f in findings),
            }
        )

    @property
    def nav_subtitle(self) -> str:
        stats = self.get_stats()
        if not stats:
            return ""
        parts = [f"{stats['n_plus_one']} N+1"]
        if stats["unused"]:
            parts.append(f"{stats['unused']} unused eager load{'s' * (stats['unused'] != 1)}")
        return ", ".join(parts)


def _detecting() -> bool:
    from django_dbtune.nplusone.state import current

    return current.get() is not None


# --- Indexes ------------------------------------------------------------------------------


class IndexesPanel(_DbtunePanel):
    """This request's reads whose WHERE/ORDER BY columns no index leads with, with the index
    to add and the plan. EXPLAINs run after the response, within a time budget."""

    title = "Indexes"
    template = "django_dbtune/toolbar/indexes.html"

    def _process(self, request: HttpRequest) -> HttpResponseBase:
        # Nested captures share one recorder: this costs nothing more under CaptureMiddleware.
        with capture_queries() as log:
            response = super()._process(request)
        self._log = log
        return response

    async def _aprocess(self, request: HttpRequest) -> HttpResponseBase:
        async with capture_queries() as log:
            response = await super()._aprocess(request)
        self._log = log
        return response

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        log: QueryLog | None = getattr(self, "_log", None)
        # The panel's own queries (EXPLAIN, reading the schema) are not the request's.
        with paused():
            self.record_stats(unindexed_reads(log) if log is not None else _empty())

    @property
    def nav_subtitle(self) -> str:
        stats = self.get_stats()
        if not stats:
            return ""
        count = len(stats["queries"])
        return f"{count} unindexed read{'s' * (count != 1)}" if count else "all reads indexed"


def _empty() -> dict[str, Any]:
    return {"queries": [], "checked": 0, "left_out": 0, "budget_ms": EXPLAIN_BUDGET * 1000}


def unindexed_reads(log: QueryLog) -> dict[str, Any]:
    """The reads of ``log`` whose filter or sort columns no index leads with (plain data)."""
    stats = _empty()
    tables = {model._meta.db_table: model for model in apps.get_models()}
    shapes: dict[tuple[str, str], list[Any]] = {}
    for record in log:
        if record.kind == "read" and record.error is None:
            shapes.setdefault((record.alias, record.sql), []).append(record)
    deadline = time.perf_counter() + EXPLAIN_BUDGET
    schemas: dict[tuple[str, str], Any] = {}
    for number, ((alias, sql), records) in enumerate(shapes.items()):
        if time.perf_counter() > deadline or len(stats["queries"]) >= MAX_SHAPES:
            stats["left_out"] = len(shapes) - number
            break
        connection = connections[alias]
        found = use_of(sql, connection.vendor, tables)
        if found is None:
            continue
        model, use = found
        stats["checked"] += 1
        key = (alias, model._meta.label)
        if key not in schemas:
            labels = [model._meta.app_label]
            schemas[key] = next(
                (s for s in model_schemas(labels, alias) if s.model is model), None
            )
        schema = schemas[key]
        if schema is None:
            continue
        usage = usage_from(model, use, records[0].call_site or "(unknown)", sql)
        missing = [
            c
            for c in candidates_for(usage)
            if not c.trigram and not schema.serves(field_columns(model, c.names), prefix=c.pattern)
        ]
        if not missing:
            continue
        candidate = max(missing, key=lambda c: len(c.fields))
        try:
            plan = QueryPlan.explain(connection, sql, records[0].params, False).text
        except Exception as error:  # the plan is a hint, never an error page
            plan = f"(EXPLAIN failed: {type(error).__name__})"
        stats["queries"].append(
            {
                "model": model._meta.label,
                "table": model._meta.db_table,
                "sql": sql,
                "count": len(records),
                "ms": round(sum(r.duration for r in records) * 1000, 2),
                "call_sites": sorted({r.call_site or "(unknown)" for r in records}),
                "fields": list(candidate.fields),
                "index": proposed_index(model, list(candidate.fields)).as_code(),
                "plan": plan,
            }
        )
    return stats


# --- Query cache ------------------------------------------------------------------------------


class QueryCachePanel(_DbtunePanel):
    """What the query cache did in this request: hits, misses, stores, invalidations."""

    title = "Query cache"
    template = "django_dbtune/toolbar/query_cache.html"

    def _process(self, request: HttpRequest) -> HttpResponseBase:
        with cache_events.recording() as recorded:
            response = super()._process(request)
        self._events = recorded
        return response

    async def _aprocess(self, request: HttpRequest) -> HttpResponseBase:
        with cache_events.recording() as recorded:
            response = await super()._aprocess(request)
        self._events = recorded
        return response

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        recorded = getattr(self, "_events", None) or cache_events.CacheEvents()
        stats = recorded.as_dict()
        stats["ms_saved"] = round(stats.pop("seconds_saved") * 1000, 2)
        self.record_stats(stats)

    @property
    def nav_subtitle(self) -> str:
        stats = self.get_stats()
        if not stats:
            return ""
        hits, misses = stats["hits"], stats["misses"]
        return f"{hits} hit{'s' * (hits != 1)}, {misses} miss{'es' * (misses != 1)}"
