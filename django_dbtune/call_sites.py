"""Call sites: the line of the project's code behind a query, a lazy load or a template.

One rule, :meth:`CallSiteFinder.find_trigger`, for capture and the N+1 detector: the
innermost frame of the project's code or the line of a project template being rendered,
looked for no further out than Django's request handler; none for what
django-debug-toolbar's own code runs. Capture asks for every query it records, so the
common path is one dictionary lookup per frame. A frame belongs to the project unless it is
Django's, django-dbtune's, asgiref's, a module of ``DBTUNE["IGNORED_MODULES"]`` or installed
code (:mod:`django_dbtune.project`). Async views run their queries on asgiref's worker
thread: the line is found in the coroutine that awaited it.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import sys
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from types import CodeType, FrameType, ModuleType
from typing import Any

import asgiref
import django
from asgiref.sync import SyncToAsync
from django.core.handlers.base import BaseHandler
from django.template import base as template_base

import django_dbtune
from django_dbtune.conf import conf
from django_dbtune.project import is_installed_file

__all__ = ["UNKNOWN", "CallSiteFinder", "Site", "call_site_finder", "finder_for", "relative_path"]

Site = tuple[str | None, int | None, str | None]
"""(file name, line, function); all None when no line of the project was found."""
UNKNOWN: Site = (None, None, None)
_PASS_THROUGH = frozenset({"__call__", "__acall__", "process_request"})
"""A disowned tool's functions that only hand the request on (django-debug-toolbar's
middleware and panels): a load under them is the request's own, not the tool's."""
_TOOLBAR_CURSOR = os.path.join("panels", "sql", "tracking.py")
"""django-debug-toolbar's cursor wrapper, on the stack of every query its SQL panel records."""
# What a file is to the walk: the project's, internal, a tool's own (disowned), or internal
# with code the walk must recognise (template nodes, the request handler, asgiref's thread).
_PROJECT, _INTERNAL, _DISOWNED, _MARKED = 0, 1, 2, 3


def relative_path(filename: str) -> str:
    return _relative_path(filename, conf.PROJECT_ROOT)


@lru_cache(maxsize=4096)
def _relative_path(filename: str, root: Path) -> str:
    try:
        return Path(filename).relative_to(root).as_posix()
    except ValueError:
        return filename


def _package_dir(module: ModuleType) -> str:
    return os.path.dirname(os.path.abspath(str(module.__file__))) + os.sep


def _module_dirs(names: tuple[str, ...]) -> tuple[str, ...]:
    dirs: list[str] = []
    for name in names:
        try:
            spec = find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(os.path.abspath(path) + os.sep for path in spec.submodule_search_locations)
        elif spec is not None and spec.origin:
            dirs.append(os.path.abspath(spec.origin))
    return tuple(dirs)


_ALWAYS_SKIPPED = (_package_dir(django), _package_dir(django_dbtune), _package_dir(asgiref))
# The two ends of a sync_to_async call: the worker thread's entry and the awaited coroutine.
_THREAD_HANDLER: CodeType = SyncToAsync.thread_handler.__code__
_SYNC_TO_ASYNC_CALL: CodeType = SyncToAsync.__call__.__code__

# Node.render_annotated of every node class that defines one: the frame that knows the
# template file and line being rendered.
# Kept as ids: hashing a code object is not cached by Python and costs about a microsecond,
# which a stack walk would pay on every frame. The classes keep these code objects alive.
_TEMPLATE_RENDER_CODES: tuple[CodeType, ...] = tuple(
    cls.__dict__["render_annotated"].__code__
    for cls in (template_base.Node, *template_base.Node.__subclasses__())
    if "render_annotated" in cls.__dict__
)
_TEMPLATE_RENDER: frozenset[int] = frozenset(map(id, _TEMPLATE_RENDER_CODES))
# Django's request handler: frames further out are the server, the test client or
# manage.py, never the line behind a query the request ran.
_REQUEST: frozenset[int] = frozenset(
    id(vars(BaseHandler)[name].__code__)
    for name in ("get_response", "get_response_async", "_get_response", "_get_response_async")
)
# What a marked file's code is to the walk, in one lookup per frame: a template node's
# render_annotated, the request handler, or asgiref's worker thread.
_RENDER, _HANDLER, _WORKER = 1, 2, 3
_ROLES: dict[int, int] = {
    **dict.fromkeys(_TEMPLATE_RENDER, _RENDER),
    **dict.fromkeys(_REQUEST, _HANDLER),
    id(_THREAD_HANDLER): _WORKER,
}
_MARKED_FILES = frozenset(
    {
        _THREAD_HANDLER.co_filename,
        BaseHandler.get_response.__code__.co_filename,
        *(code.co_filename for code in _TEMPLATE_RENDER_CODES),
    }
)


