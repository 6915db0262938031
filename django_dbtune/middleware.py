"""Middleware: capture each request's queries for the features that read them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from django_dbtune.capture import capture_queries
from django_dbtune.conf import conf

REQUEST_ATTRIBUTE = "dbtune_queries"


class CaptureMiddleware:
    """Records the queries of each request as ``request.dbtune_queries`` (a ``QueryLog``).

    Works under WSGI and ASGI. Place it first in MIDDLEWARE so that it sees the queries
    of every other middleware too. Queries run while a streaming response is being
    consumed happen after the middleware returns and are not recorded.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        if not conf.ENABLED:
            response: HttpResponseBase = self.get_response(request)
            return response
        with capture_queries() as log:
            setattr(request, REQUEST_ATTRIBUTE, log)
            response = self.get_response(request)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if not conf.ENABLED:
            response: HttpResponseBase = await self.get_response(request)
            return response
        async with capture_queries() as log:
            setattr(request, REQUEST_ATTRIBUTE, log)
            response = await self.get_response(request)
        return response
