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

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from debug_toolbar.panels import Panel
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase
from django.template.loader import render_to_string

from django_dbtune.advisor.request_reads import no_reads, unindexed_reads
from django_dbtune.cache import events as cache_events
from django_dbtune.capture import QueryLog, capture_queries, unrecorded
from django_dbtune.conf import conf
from django_dbtune.middleware import NPLUSONE_ATTRIBUTE, prove_request

if TYPE_CHECKING:  # the detector loads when a request needs it
    from django_dbtune.nplusone import Report


class _DbtunePanel(Panel):
    is_async = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.switched_off = False
        """DBTUNE["ENABLED"] was off for this request: the panel recorded nothing."""

    def process_request(self, request: HttpRequest) -> Any:
        if not conf.middleware_active:
            # The master switch (or a wrong setting, said once): nothing of ours runs.
            self.switched_off = True
            return super().process_request(request)
        # As the toolbar itself decides: by the request. The next step of the chain may be
        # another panel's plain process_request that returns a coroutine.
        if isinstance(request, ASGIRequest):
            return self._aprocess(request)
        return self._process(request)

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        if self.switched_off:
            self.record_stats({"off": True})
        else:
            self.record_stats(self.stats_of(request, response))

    def stats_of(self, request: HttpRequest, response: HttpResponseBase) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def content(self) -> str:
        stats = self.get_stats()
        if stats.get("off"):
            return render_to_string("django_dbtune/toolbar/off.html", stats)
        return str(super().content)

    @property
    def nav_subtitle(self) -> str:
        stats = self.get_stats()
        if not stats:
            return ""
        if stats.get("off"):
            return "off"
        return self.subtitle_of(stats)

    def subtitle_of(self, stats: dict[str, Any]) -> str:
        raise NotImplementedError

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._report: Report | None = None
        """The detection this panel ran around the request."""
        self._outer = False
        """Another detection surrounded the request: the findings are its own."""

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

    def stats_of(self, request: HttpRequest, response: HttpResponseBase) -> dict[str, Any]:
        report = getattr(request, NPLUSONE_ATTRIBUTE, None) or self._report
        if report is self._report and report is not None and report.findings:
            self._prove(request, report)
        findings = list(report.findings) if report is not None else []
        rows = []
        for finding in findings:
            row = finding.as_dict()
            row["headline"] = finding.message.splitlines()[0]
            row["proof_text"] = finding.proof.text if finding.proof is not None else None
            row["fix_label"] = _fix_label(finding)
            rows.append(row)
        return {
            "findings": rows,
            "elsewhere": report is None and self._outer,
            "n_plus_one": sum(1 for f in findings if f.kind == "n_plus_one"),
            "unused": sum(1 for f in findings if f.kind != "n_plus_one"),
            # An unused eager load costs its own query; it adds none per row.
            "extra_queries": sum(f.count for f in findings if f.kind == "n_plus_one"),
        }

    def subtitle_of(self, stats: dict[str, Any]) -> str:
        parts = [f"{stats['n_plus_one']} N+1"]
        if stats["unused"]:
            parts.append(f"{stats['unused']} unused eager load{'s' * (stats['unused'] != 1)}")
        return ", ".join(parts)

    def _prove(self, request: HttpRequest, report: Report) -> None:
        """Each fix proven by running the request again with it, once per fix per process.
        Run here, after the toolbar's instrumentation is off, through the handlers below
        the toolbar, so that no panel records the runs."""
        from django_dbtune.nplusone.proof import not_rerun

        if isinstance(request, ASGIRequest):
            reason = "not run again under ASGI"
            report.settle([not_rerun(finding, reason) for finding in report.findings])
            return
        downstream = self.toolbar.panels[-1].get_response
        prove_request(request, report, lambda: downstream(request))


def _fix_label(finding: Any) -> str:
    """A fix is called one only when running the page again with it proved it."""
    if finding.proof is None:
        return "Suggested fix (not tried)"
    return "Fix" if finding.proof.verdict == "proven" else "Suggested fix (unproven)"


def _detecting() -> bool:
    from django_dbtune.nplusone.state import current

    return current.get() is not None


# --- Indexes ------------------------------------------------------------------------------


class IndexesPanel(_DbtunePanel):
    """This request's reads whose WHERE/ORDER BY columns no index leads with, with the index
    to add and the plan. EXPLAINs run in generate_stats, after the response, within a time
    budget (``advisor.request_reads``)."""

    title = "Indexes"
    template = "django_dbtune/toolbar/indexes.html"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._log: QueryLog | None = None
        """The request's captured queries, planned in generate_stats."""

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

    def stats_of(self, request: HttpRequest, response: HttpResponseBase) -> dict[str, Any]:
        # The panel's own queries (EXPLAIN, reading the schema) are not the request's.
        with unrecorded():
            return unindexed_reads(self._log) if self._log is not None else no_reads()

    def subtitle_of(self, stats: dict[str, Any]) -> str:
        count = len(stats["queries"])
        return f"{count} unindexed read{'s' * (count != 1)}" if count else "all reads indexed"


# --- Query cache ------------------------------------------------------------------------------


class QueryCachePanel(_DbtunePanel):
    """What the query cache did in this request: hits, misses, stores, invalidations."""

    title = "Query cache"
    template = "django_dbtune/toolbar/query_cache.html"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events: cache_events.CacheEvents | None = None
        """What the query cache did during the request."""

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

    def stats_of(self, request: HttpRequest, response: HttpResponseBase) -> dict[str, Any]:
        recorded = self._events if self._events is not None else cache_events.CacheEvents()
        stats = recorded.as_dict()
        stats["ms_saved"] = round(stats.pop("seconds_saved") * 1000, 2)
        return stats

    def subtitle_of(self, stats: dict[str, Any]) -> str:
        hits, misses = stats["hits"], stats["misses"]
        return f"{hits} hit{'s' * (hits != 1)}, {misses} miss{'es' * (misses != 1)}"