@lru_cache(maxsize=1)
def _toolbar_dirs() -> tuple[str, ...]:
    """django-debug-toolbar's folder: its own code calling the project's (a ``repr()`` of
    the template context that reaches a ``__str__``) is the toolbar's doing."""
    try:
        spec = find_spec("debug_toolbar")
    except (ImportError, ValueError):
        return ()
    if spec is None or not spec.submodule_search_locations:
        return ()
    return tuple(os.path.abspath(path) + os.sep for path in spec.submodule_search_locations)


_module_of_frame = getattr(sys, "_getframemodulename", None)
"""CPython 3.12+: the module of the function running ``depth`` frames up, found without
building the frame objects a walk builds (None before 3.12)."""
_ROUTES = 4
"""Routes from a lazy load up to a template node that a finder remembers."""
_WAIT = 64
"""Lazy loads at a template line a finder lets pass after one whose route it could not
remember, before it looks at a route again (each look costs a second walk)."""


class CallSiteFinder:
    """Finds the line behind a query or a lazy load: the innermost frame of the project's
    code, or of one of its templates, within the request that ran it."""

    def __init__(self, skipped: tuple[str, ...], disowned: tuple[str, ...] = ()) -> None:
        self._skipped = skipped
        self._disowned = disowned
        # What each file is (_PROJECT, _INTERNAL, _DISOWNED or _MARKED); keyed by file
        # name: a str caches its hash, a code object does not.
        self._kinds: dict[str, int] = {}
        self._library_templates: dict[str, bool] = {}
        self._routes: tuple[tuple[str, ...], ...] = ()
        """The modules of the frames between a lazy load and the template node that read
        it, for the routes seen (see :meth:`find_trigger_above`); replaced, never changed
        in place, so that threads read it without a lock."""
        self._wait = 0
        self._internal_modules: dict[str, bool] = {}

    def find_trigger_above(self, depth: int) -> Site | None:
        """:meth:`find_trigger` for the frame ``depth`` levels up from the caller (1: the
        caller's caller), for a lazy load, which asks once per row.

        A lazy load in ``{{ book.author.name }}`` reaches the template node through five of
        Django's frames, and a walk builds a frame object for each, on every row. A route
        seen before is recognised without them: the module of each frame on the way
        (CPython 3.12+ reads it without building the frame), then the one frame at its end,
        which must be a template node rendering a project template. Only routes through
        Django's and installed code are remembered, so a project frame on the way (a model
        method the template calls) differs from every route and gets the walk, and its line.
        """
        start = depth + 1  # this function's own frame is 0
        if _module_of_frame is not None:
            for route in self._routes:
                at = start
                for module in route:
                    if _module_of_frame(at) != module:
                        break
                    at += 1
                else:
                    frame = sys._getframe(at)
                    if id(frame.f_code) in _TEMPLATE_RENDER:
                        site = self._template_site(frame)
                        if site is not None:
                            if self._disowned and self._tool_further_out(frame.f_back):
                                return None
                            return site
                    break
        site = self.find_trigger(sys._getframe(start))
        if _module_of_frame is not None and site is not None and site[2] == "template":
            if self._wait:
                self._wait -= 1
            else:
                learned = self._route(start + 1, site)
                if learned is None:
                    self._wait = _WAIT  # a route it cannot take: look again later, not per row
                elif learned not in self._routes:
                    self._routes = (learned, *self._routes[: _ROUTES - 1])
        return site

    def _route(self, start: int, site: Site) -> tuple[str, ...] | None:
        """The modules of the frames from the one ``start`` levels up from the caller to the
        template node that gave ``site``, when each is Django's or installed code and that
        node is the first on the way; None otherwise. Only looks at frame objects the walk
        built already."""
        modules: list[str] = []
        for at in range(start, start + 12):
            frame = sys._getframe(at)
            if id(frame.f_code) in _TEMPLATE_RENDER:
                return tuple(modules) if self._template_site(frame) == site else None
            module = _module_of_frame(at)  # type: ignore[misc]
            if (
                self._kinds.get(frame.f_code.co_filename) not in (_INTERNAL, _MARKED)
                or not isinstance(module, str)
                or not self._internal_module(module)
            ):
                return None
            modules.append(module)
        return None

    def _internal_module(self, name: str) -> bool:
        """Whether module ``name`` is Django's or installed code (a function can claim any
        module: a project function never passes for one of these unless it says so)."""
        known = self._internal_modules.get(name)
        if known is None:
            module = sys.modules.get(name)
            filename = getattr(module, "__file__", None)
            known = self._internal_modules[name] = isinstance(filename, str) and (
                self._kind(os.path.abspath(filename)) in (_INTERNAL, _MARKED)
            )
        return known

    def is_internal(self, code: CodeType) -> bool:
        """Whether a frame running ``code`` belongs to Django, django-dbtune or the like."""
        filename = code.co_filename
        kind = self._kinds.get(filename)
        if kind is None:
            kind = self._kinds[filename] = self._kind(filename)
        return kind != _PROJECT

    def is_internal_file(self, path: str) -> bool:
        # Installed libraries (site-packages) are never the project's own code: a REST
        # framework serializer's line is not the one to change.
        return path.startswith(self._skipped) or is_installed_file(path)

    def find(self, frame: FrameType | None) -> Site:
        """The line behind a query (capture asks for every one): as :meth:`find_trigger`,
        ``UNKNOWN`` for a tool's own."""
        site = self.find_trigger(frame)
        return UNKNOWN if site is None else site

    def find_trigger(self, frame: FrameType | None) -> Site | None:
        """The innermost frame of the project's code, or the template line when Django's
        template engine renders a project template first.

        A lazy load in ``{{ book.author.name }}``, or a library's template tag, runs inside
        the template engine; the line worth showing is the template's, not the view's
        ``render()`` call. The walk stops at Django's request handler: code further out
        (the server, the test client, ``manage.py``) is not why a request ran a query, so
        Django's own code all the way (an admin changelist) gives ``UNKNOWN``. None when
        django-debug-toolbar's own code (not a function that only hands the request on) is
        on the stack, before or further out than the project's line: django-debug-toolbar
        formats the context with ``repr()``, which reaches the project's ``__str__``.
        """
        # This runs for every query: the cached lookup is inlined, and only marked files
        # (templates, the handler, asgiref's thread) look at the code object.
        kinds = self._kinds
        while frame is not None:
            code = frame.f_code
            filename = code.co_filename
            kind = kinds.get(filename)
            if kind is None:
                kind = kinds[filename] = self._kind(filename)
            if kind == _INTERNAL:
                frame = frame.f_back
                continue
            if kind == _PROJECT:
                if self._disowned and self._tool_further_out(frame.f_back):
                    return None
                return filename, frame.f_lineno, code.co_name
            if kind == _DISOWNED:
                if code.co_name not in _PASS_THROUGH:
                    return None
            else:
                role = _ROLES.get(id(code))
                if role == _RENDER:
                    site = self._template_site(frame)
                    if site is not None:
                        if self._disowned and self._tool_further_out(frame.f_back):
                            return None
                        return site
                elif role == _HANDLER:
                    return UNKNOWN
                elif role == _WORKER:
                    return self._find_awaiting(frame)
            frame = frame.f_back
        return UNKNOWN

    def _template_site(self, frame: FrameType) -> Site | None:
        """The project template's line a ``render_annotated`` frame renders (None for a
        library's template)."""
        node = frame.f_locals.get("self")
        token = getattr(node, "token", None)
        origin = getattr(node, "origin", None)
        if token is None or origin is None:
            return None
        name = str(origin.name)
        library = self._library_templates.get(name)
        if library is None:
            library = self._library_templates[name] = self.is_internal_file(name)
        return None if library else (name, token.lineno, "template")

    def _tool_further_out(self, frame: FrameType | None) -> bool:
        """Whether a disowned tool's own code (not a function that only hands the request
        on) called, further out, the frame the project's line was found in. Looked for up
        to the request handler: the toolbar renders inside it, the server is outside."""
        kinds = self._kinds
        while frame is not None:
            code = frame.f_code
            kind = kinds.get(code.co_filename)
            if kind is None:
                kind = kinds[code.co_filename] = self._kind(code.co_filename)
            if kind == _DISOWNED and code.co_name not in _PASS_THROUGH:
                return True
            if kind == _MARKED and _ROLES.get(id(code)) in (_HANDLER, _WORKER):
                return False  # the server, or whoever lent a worker thread
            frame = frame.f_back
        return False

    def _kind(self, filename: str) -> int:
        if self._disowned and filename.startswith(self._disowned):
            # The SQL panel's cursor wrapper hands every query on: internal, not the tool's.
            return _INTERNAL if filename.endswith(_TOOLBAR_CURSOR) else _DISOWNED
        if filename in _MARKED_FILES:
            return _MARKED
        return _INTERNAL if self.is_internal_file(filename) else _PROJECT

    def _find_awaiting(self, handler: FrameType) -> Site:
        """The project line of the coroutine waiting for this sync_to_async worker thread.

        The worker's stack ends in asgiref; the code that awaited it lives in a suspended
        coroutine on the event loop. asgiref hands both sides the same ``task_context``
        list, which tells which waiting coroutine is ours.
        """
        marker = handler.f_locals.get("task_context")
        loop = handler.f_locals.get("loop")
        if marker is None or not isinstance(loop, asyncio.AbstractEventLoop):
            return UNKNOWN
        try:
            tasks = asyncio.all_tasks(loop)
        except RuntimeError:
            return UNKNOWN
        for task in tasks:
            site = UNKNOWN
            awaitable: Any = task.get_coro()
            while awaitable is not None:
                frame = getattr(awaitable, "cr_frame", None) or getattr(
                    awaitable, "ag_frame", None
                )
                if frame is None:
                    break
                if frame.f_code is _SYNC_TO_ASYNC_CALL:
                    if frame.f_locals.get("task_context") is marker:
                        return site
                    break
                if not self.is_internal(frame.f_code):
                    site = (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
                awaitable = _awaited_by(awaitable)
        return UNKNOWN


def _awaited_by(awaitable: Any) -> Any:
    """What a suspended coroutine or async generator is waiting for, if it is code."""
    awaited = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
    if (
        awaited is not None
        and not hasattr(awaited, "cr_frame")
        and not hasattr(awaited, "ag_frame")
    ):
        # ``async for`` awaits an asend object, which only the garbage collector's
        # referents link to its async generator.
        awaited = next((ref for ref in gc.get_referents(awaited) if inspect.isasyncgen(ref)), None)
    return awaited


def call_site_finder() -> CallSiteFinder:
    """The finder capture uses, for features that need a line of their own."""
    return finder_for(conf.IGNORED_MODULES)


@lru_cache(maxsize=8)
def finder_for(ignored_modules: tuple[str, ...]) -> CallSiteFinder:
    return CallSiteFinder(_ALWAYS_SKIPPED + _module_dirs(ignored_modules), _toolbar_dirs())
