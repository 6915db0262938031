"""Middleware: capture each request's queries, and report its N+1 queries."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponseBase

from django_dbtune import workload
from django_dbtune.capture import capture_queries
from django_dbtune.conf import conf
from django_dbtune.errors import NPlusOneError

if TYPE_CHECKING:
    from django_dbtune.nplusone import Report

REQUEST_ATTRIBUTE = "dbtune_queries"
NPLUSONE_ATTRIBUTE = "dbtune_nplusone"

logger = logging.getLogger("django_dbtune.nplusone")
production_logger = logging.getLogger("django_dbtune.production")

SAFE_METHODS = ("GET", "HEAD")


def prove_request(
    request: HttpRequest, report: Report, call: Callable[[], HttpResponseBase]
) -> None:
    """Prove the report's fixes by running the request again (``call``), once per fix per
    process; an unsafe request is never run again, its findings are marked unproven."""
    from django_dbtune.nplusone.proof import answer_of, not_rerun, rerun_once

    found = report.findings
    if request.method not in SAFE_METHODS:
        reason = f"a {request.method} request is never run again"
        report.settle([not_rerun(finding, reason) for finding in found])
        return
    aliases = {record.alias for record in report.queries.records}
    report.settle(rerun_once(found, lambda: answer_of(call()), aliases))


class _Middleware:
    """Sync and async alike: Django picks ``__call__`` or, for an async chain, ``__acall__``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)  # type: ignore[type-var]


class CaptureMiddleware(_Middleware):
    """Records the queries of each request as ``request.dbtune_queries`` (a ``QueryLog``).

    Works under WSGI and ASGI. Place it first in MIDDLEWARE so that it sees the queries
    of every other middleware too. Queries run while a streaming response is being
    consumed happen after the middleware returns and are not recorded. With
    ``DBTUNE["WORKLOAD_FILE"]`` set, each request's queries also go to that workload file.
    """

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        if not conf.middleware_active:
            response: HttpResponseBase = self.get_response(request)
            return response
        recorder = workload.process_recorder()
        watching = recorder.watching() if recorder is not None else nullcontext()
        with capture_queries() as log, watching:
            setattr(request, REQUEST_ATTRIBUTE, log)
            response = self.get_response(request)
        if recorder is not None:
            workload.add_request(recorder, log)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if not conf.middleware_active:
            response: HttpResponseBase = await self.get_response(request)
            return response
        recorder = workload.process_recorder()
        async with capture_queries() as log:
            setattr(request, REQUEST_ATTRIBUTE, log)
            response = await self.get_response(request)
        if recorder is not None:  # under ASGI: shapes and times, not the ORM's fields
            workload.add_request(recorder, log)
        return response


class NPlusOneMiddleware(_Middleware):
    """Reports each request's N+1 queries and unused eager loads.

    Each finding is logged as a warning on the ``django_dbtune.nplusone`` logger, and the
    request's report is kept as ``request.dbtune_nplusone`` (for the toolbar panel; once the
    request is done it keeps the findings, not the queries). With
    ``DBTUNE["NPLUSONE_RAISE"] = True`` the request fails with ``NPlusOneError`` instead.
    Meant for development: put it near the top of MIDDLEWARE.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        # Imported here, not per request (an import statement costs a call every time),
        # and not at the top: CaptureMiddleware alone never loads the detector.
        from django_dbtune.nplusone import detect, patches

        self._detect = detect
        self._patches = patches

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        if not conf.middleware_active:
            response: HttpResponseBase = self.get_response(request)
            return response
        self._patches.keep(self)
        detector = self._detect(url=request.path)
        try:
            with detector as report:
                setattr(request, NPLUSONE_ATTRIBUTE, report)
                response = self.get_response(request)
            if not detector.handed_on:  # else the detection around it reports
                self._report(request, report, lambda: self.get_response(request))
        finally:
            detector.release()
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if not conf.middleware_active:
            response: HttpResponseBase = await self.get_response(request)
            return response
        self._patches.keep(self)
        detector = self._detect(url=request.path)
        try:
            async with detector as report:
                setattr(request, NPLUSONE_ATTRIBUTE, report)
                response = await self.get_response(request)
            if not detector.handed_on:
                self._report(request, report)
        finally:
            detector.release()
        return response

    def _report(
        self,
        request: HttpRequest,
        report: Report,
        again: Callable[[], HttpResponseBase] | None = None,
    ) -> None:
        """Prove the findings (when ``NPLUSONE_PROVE`` asks and ``again`` can run the request
        again), then log them or raise. A failure of the detector's own is logged, once per
        kind, and the response goes out as it is."""
        try:
            if again is not None and conf.NPLUSONE_PROVE and report.findings:
                prove_request(request, report, again)
            found = report.findings
        except Exception as error:  # the page is done: whatever failed here is the detector's
            from django_dbtune.nplusone.failures import log_once

            log_once(error, f"left {request.method} {request.path} unreported")
            return
        if found and conf.NPLUSONE_RAISE:
            raise NPlusOneError(f"{request.method} {request.path}: {report.message()}")
        for finding in found:
            logger.warning("%s %s: %s", request.method, request.path, finding.message)


class ProductionMiddleware(_Middleware):
    """Production mode (``DBTUNE["PRODUCTION"]``, off by default): on a sample of the
    requests, the N+1 detector and the query capture run, and what they find (N+1 queries,
    unused eager loads, repeated statements, slow queries) is logged as one JSON object per
    finding on the ``django_dbtune.production`` logger and written, in batches, to the
    database table every process shares (``manage.py dbtune_findings`` lists it). Nothing of
    its own ever fails a request: a failure is logged once and the request goes on. Put it
    near the top of MIDDLEWARE; it works under WSGI and ASGI."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        from django_dbtune.production.sampled import route_of
        from django_dbtune.production.sampler import sampler

        self._sampler = sampler()
        self._route_of = route_of

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        answer: list[HttpResponseBase] = []  # (the route names the template a CMS rendered)

        def route() -> str:
            return self._route_of(request, answer[0] if answer else None)

        with self._sampler.watching(route, request.path):
            answer.append(self.get_response(request))
        return answer[0]

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        answer: list[HttpResponseBase] = []

        def route() -> str:
            return self._route_of(request, answer[0] if answer else None)

        async with self._sampler.awatching(route, request.path):
            answer.append(await self.get_response(request))
        return answer[0]


@receiver(setting_changed)
def _release_patches(*, setting: str, **kwargs: Any) -> None:
    """The detector's patches, kept between requests by ``NPlusOneMiddleware``, come out
    when its settings or the middleware list change (a middleware still in use takes them
    again on its next request)."""
    patches = sys.modules.get("django_dbtune.nplusone.patches")
    if patches is not None and setting in ("DBTUNE", "MIDDLEWARE"):
        patches.release_kept()
