"""Where a queryset comes from: the project line that built it, or the project class
(a view, a ModelAdmin, a viewset) that Django built it for, or the instance whose
related manager it is. The fix is written there."""

from __future__ import annotations

import os
import sys
from functools import cache, lru_cache
from types import CodeType, FrameType
from typing import Any

from django.apps import apps
from django.db.models import Model
from django.db.models.manager import BaseManager
from django.db.models.query import QuerySet
from django.db.models.sql.query import Query

from django_dbtune.call_sites import CallSiteFinder, call_site_finder, finder_for
from django_dbtune.conf import conf
from django_dbtune.nplusone import django52
from django_dbtune.nplusone.failures import give_up
from django_dbtune.nplusone.fetch_mode import FETCH_MODES
from django_dbtune.nplusone.state import (
    BUILDER,
    LAZY,
    ORIGIN,
    OWNER,
    Detection,
    detection_now,
)
from django_dbtune.project import is_project_file

# Django's own, called by the replacement below (never the replacement itself).
_django_query_init = Query.__init__
_QUERYSET_INIT: CodeType = QuerySet.__init__.__code__
_MANAGER_GET_QUERYSET: CodeType = BaseManager.get_queryset.__code__


@cache
def _owner_codes() -> frozenset[int]:
    """Django functions that build a queryset for a project class: their ``self`` is it."""
    from django.views.generic.detail import SingleObjectMixin
    from django.views.generic.list import MultipleObjectMixin

    codes = {
        MultipleObjectMixin.get_queryset.__code__,
        SingleObjectMixin.get_queryset.__code__,
    }
    if apps.is_installed("django.contrib.admin"):
        from django.contrib.admin.options import BaseModelAdmin

        codes.add(BaseModelAdmin.get_queryset.__code__)
    return frozenset(map(id, codes))


def query_init(self: Query, model: Any, alias_cols: bool = True) -> None:
    """Replaces ``sql.Query.__init__``: a fresh queryset (not a clone, which copies its
    query) remembers where its chain of calls started, for the fix's location, or that a
    relation descriptor built it for a lazy load. One hook for every way a queryset is
    built: ``BaseManager.get_queryset``, and a manager whose ``get_queryset`` returns
    ``MyQuerySet(self.model, using=self._db)`` without ``super()``, as Django's
    documentation shows."""
    _django_query_init(self, model, alias_cols)
    detection = detection_now()
    if detection is None or detection.busy:
        return
    try:
        _note_fresh(self, detection, sys._getframe(1))
    except Exception as error:
        if not give_up(detection, error):
            raise


def _note_fresh(self: Query, detection: Detection, frame: FrameType | None) -> None:
    """:func:`query_init`'s own work: ``frame`` is the one that called ``Query()``."""
    fresh = False
    # Up through the constructors building it: QuerySet.__init__ and a subclass's (which may
    # build its own Query subclass, as django-cte does, or replace the query after super(),
    # as django-postgres-extra does), and a Query subclass's. A query no queryset
    # constructor builds is for something else (a subquery, an update).
    while frame is not None and frame.f_code.co_name == "__init__":
        owner = frame.f_code is _QUERYSET_INIT or frame.f_locals.get("self")
        if owner is True or isinstance(owner, QuerySet):
            fresh = True
        elif not isinstance(owner, Query):
            break  # a project class's own __init__ building a queryset: the line is here
        frame = frame.f_back
    if not fresh or frame is None:
        return
    manager: Any = None
    if frame.f_code.co_name == "get_queryset":
        manager = frame.f_locals.get("self")
        if frame.f_code is _MANAGER_GET_QUERYSET:
            frame = frame.f_back  # Django's own: the chain starts where it was called
    note_origin(
        self, manager if isinstance(manager, BaseManager) else None, frame, detection.finder
    )


def note_origin(
    query: Query,
    manager: BaseManager[Any] | None,
    frame: FrameType | None,
    finder: CallSiteFinder,
) -> None:
    """Mark a fresh queryset's query with where it comes from, looking at most five frames
    out from ``frame`` (so the lazy loads Django runs deep inside its own code cost next to
    nothing): the relation descriptor building a lazy load (Django 5.2), the Django function
    building it for a project class, or the project line; and the instance whose manager
    built it."""
    marks = query.__dict__
    owner = manager.__dict__.get("instance") if manager is not None else None
    if isinstance(owner, Model):
        # A related manager: run once per row, its queries are that instance's; run as a
        # list of its own (author.books.order_by(...) in a view), the fix goes where the
        # chain started, as for any manager: that line is looked for below too.
        marks[OWNER] = owner
    owners = _owner_codes()
    lazy_gets = () if FETCH_MODES else django52.descriptor_gets()
    for _ in range(5):
        if frame is None:
            break
        code = frame.f_code
        if id(code) in lazy_gets:
            # Django 5.2: a relation descriptor building its lazy load (6.1 announces those
            # through the fetch mode). The evaluation reads the instance from this frame.
            marks[LAZY] = frame
            break
        if id(code) in owners:
            owner = frame.f_locals.get("self")
            if owner is not None:
                marks[ORIGIN] = (None, type(owner))
            break
        if not finder.is_internal(code):
            if _is_manager_method(code, frame):
                frame = frame.f_back
                continue
            marks[ORIGIN] = ((code.co_filename, frame.f_lineno, code.co_name), None)
            break
        if BUILDER not in marks and code.co_varnames[:1] == ("self",):
            _note_builder(marks, frame)
        if code.co_name == "get_queryset" and OWNER not in marks:
            # A library's manager that builds another model's queryset for its instance:
            # django-taggit's tags manager returns Tag.objects.filter(...) for the tagged row.
            _note_owner(marks, frame.f_locals.get("self"))
        frame = frame.f_back


