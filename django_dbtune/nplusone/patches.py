"""Every Django object the N+1 detector touches, and how each one comes out again.

Installed when the first detection opens and removed when the last one closes (counted:
each :func:`install` has its :func:`uninstall`). ``NPlusOneMiddleware`` keeps them in between
its requests (:func:`keep`): putting them in and out again on every request cost more than
the detection itself, since each change of a class makes Python drop what it cached about
it. They come out when the middleware is garbage-collected or when ``DBTUNE`` or
``MIDDLEWARE`` changes (:func:`release_kept`). For code no detection watches, a replacement
does no more than read a context variable and call Django's own. One line per object touched:

Replaced while a detection is open (:data:`PATCHES`):

- ``Model._dbtune_tag``: added as ``None``, the default row tag (all versions).
- ``QuerySet._dbtune_use``: added as ``None``, the default for what reading a prefetched
  queryset marks (all versions).
- ``QuerySet._fetch_all`` → :func:`.evaluation.fetch_all`: tag rows, see per-row related
  manager queries, and on 5.2 lazy loads (all versions).
- ``QuerySet.count`` → :func:`.evaluation.count`: per-row ``count()`` (all versions).
- ``QuerySet.exists`` → :func:`.evaluation.exists`: per-row ``exists()`` (all versions).
- ``QuerySet.aggregate`` → :func:`.evaluation.aggregate`: per-row aggregates (all versions).
- ``QuerySet.__getitem__`` → :func:`.evaluation.getitem`: reads of prefetched querysets
  (all versions).
- ``sql.Query.__init__`` → :func:`.origin.query_init`: where a fresh queryset was built,
  through ``BaseManager.get_queryset`` or a manager that skips ``super()`` (a clone copies
  its query and builds none; all versions).
- ``django.db.models.query.prefetch_one_level`` → :func:`.prefetch.prefetch_one_level`:
  per-row prefetches and tags for prefetched rows (all versions).
- ``Collector.collect`` → :func:`.deletion.collect`: a cascade is not an N+1 (all versions).
- ``Collector.delete`` → :func:`.deletion.delete`: the same (all versions).
- ``Model.refresh_from_db`` → :func:`.django52.refresh_from_db`: deferred field loads
  (Django before 6.1: 5.2 and 6.0; 6.1 announces them through the fetch mode).

Listened to while a detection is open (not a Django object):

- :func:`django_dbtune.filled_rows.announce` → :func:`.evaluation.watch_filled`: rows the
  query cache filled in are watched like rows Django fetched (all versions).

Touched for a moment, not for the whole detection:

- The class of a relation descriptor (``Book.__dict__["author"].__class__``) → a
  :class:`.read_watch.ReadWatch` subclass of it until its eager load's first read, or the
  detection's end; the model class itself is never touched (all versions).
- ``QuerySet._fetch_mode`` of a queryset evaluated inside a detection: ``FETCH_ONE`` →
  :data:`.fetch_mode.DETECTING_FETCH_ONE` while it evaluates, so its rows keep it (Django
  6.1+, Django's own hook; it pickles as ``FETCH_ONE``).
- ``instance._state.fetch_mode`` of rows the query cache filled in, and of the related
  objects attached to them: ``FETCH_ONE`` → :data:`.fetch_mode.DETECTING_FETCH_ONE`, as if
  their queryset had been evaluated inside the detection (Django 6.1+).

While a fix is proven (:func:`.fix_in_place.applied`, inside a detection, for one re-run of a
page or test):

- ``QuerySet._fetch_all`` → a wrapper of whatever is installed that adds (or removes) the
  fix's eager loads on the querysets built where the fix goes (all versions).
- ``<ModelAdmin subclass>.list_select_related`` → the fix's tuple (all versions).

Each replacement calls Django's own function, taken when its module is imported (before
anything is installed), so it never calls itself; :func:`uninstall` puts back exactly what
:func:`install` found.

Attributes stored on Django's objects (named in :mod:`.state`): a model instance gets the
row tag; a ``Query`` its origin, owner or (5.2) lazy-load frame; a prefetched ``QuerySet``
what reading it means.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

from django.db.models import Model, query
from django.db.models.deletion import Collector
from django.db.models.query import QuerySet
from django.db.models.sql.query import Query

from django_dbtune import filled_rows
from django_dbtune.nplusone import deletion, django52, evaluation, origin, prefetch, read_watch
from django_dbtune.nplusone.fetch_mode import FETCH_MODES
from django_dbtune.nplusone.state import TAG, USE


@dataclass(eq=False)
class Patch:
    """``owner.name`` replaced by ``replacement`` while installed."""

    owner: Any
    name: str
    replacement: Any
    saved: Any = None
    """What ``owner`` itself held under ``name`` before install, put back on uninstall."""
    had_own: bool = False
    """``owner`` held ``name`` itself (not by inheritance): uninstall sets, not deletes."""


PATCHES: tuple[Patch, ...] = (
    Patch(Model, TAG, None),
    Patch(QuerySet, USE, None),
    Patch(QuerySet, "_fetch_all", evaluation.fetch_all),
    Patch(QuerySet, "count", evaluation.count),
    Patch(QuerySet, "exists", evaluation.exists),
    Patch(QuerySet, "aggregate", evaluation.aggregate),
    Patch(QuerySet, "__getitem__", evaluation.getitem),
    Patch(Query, "__init__", origin.query_init),
    Patch(query, "prefetch_one_level", prefetch.prefetch_one_level),
    Patch(Collector, "collect", deletion.collect),
    Patch(Collector, "delete", deletion.delete),
    *(() if FETCH_MODES else (Patch(Model, "refresh_from_db", django52.refresh_from_db),)),
)

_lock = threading.RLock()
_users = 0
_kept: dict[int, weakref.finalize[Any, Any]] = {}
"""The owners (middleware instances) that keep the patches in, by ``id``."""


def install() -> None:
    """Put every patch in (counted: each ``install()`` needs its ``uninstall()``)."""
    global _users
    with _lock:
        _users += 1
        if _users == 1:
            for patch in PATCHES:
                patch.had_own = patch.name in vars(patch.owner)
                patch.saved = vars(patch.owner).get(patch.name)
                setattr(patch.owner, patch.name, patch.replacement)
            filled_rows.listen(evaluation.watch_filled)


def uninstall() -> None:
    """Take every patch out when the last detection closes, and any read watch left."""
    global _users
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0:
            for patch in reversed(PATCHES):
                if patch.had_own:
                    setattr(patch.owner, patch.name, patch.saved)
                else:
                    delattr(patch.owner, patch.name)
            filled_rows.stop_listening(evaluation.watch_filled)
            read_watch.restore_all()


def installed() -> bool:
    return _users > 0


def keep(owner: object) -> None:
    """Keep the patches in for as long as ``owner`` lives (a middleware, between its
    requests), or until :func:`release_kept`; one :func:`install` however often it asks."""
    if id(owner) in _kept:
        return
    with _lock:
        if id(owner) in _kept:
            return
        install()
        _kept[id(owner)] = weakref.finalize(owner, _let_go, id(owner))


def kept(owner: object) -> bool:
    return id(owner) in _kept


def release_kept() -> None:
    """Every owner lets go of the patches (settings changed); an owner still in use takes
    them again on its next request."""
    for finalizer in list(_kept.values()):
        finalizer()


def _let_go(key: int) -> None:
    with _lock:
        if _kept.pop(key, None) is not None:
            uninstall()
