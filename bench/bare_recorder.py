"""The floor for any N+1 detector: a middleware with a bare ``connection.execute_wrapper``
that records each query's SQL, time and call site (the innermost frame outside Django and
installed packages), and nothing else."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import django
from django.db import connections
from django.http import HttpRequest, HttpResponseBase

_SKIPPED = (os.path.dirname(django.__file__), "site-packages", os.path.dirname(__file__))
_kinds: dict[str, bool] = {}


def call_site(frame: Any) -> tuple[str, int] | None:
    while frame is not None:
        filename = frame.f_code.co_filename
        skipped = _kinds.get(filename)
        if skipped is None:
            skipped = _kinds[filename] = any(part in filename for part in _SKIPPED)
        if not skipped:
            return filename, frame.f_lineno
        frame = frame.f_back
    return None


class BareRecorder:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.last: list[Any] = []
        """The last request's records."""

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        records: list[tuple[str, Any, float, tuple[str, int] | None]] = []

        def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            site = call_site(sys._getframe(1))
            start = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                records.append((sql, params, time.perf_counter() - start, site))

        with ExitStack() as stack:
            for connection in connections.all():
                stack.enter_context(connection.execute_wrapper(record))
            response = self.get_response(request)
        self.last = records
        return response