def _note_builder(marks: dict[str, Any], frame: FrameType) -> None:
    """An installed view's method building the queryset (Wagtail's
    ``IndexView.get_base_queryset``): a subclass overriding it is where a fix goes. Only a
    method named for querysets: one that builds a queryset for a context or a response
    (``get_context_data``, ``get``) returns something else."""
    from django.views import View

    if "queryset" not in frame.f_code.co_name:
        return
    # type(), not isinstance(): a lazy object (request.user) would run a query.
    cls = type(frame.f_locals.get("self"))
    if issubclass(cls, View) and is_library_class(cls):
        marks[BUILDER] = (cls, frame.f_code.co_name)


def _note_owner(marks: dict[str, Any], manager: Any) -> None:
    owner = manager.__dict__.get("instance") if isinstance(manager, BaseManager) else None
    if isinstance(owner, Model):
        marks[OWNER] = owner


_manager_codes: dict[tuple[str, int], bool] = {}


def _is_manager_method(code: CodeType, frame: FrameType) -> bool:
    """A project manager's own method (``get_queryset``, ``in_stock``): plumbing, not where
    the queryset is used."""
    key = (code.co_filename, code.co_firstlineno)
    known = _manager_codes.get(key)
    if known is None:
        known = _manager_codes[key] = isinstance(frame.f_locals.get("self"), BaseManager)
    return known


def owner_on_stack(
    frame: FrameType | None,
    library: bool = False,
    model: type | None = None,
    named: bool = False,
) -> type | None:
    """The project view (class-based, or a REST framework view) running a queryset that
    Django or a library built. Only for watched querysets with no project line. With
    ``library``: the innermost view, a library's too (a CMS's own listing view). With
    ``model``: None when that view says it lists another model (its ``model``, or its
    ``queryset``'s): a serializer's nested rows are not the view's queryset; with
    ``named`` too, None unless it says it lists ``model``."""
    from django.views import View

    finder = call_site_finder()
    while frame is not None:
        code = frame.f_code
        if finder.is_internal(code) and code.co_varnames[:1] == ("self",):
            # type(), not isinstance(): a lazy object (request.user) would run a query.
            cls = type(frame.f_locals.get("self"))
            if issubclass(cls, View) and (library or not is_library_class(cls)):
                return cls if model is None or _may_list(cls, model, named) else None
        frame = frame.f_back
    return None


def _may_list(view: type, model: type, named: bool) -> bool:
    """Whether ``view`` may list ``model``'s rows: it names that model (or a parent or
    child of it), or none and ``named`` is false."""
    listed = getattr(view, "model", None)
    listed = listed or getattr(getattr(view, "queryset", None), "model", None)
    if not isinstance(listed, type):
        return not named
    return issubclass(model, listed) or issubclass(listed, model)


def installed_view(query: Query, frame: FrameType | None) -> tuple[type, str] | None:
    """The installed view whose subclass is where a fix for ``query``'s rows goes, and the
    method that subclass overrides: the one noted when the queryset was built (Wagtail's
    ``IndexView.get_base_queryset``), or else the innermost view on the stack that says it
    lists the rows' model (its ``model``, or its ``queryset``'s), with ``get_queryset``.
    The finding and its proof both ask here."""
    built = query.__dict__.get(BUILDER)
    if built is not None:
        return built  # type: ignore[no-any-return]
    view = owner_on_stack(frame, library=True, model=query.model, named=True)
    return None if view is None else (view, "get_queryset")


def is_library_class(cls: type) -> bool:
    """Whether ``cls`` is installed code's (or a module of ``DBTUNE["IGNORED_MODULES"]``),
    not the project's: a fix cannot go inside it, only in a subclass. Asked for every
    evaluated queryset a project class owns: kept per class and setting."""
    return _is_library_class(cls, conf.IGNORED_MODULES, conf.PROJECT_ROOT)


@lru_cache(maxsize=512)
def _is_library_class(cls: type, ignored: tuple[str, ...], root: object) -> bool:
    """``root`` (the project's folder) is part of the key: ``is_project_file`` reads it."""
    filename = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if filename is None or not is_project_file(filename):
        return True
    # A module of DBTUNE["IGNORED_MODULES"] is not where the user wants a fix either.
    return finder_for(ignored).is_internal_file(os.path.abspath(filename))
