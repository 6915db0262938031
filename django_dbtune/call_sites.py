"""Call sites: the line of the project's code behind a query, a lazy load or a template.

Capture asks for every query it records, so the common path is one dictionary lookup per
frame. A frame belongs to the project unless it is Django's, django-dbtune's, asgiref's, a
module of ``DBTUNE["IGNORED_MODULES"]`` or installed code (:mod:`django_dbtune.project`).
Async views run their queries on asgiref's worker thread: the line is found in the coroutine
that awaited it.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from types import CodeType, FrameType, ModuleType
from typing import Any

import asgiref
import django
from asgiref.sync import SyncToAsync
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
# What a file is to find_trigger: the project's, internal, or a tool's own (disowned).
_PROJECT, _INTERNAL, _DISOWNED = 0, 1, 2


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
_TEMPLATE_RENDER: frozenset[int] = frozenset(
    id(cls.__dict__["render_annotated"].__code__)
    for cls in (template_base.Node, *template_base.Node.__subclasses__())
    if "render_annotated" in cls.__dict__
)


class CallSiteFinder:
    """Finds the first frame outside Django, django-dbtune, asgiref and the standard library."""

    def __init__(self, skipped: tuple[str, ...]) -> None:
        self._skipped = skipped
        # What each file is (_PROJECT, _INTERNAL or _DISOWNED), per disowned folders; keyed
        # by file name: a str caches its hash, a code object does not.
        self._kinds: dict[tuple[str, ...], dict[str, int]] = {(): {}}
        self._library_templates: dict[str, bool] = {}

    def is_internal(self, code: CodeType) -> bool:
        """Whether a frame running ``code`` belongs to Django, django-dbtune or the like."""
        filename = code.co_filename
        kinds = self._kinds[()]
        kind = kinds.get(filename)
        if kind is None:
            kind = kinds[filename] = self._kind(filename, ())
        return kind != _PROJECT

    def is_internal_file(self, path: str) -> bool:
        # Installed libraries (site-packages) are never the project's own code: a REST
        # framework serializer's line is not the one to change.
        return path.startswith(self._skipped) or is_installed_file(path)

    def find(self, frame: FrameType | None) -> Site:
        # This runs for every query: the cached lookup is inlined, and the slow path
        # (is_internal) only classifies a file the first time it is seen.
        kinds = self._kinds[()]
        while frame is not None:
            code = frame.f_code
            kind = kinds.get(code.co_filename)
            if kind is None:
                kind = _INTERNAL if self.is_internal(code) else _PROJECT
            if kind == _PROJECT:
                return code.co_filename, frame.f_lineno, code.co_name
            if code is _THREAD_HANDLER:
                # A sync_to_async worker: the frames above belong to whoever lent the
                # thread, not to the code that asked for this query.
                return self._find_awaiting(frame)
            frame = frame.f_back
        return UNKNOWN

    def find_trigger(self, frame: FrameType | None, disowned: tuple[str, ...] = ()) -> Site | None:
        """Like ``find``, but a template's line when Django's template engine comes first.

        A lazy load in ``{{ book.author.name }}`` runs inside the template engine; the
        line worth showing is the template's, not the view's ``render()`` call. None when
        code under a ``disowned`` folder is on the stack, before or further out than the
        project's line (a tool's own rendering: django-debug-toolbar formats the context
        with ``repr()``, which reaches the project's ``__str__``).
        """
        kinds = self._kinds.get(disowned)
        if kinds is None:
            kinds = self._kinds[disowned] = {}
        while frame is not None:
            code = frame.f_code
            filename = code.co_filename
            kind = kinds.get(filename)
            if kind is None:
                kind = kinds[filename] = self._kind(filename, disowned)
            if kind == _PROJECT:
                if disowned and self._tool_further_out(frame.f_back, kinds, disowned):
                    return None
                return filename, frame.f_lineno, code.co_name
            if kind == _DISOWNED and code.co_name not in _PASS_THROUGH:
                return None
            if id(code) in _TEMPLATE_RENDER:
                node = frame.f_locals.get("self")
                token = getattr(node, "token", None)
                origin = getattr(node, "origin", None)
                if token is not None and origin is not None:
                    name = str(origin.name)
                    library = self._library_templates.get(name)
                    if library is None:
                        library = self._library_templates[name] = self.is_internal_file(name)
                    if not library:
                        if disowned and self._tool_further_out(frame.f_back, kinds, disowned):
                            return None
                        return name, token.lineno, "template"
            elif code is _THREAD_HANDLER:
                return self._find_awaiting(frame)
            frame = frame.f_back
        return UNKNOWN

    def _tool_further_out(
        self, frame: FrameType | None, kinds: dict[str, int], disowned: tuple[str, ...]
    ) -> bool:
        """Whether a ``disowned`` tool's own code (not a function that only hands the request
        on) called, further out, the frame the project's line was found in."""
        while frame is not None:
            code = frame.f_code
            kind = kinds.get(code.co_filename)
            if kind is None:
                kind = kinds[code.co_filename] = self._kind(code.co_filename, disowned)
            if kind == _DISOWNED and code.co_name not in _PASS_THROUGH:
                return True
            if code is _THREAD_HANDLER:
                return False  # a worker thread: the frames above are whoever lent it
            frame = frame.f_back
        return False

    def _kind(self, filename: str, disowned: tuple[str, ...]) -> int:
        if disowned and filename.startswith(disowned):
            return _DISOWNED
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
    return CallSiteFinder(_ALWAYS_SKIPPED + _module_dirs(ignored_modules))
