"""The hooks the N+1 detector puts into Django, and how every one of them comes out again.

On Django 6.1+ lazy loads of forward relations, reverse one-to-ones, generic foreign keys
and deferred fields arrive through Django's fetch-mode hook: querysets evaluated while a
detection is open use :data:`DETECTING_FETCH_ONE`, which records and then fetches exactly
like ``FETCH_ONE``. What has no hook is patched, on every version: queryset evaluation
(to tag rows and see per-row related-manager queries), ``prefetch_one_level``, and the
deletion collector (a cascade is not an N+1). Django 5.2 has no fetch modes: there a lazy
load is recognised when a queryset is evaluated from inside a relation descriptor's
``__get__``, and ``refresh_from_db`` is patched for deferred fields.

No attribute read is wrapped for good: while a queryset's eager load of a relation has not
been read, that relation's descriptor on its model class is a read watch, which puts
Django's descriptor back after the first read.

Everything is installed when the first detection opens and removed when the last closes;
a patch never does more than a context-variable read for code that is not being watched.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from types import CodeType, FrameType
from typing import Any

import django
from django.apps import apps
from django.db.models import Model, query
from django.db.models.base import ModelState
from django.db.models.constants import LOOKUP_SEP
from django.db.models.deletion import Collector
from django.db.models.fields.related_descriptors import (
    ForwardManyToOneDescriptor,
    ReverseManyToOneDescriptor,
    ReverseOneToOneDescriptor,
)
from django.db.models.manager import BaseManager
from django.db.models.query import ModelIterable, QuerySet
from django.db.models.query_utils import DeferredAttribute

from django_dbtune.capture import attribute_to, call_site_finder, forget_attribution
from django_dbtune.nplusone.state import (
    Detection,
    Group,
    Load,
    LoadKind,
    Site,
    Tag,
    current,
    pause,
    paused,
)
from django_dbtune.project import is_project_file

# The hooks live on Django's private queryset attributes, which the type stubs do not know.
_QuerySet = Any

TAG = "dbtune_tag"
_USE = "_dbtune_use"
_ORIGIN = "dbtune_origin"
_OWNER = "dbtune_owner"
_LAZY = "dbtune_lazy_load"
FETCH_MODES = django.VERSION >= (6, 1)


# --- Install and uninstall -----------------------------------------------------------------


@dataclass
class _Patch:
    owner: Any
    name: str
    replacement: Any
    original: Any = None
    had_own: bool = False


_lock = threading.RLock()
_users = 0
_applied: list[_Patch] = []


def install() -> None:
    """Put the hooks in (counted: each ``install()`` needs its ``uninstall()``)."""
    global _users
    with _lock:
        _users += 1
        if _users == 1:
            for patch in _patches():
                patch.had_own = patch.name in vars(patch.owner)
                patch.original = vars(patch.owner).get(patch.name)
                setattr(patch.owner, patch.name, patch.replacement)
                _applied.append(patch)


def uninstall() -> None:
    global _users
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0:
            while _applied:
                patch = _applied.pop()
                if patch.had_own:
                    setattr(patch.owner, patch.name, patch.original)
                else:
                    delattr(patch.owner, patch.name)
            for watch in list(_watches.values()):
                _restore(watch)


def installed() -> bool:
    return _users > 0


def _patches() -> list[_Patch]:
    patches = [
        _Patch(ModelState, TAG, None),
        _Patch(QuerySet, "_fetch_all", _fetch_all),
        _Patch(QuerySet, "count", _count),
        _Patch(QuerySet, "exists", _exists),
        _Patch(QuerySet, "aggregate", _aggregate),
        _Patch(QuerySet, "__getitem__", _getitem),
        _Patch(BaseManager, "get_queryset", _get_queryset),
        _Patch(query, "prefetch_one_level", _prefetch_one_level),
        _Patch(Collector, "collect", _paused(_Originals.collect)),
        _Patch(Collector, "delete", _paused(_Originals.delete)),
    ]
    if not FETCH_MODES:
        patches.append(_Patch(Model, "refresh_from_db", _refresh_from_db))
    return patches


class _Originals:
    """Django's own functions, taken before any patch so a wrapper never calls itself."""

    fetch_all = QuerySet._fetch_all
    count = QuerySet.count
    exists = QuerySet.exists
    aggregate = QuerySet.aggregate
    getitem = QuerySet.__getitem__
    get_queryset = BaseManager.get_queryset
    prefetch_one_level = query.prefetch_one_level
    collect = Collector.collect
    delete = Collector.delete
    refresh_from_db = Model.refresh_from_db


@cache
def _descriptor_gets() -> frozenset[int]:
    """Django 5.2: the ``__get__`` of every relation descriptor that loads lazily. A queryset
    evaluated a few frames below one of them is that descriptor's lazy load. As ids, like
    every set of code objects here: Python does not cache a code object's hash."""
    codes = {
        ForwardManyToOneDescriptor.__get__.__code__,
        ReverseOneToOneDescriptor.__get__.__code__,
    }
    if apps.is_installed("django.contrib.contenttypes"):
        from django.contrib.contenttypes import fields

        descriptor = getattr(fields, "GenericForeignKeyDescriptor", fields.GenericForeignKey)
        codes.add(descriptor.__dict__["__get__"].__code__)
    return frozenset(map(id, codes))


# --- Noting which eager loads are read -------------------------------------------------------


class _ReadWatch:
    """Stands in for a relation's descriptor on its model class while a queryset's eager
    load of that relation has not been read yet.

    It only needs one read per queryset: the first read of each marks the relation used,
    and when no queryset waits any more Django's descriptor goes back on the class. So a
    page of 200 rows pays for one read, not 200, and no instance carries anything extra.
    """

    def __init__(self, owner: type[Model], name: str, original: Any, lookup: str) -> None:
        self.owner = owner
        self.name = name
        self.original = original
        self.lookup = lookup
        """The relation as a lookup segment (a reverse one-to-one's query name)."""
        self.waiting: set[tuple[Group, str]] = set()
        """(queryset, path) pairs whose read has not been seen."""

    def __get__(self, instance: Model | None, cls: Any = None) -> Any:
        if instance is not None and self.waiting:
            tag = getattr(instance._state, TAG, None)
            if tag is not None and tag.live():
                tag.read(self.lookup)
                key = (tag.group, tag.prefix + self.lookup)
                if key in self.waiting:
                    # Under the lock: another thread's detection may be releasing its
                    # reads from this same set.
                    with _lock:
                        self.waiting.discard(key)
                        if not self.waiting:
                            _restore(self)
        return self.original.__get__(instance, cls)

    def __set__(self, instance: Model, value: Any) -> None:
        self.original.__set__(instance, value)


_watches: dict[tuple[type[Model], str], _ReadWatch] = {}


def _watch_reads(group: Group) -> None:
    """Put a read watch on every single-valued relation the group loaded eagerly."""
    with _lock:
        for path in (*group.select_related, *group.prefetch_related):
            step = _descriptor_at(group.model, path)
            if step is None:
                continue  # many-valued: a prefetched queryset says when it is read
            owner, name, lookup = step
            watch = _watches.get((owner, name))
            if watch is None:
                original = owner.__dict__[name]
                watch = _watches[(owner, name)] = _ReadWatch(owner, name, original, lookup)
                setattr(owner, name, watch)
            watch.waiting.add((group, path))
            group.detection.watches.add(watch)


def release_reads(detection: Detection) -> None:
    """A detection is over: stop waiting for its reads."""
    with _lock:
        for watch in detection.watches:
            watch.waiting = {key for key in watch.waiting if key[0].detection is not detection}
            if not watch.waiting:
                _restore(watch)
        detection.watches.clear()


def _restore(watch: _ReadWatch) -> None:
    if _watches.get((watch.owner, watch.name)) is watch:
        del _watches[(watch.owner, watch.name)]
        setattr(watch.owner, watch.name, watch.original)


@cache
def _descriptor_at(model: type[Model], path: str) -> tuple[type[Model], str, str] | None:
    """(class defining the descriptor, its attribute name, lookup name) of the last step
    of ``path`` from ``model``, when that step is a single-valued relation."""
    owner: Any = model
    names = path.split(LOOKUP_SEP)
    for i, name in enumerate(names):
        try:
            field: Any = owner._meta.get_field(name)
        except Exception:  # a to_attr prefetch or a name Django resolves itself
            return None
        last = i == len(names) - 1
        if last:
            if field.many_to_many or field.one_to_many:
                return None
            attribute = field.name if field.concrete or field.many_to_one else None
            if attribute is None:  # a reverse one-to-one: read through its accessor
                attribute = field.get_accessor_name()
            defining = next((k for k in owner.__mro__ if attribute in vars(k)), None)
            return (defining, attribute, name) if defining is not None else None
        owner = field.related_model
        if not isinstance(owner, type):
            return None
    return None


@cache
def _cache_key(model: type[Model], name: str) -> str:
    """The key select_related stores a relation under in ``_state.fields_cache``."""
    try:
        field: Any = model._meta.get_field(name)
    except Exception:
        return name
    return str(getattr(field, "cache_name", name))


def _tag_selected(group: Group, rows: list[Any], tree: dict[str, Any], prefix: str = "") -> None:
    """Tag the instances select_related attached, level by level, so that lazy loads and
    eager reads through them are seen too."""
    model: type[Model] = type(rows[0])
    for name, deeper in tree.items():
        key = _cache_key(model, name)
        related = [
            value
            for value in (row._state.fields_cache.get(key) for row in rows)
            if value is not None
        ]
        if related:
            path = prefix + name + LOOKUP_SEP
            tag = group.tag(path)
            for value in related:
                setattr(value._state, TAG, tag)
            if deeper:
                _tag_selected(group, related, deeper, path)


def _tag_all_selected(group: Group, rows: list[Any], prefix: str = "", depth: int = 5) -> None:
    """The same for a bare ``select_related()``, which names nothing: read each row's cache.
    (Slower than following the tree, so only for that case.)"""
    if depth == 0:
        return
    attached: dict[str, list[Any]] = {}
    for row in rows:
        for name, related in row._state.fields_cache.items():
            if not isinstance(related, Model):
                continue
            tag = getattr(related._state, TAG, None)
            if tag is not None and tag.group is group:
                continue  # the way back to a row already tagged
            attached.setdefault(name, []).append(related)
    for name, related_rows in attached.items():
        tag = group.tag(prefix + name + LOOKUP_SEP)
        for related in related_rows:
            setattr(related._state, TAG, tag)
        _tag_all_selected(group, related_rows, prefix + name + LOOKUP_SEP, depth - 1)


# --- Django 6.1's fetch-mode hook ------------------------------------------------------------

if FETCH_MODES:
    from django.db.models import fetch_modes

    class DetectingFetchOne(fetch_modes.FetchMode):
        """``FETCH_ONE`` that tells the detector first. Only querysets evaluated inside a
        detection get it; it pickles as Django's own ``FETCH_ONE``."""

        __slots__ = ()

        def fetch(self, fetcher: Any, instance: Model) -> None:
            tag = getattr(instance._state, TAG, None)
            if tag is None or not tag.watched or not tag.live():
                fetcher.fetch_one(instance)
                return
            kind, name = _describe_fetcher(fetcher)
            _load(tag, instance, kind, name, lambda: fetcher.fetch_one(instance), sys._getframe(1))
            _tag_loaded(tag, name, _loaded(fetcher, instance))

        def __reduce__(self) -> tuple[Any, ...]:
            return (_django_fetch_one, ())

    DETECTING_FETCH_ONE: Any = DetectingFetchOne()

    def _django_fetch_one() -> Any:
        return fetch_modes.FETCH_ONE


def _describe_fetcher(fetcher: Any) -> tuple[LoadKind, str]:
    """What a fetcher (a fetch-mode fetcher, or a descriptor) loads: (kind, lookup name)."""
    if isinstance(fetcher, ForwardManyToOneDescriptor):
        return "forward", fetcher.field.name
    if isinstance(fetcher, ReverseOneToOneDescriptor):
        return "reverse_one", fetcher.related.field.related_query_name()
    if isinstance(fetcher, DeferredAttribute):
        return "deferred", fetcher.field.name
    return "generic_fk", getattr(fetcher, "field", fetcher).name  # 5.2: the field itself


def _loaded(fetcher: Any, instance: Model) -> Any:
    """The object a relation fetcher just loaded onto ``instance`` (None for a field)."""
    if isinstance(fetcher, ReverseOneToOneDescriptor):
        return fetcher.related.get_cached_value(instance, None)
    if isinstance(fetcher, DeferredAttribute):
        return None
    return getattr(fetcher, "field", fetcher).get_cached_value(instance, None)


# --- Lazy loads ------------------------------------------------------------------------------


def _load(
    tag: Tag,
    instance: Model,
    kind: LoadKind,
    name: str,
    call: Callable[[], Any],
    frame: FrameType | None,
) -> Any:
    """Run one lazy load of ``name`` on ``instance`` (asked for by ``frame``) and remember
    its queries."""
    detection = tag.group.detection
    site = trigger_site(frame, detection)
    if site is None:
        return _quietly(detection, call)
    start = len(detection.log.records)
    detection.busy += 1
    token = attribute_to(site)  # the line is known: capture need not walk the stack again
    try:
        result = call()
    finally:
        forget_attribution(token)
        detection.busy -= 1
    end = len(detection.log.records)
    if end > start:
        detection.loads.append(
            Load(kind, tag, type(instance), name, _site_or_none(site), start, end)
        )
    return result


def _tag_loaded(tag: Tag, name: str, target: Any) -> None:
    """Watch what a lazy load brought in: its own relations are the next level."""
    if isinstance(target, Model):
        setattr(target._state, TAG, tag.through(name))


def _quietly(detection: Detection, call: Callable[[], Any]) -> Any:
    """Run queries that are nobody's N+1 (a tool's own rendering)."""
    start = len(detection.log.records)
    try:
        return call()
    finally:
        detection.quiet.append((start, len(detection.log.records)))


_UNKNOWN_SITE: Site = ("", 0, "")


def trigger_site(frame: FrameType | None, detection: Detection) -> Site | None:
    """The line (or template line) behind a load; None when django-debug-toolbar's own
    rendering caused it, which is not the project's N+1."""
    found = detection.finder.find_trigger(frame, _toolbar_dir())
    if found is None:
        return None
    filename, lineno, function = found
    if filename is None or lineno is None or function is None:
        return _UNKNOWN_SITE
    return filename, lineno, function


def _site_or_none(site: Site) -> Site | None:
    return None if site is _UNKNOWN_SITE else site


@cache
def _toolbar_dir() -> tuple[str, ...]:
    try:
        import debug_toolbar
    except ImportError:
        return ()
    return (os.path.dirname(os.path.abspath(str(debug_toolbar.__file__))) + os.sep,)


def _lazy_load(queryset: _QuerySet, frame: FrameType) -> bool:
    """Django 5.2: evaluate the queryset a relation descriptor built to load lazily (its
    ``__get__`` is ``frame``) as a load, when the instance is watched. False when it is
    not: an ordinary evaluation then."""
    names = frame.f_locals
    instance = names.get("instance")
    if not isinstance(instance, Model):
        return False
    tag = getattr(instance._state, TAG, None)
    if tag is None or not tag.watched or not tag.live():
        return False
    kind, name = _describe_fetcher(names.get("self"))
    _load(tag, instance, kind, name, lambda: _Originals.fetch_all(queryset), frame.f_back)
    for row in queryset._result_cache or ():
        _tag_loaded(tag, name, row)
    return True


_DEFERRED_GET: CodeType = DeferredAttribute.__get__.__code__


def _refresh_from_db(self: Model, *args: Any, **kwargs: Any) -> None:
    """Django 5.2 only: a deferred field read calls ``refresh_from_db(fields=[name])``."""
    tag = getattr(self._state, TAG, None)
    fields = kwargs.get("fields")
    if (
        tag is not None
        and tag.watched
        and tag.live()
        and fields
        and len(fields) == 1
        and _called_from(sys._getframe(1), _DEFERRED_GET)
    ):
        attname = next(iter(fields))
        name = next((f.name for f in self._meta.concrete_fields if f.attname == attname), attname)
        _load(
            tag,
            self,
            "deferred",
            name,
            lambda: _Originals.refresh_from_db(self, *args, **kwargs),
            sys._getframe(1),
        )
        return
    _Originals.refresh_from_db(self, *args, **kwargs)


def _called_from(frame: FrameType | None, code: CodeType, depth: int = 3) -> bool:
    while frame is not None and depth > 0:
        if frame.f_code is code:
            return True
        frame = frame.f_back
        depth -= 1
    return False


# --- Queryset evaluation ---------------------------------------------------------------------


def _fetch_all(self: _QuerySet) -> None:
    if self._result_cache is not None:
        _mark_use(self)
        return _Originals.fetch_all(self)
    detection = current.get()
    if detection is None or detection.busy or paused():
        return _Originals.fetch_all(self)
    lazy = self._query.__dict__.get(_LAZY)
    if lazy is not None and _lazy_load(self, lazy):
        return None
    owned = _owner_tag(self)
    if owned is not None:
        _per_row(self, detection, *owned, "many", lambda: _Originals.fetch_all(self))
        return None
    _evaluate(self, detection)
    return None


def _count(self: _QuerySet) -> int:
    if self._result_cache is not None:
        _mark_use(self)
        return _Originals.count(self)
    return _maybe_per_row(self, "count", lambda: _Originals.count(self))  # type: ignore[no-any-return]


def _exists(self: _QuerySet) -> bool:
    if self._result_cache is not None:
        _mark_use(self)
        return _Originals.exists(self)
    return _maybe_per_row(self, "exists", lambda: _Originals.exists(self))  # type: ignore[no-any-return]


def _aggregate(self: _QuerySet, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return _maybe_per_row(  # type: ignore[no-any-return]
        self, "aggregate", lambda: _Originals.aggregate(self, *args, **kwargs)
    )


def _getitem(self: _QuerySet, k: Any) -> Any:
    if self._result_cache is not None:
        _mark_use(self)
    return _Originals.getitem(self, k)


def _mark_use(queryset: _QuerySet) -> None:
    """A prefetched related queryset was read."""
    use = queryset.__dict__.get(_USE)
    if use is not None and use[0].live():
        use[0].read(use[1])


def _owner_tag(queryset: _QuerySet) -> tuple[Model, Tag] | None:
    """The watched instance a related manager's queryset belongs to, and its tag."""
    hints = queryset._hints
    owner = hints.get("instance") if hints else None
    if owner is None:
        # Generic relations' managers give no hint; the manager hook marked the query.
        owner = queryset._query.__dict__.get(_OWNER)
        if owner is None:
            return None
    tag: Tag | None = getattr(getattr(owner, "_state", None), TAG, None)
    if tag is None or not tag.watched or not tag.live():
        return None
    return owner, tag


_RELATED_DESCRIPTORS_FILE = ForwardManyToOneDescriptor.__get__.__code__.co_filename


def _manager_call(frame: FrameType | None) -> Any:
    """The many-to-many manager whose ``count()``/``exists()`` queried its through table
    directly (Django skips the join then, and the hint with it)."""
    if frame is None:
        return None
    code = frame.f_code
    if code.co_name in ("count", "exists") and code.co_filename == _RELATED_DESCRIPTORS_FILE:
        return frame.f_locals.get("self")
    return None


def _maybe_per_row(queryset: _QuerySet, kind: LoadKind, call: Callable[[], Any]) -> Any:
    detection = current.get()
    if detection is None or detection.busy or paused():
        return call()
    manager = _manager_call(sys._getframe(2))
    if manager is not None:
        owner = manager.instance
        tag = getattr(owner._state, TAG, None)
        if tag is None or not tag.watched or not tag.live():
            return call()
        return _per_row(
            queryset, detection, owner, tag, kind, call, manager.model, manager.query_field_name
        )
    owned = _owner_tag(queryset)
    if owned is None:
        return call()
    return _per_row(queryset, detection, *owned, kind, call)


def _per_row(
    queryset: _QuerySet,
    detection: Detection,
    owner: Model,
    tag: Tag,
    kind: LoadKind,
    call: Callable[[], Any],
    target: type[Model] | None = None,
    back: str | None = None,
) -> Any:
    """A related manager's query for one watched instance: ``author.books.all()`` in a loop."""
    relation = many_relation(type(owner), target or queryset.model, queryset, back)
    site = trigger_site(sys._getframe(1), detection)
    if relation is None or site is None:
        return _quietly(detection, call)
    name, related_query_name = relation
    detection.busy += 1
    try:
        sliced, filtered = _narrowed(queryset, owner, name)
        start = len(detection.log.records)
        result = call()
    finally:
        detection.busy -= 1
    end = len(detection.log.records)
    if end > start:
        detection.loads.append(
            Load(
                kind,
                tag,
                type(owner),
                name,
                _site_or_none(site),
                start,
                end,
                sliced=sliced,
                filtered=filtered,
                related_model=target or queryset.model,
                related_query_name=related_query_name,
            )
        )
    rows = queryset._result_cache if kind == "many" else None
    if rows and issubclass(queryset._iterable_class, ModelIterable):
        nested = tag.group.tag(tag.prefix + name + LOOKUP_SEP, many=True)
        for row in rows:
            setattr(row._state, TAG, nested)
    return result


def _narrowed(queryset: _QuerySet, owner: Model, name: str) -> tuple[bool, bool]:
    """(sliced, filtered): the per-row call was ``.first()``/``[:n]``, or had filters of its
    own, so a plain prefetch would not serve it."""
    sql_query = queryset.query  # about to run anyway: forcing its deferred filter is free
    try:
        base = getattr(owner, name).all().query
    except Exception:  # an accessor that cannot be rebuilt: assume only the relation filter
        return sql_query.is_sliced, False
    return sql_query.is_sliced, len(sql_query.where.children) > len(base.where.children)


def _evaluate(queryset: _QuerySet, detection: Detection) -> None:
    """``QuerySet._fetch_all``, plus: tag the rows when they are worth watching."""
    if queryset._result_cache is None:
        swapped = FETCH_MODES and queryset._fetch_mode is fetch_modes.FETCH_ONE
        if swapped:
            queryset._fetch_mode = DETECTING_FETCH_ONE
        try:
            queryset._result_cache = list(queryset._iterable_class(queryset))
        finally:
            if swapped:
                queryset._fetch_mode = fetch_modes.FETCH_ONE
    rows = queryset._result_cache
    if rows and issubclass(queryset._iterable_class, ModelIterable):
        _watch(queryset, rows, detection)
    if queryset._prefetch_related_lookups and not queryset._prefetch_done:
        detection.busy += 1
        try:
            queryset._prefetch_related_objects()
        finally:
            detection.busy -= 1


def _watch(queryset: _QuerySet, rows: list[Any], detection: Detection) -> None:
    sql_query = queryset._query
    select_related = sql_query.select_related
    prefetch = queryset._prefetch_related_lookups
    if len(rows) < 2 and not select_related and not prefetch:
        return
    site, owner = sql_query.__dict__.get(_ORIGIN) or (None, None)
    if site is None and owner is None:
        owner = _owner_on_stack(sys._getframe(1))
    deferred_names, defer = sql_query.deferred_loading
    evaluated_at = trigger_site(sys._getframe(1), detection)
    group = Group(
        detection,
        queryset.model,
        len(rows),
        site,
        owner,
        _site_or_none(evaluated_at) if evaluated_at is not None else None,
        select_related=tuple(_paths(select_related)) if isinstance(select_related, dict) else (),
        prefetch_related=tuple(_prefetch_paths(prefetch)),
        deferred=(frozenset(deferred_names), defer) if deferred_names else None,
    )
    detection.groups.append(group)
    root = group.tag()
    for row in rows:
        setattr(row._state, TAG, root)
    if select_related is True:
        _tag_all_selected(group, rows)
    elif select_related:
        _tag_selected(group, rows, select_related)
    if detection.reads and group.from_project and (group.select_related or prefetch):
        _watch_reads(group)


def _paths(tree: dict[str, Any], prefix: str = "") -> Iterable[str]:
    for name, sub in tree.items():
        yield prefix + name
        yield from _paths(sub, prefix + name + LOOKUP_SEP)


def _prefetch_paths(lookups: Iterable[Any]) -> Iterable[str]:
    seen: set[str] = set()
    for lookup in lookups:
        full = lookup if isinstance(lookup, str) else lookup.prefetch_to
        parts = full.split(LOOKUP_SEP)
        for i in range(1, len(parts) + 1):
            path = LOOKUP_SEP.join(parts[:i])
            if path not in seen:
                seen.add(path)
                yield path


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


def _get_queryset(self: BaseManager[Any]) -> Any:
    """Remember where a chain of queryset calls started, for the fix's location, or that a
    relation descriptor built it for a lazy load.

    At most five frames are looked at, so the lazy loads Django runs deep inside its
    own code cost next to nothing here.
    """
    queryset: Any = _Originals.get_queryset(self)
    detection = current.get()
    if detection is None or detection.busy:
        return queryset
    owner = self.__dict__.get("instance")
    if isinstance(owner, Model):
        # A related manager: its queries belong to that instance, not to a line.
        queryset._query.__dict__[_OWNER] = owner
        return queryset
    finder = detection.finder
    owners = _owner_codes()
    lazy_gets = () if FETCH_MODES else _descriptor_gets()
    frame: FrameType | None = sys._getframe(1)
    for _ in range(5):
        if frame is None:
            break
        code = frame.f_code
        if id(code) in lazy_gets:
            # Django 5.2: a relation descriptor building its lazy load (6.1 announces those
            # through the fetch mode). The evaluation reads the instance from this frame.
            queryset._query.__dict__[_LAZY] = frame
            break
        if id(code) in owners:
            owner = frame.f_locals.get("self")
            if owner is not None:
                setattr(queryset._query, _ORIGIN, (None, type(owner)))
            break
        if not finder.is_internal(code):
            if code.co_name == "get_queryset" and _is_manager_method(code, frame):
                frame = frame.f_back
                continue
            site = (code.co_filename, frame.f_lineno, code.co_name)
            setattr(queryset._query, _ORIGIN, (site, None))
            break
        frame = frame.f_back
    return queryset


_manager_codes: dict[tuple[str, int], bool] = {}


def _is_manager_method(code: CodeType, frame: FrameType) -> bool:
    """A project manager's own ``get_queryset``: plumbing, not where the queryset is used."""
    key = (code.co_filename, code.co_firstlineno)
    known = _manager_codes.get(key)
    if known is None:
        known = _manager_codes[key] = isinstance(frame.f_locals.get("self"), BaseManager)
    return known


def _owner_on_stack(frame: FrameType | None) -> type | None:
    """The project view (class-based, or a REST framework view) running a queryset that
    Django or a library built. Only for watched querysets with no project line."""
    from django.views import View

    finder = call_site_finder()
    while frame is not None:
        code = frame.f_code
        if finder.is_internal(code) and code.co_varnames[:1] == ("self",):
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, View) and not _is_library_class(type(candidate)):
                return type(candidate)
        frame = frame.f_back
    return None


def _is_library_class(cls: type) -> bool:
    filename = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return filename is None or not is_project_file(filename)


# --- Related managers ------------------------------------------------------------------------


@cache
def _many_relations(
    owner: type[Model], target: type[Model]
) -> tuple[tuple[str, str | None, Any], ...]:
    """Every many-valued relation from ``owner`` to ``target``: (accessor, the name of the
    way back as ``target``'s queries spell it, the field that tells them apart)."""
    concrete = target._meta.concrete_model
    found: list[tuple[str, str | None, Any]] = []
    for rel in owner._meta.related_objects:
        if (rel.one_to_many or rel.many_to_many) and _same(rel.related_model, concrete):
            found.append((rel.get_accessor_name() or rel.name, rel.field.name, rel.field))
    for field in owner._meta.many_to_many:
        if _same(field.related_model, concrete):
            found.append((field.name, field.related_query_name(), field))
    for field in owner._meta.private_fields:
        if getattr(field, "one_to_many", False) and _same(field.related_model, concrete):
            found.append((field.name, None, field))
    return tuple(found)


def _same(model: Any, concrete: Any) -> bool:
    meta = getattr(model, "_meta", None)
    return meta is not None and meta.concrete_model is concrete


def many_relation(
    owner: type[Model],
    target: type[Model],
    queryset: Any = None,
    back: str | None = None,
) -> tuple[str, str | None] | None:
    """Which of ``owner``'s many-valued relations to ``target`` a per-row query reads:
    (accessor, the way back as ``target``'s queries name it)."""
    candidates = _many_relations(owner, target)
    if not candidates:
        return None
    if len(candidates) > 1:
        known = queryset._known_related_objects if queryset is not None else {}
        deferred = queryset._deferred_filter if queryset is not None else None
        keys = {key.split(LOOKUP_SEP, 1)[0] for key in deferred[2]} if deferred else set()
        if back:
            keys.add(back)
        for name, way_back, field in candidates:
            if field in known or (way_back and way_back in keys):
                return name, way_back
    name, way_back, _ = candidates[0]
    return name, way_back


# --- Prefetching and deletion ----------------------------------------------------------------


def _prefetch_one_level(instances: list[Any], prefetcher: Any, lookup: Any, level: int) -> Any:
    detection = current.get()
    if detection is None or paused() or not instances:
        return _Originals.prefetch_one_level(instances, prefetcher, lookup, level)
    tag: Tag | None = getattr(instances[0]._state, TAG, None)
    per_row = level == 0 and not detection.busy and len(instances) == 1
    site = trigger_site(sys._getframe(1), detection) if per_row else None
    start = len(detection.log.records)
    detection.busy += 1
    try:
        result = _Originals.prefetch_one_level(instances, prefetcher, lookup, level)
    finally:
        detection.busy -= 1
    end = len(detection.log.records)
    if tag is None or not tag.live():
        detection.quiet.append((start, end))
        return result
    name = lookup.prefetch_to.split(LOOKUP_SEP)[level]
    many = isinstance(prefetcher, BaseManager | ReverseManyToOneDescriptor)
    if per_row and tag.watched and site is not None and end > start:
        detection.loads.append(
            Load("prefetch", tag, type(instances[0]), name, _site_or_none(site), start, end)
        )
    else:
        detection.quiet.append((start, end))
    related_rows = result[0]
    if related_rows:
        nested = tag.group.tag(tag.prefix + name + LOOKUP_SEP, many or tag.many)
        for row in related_rows:
            if isinstance(row, Model):
                setattr(row._state, TAG, nested)
    if tag.eager:
        _attach_uses(instances, tag, name, lookup.get_current_to_attr(level)[1])
    return result


def _attach_uses(instances: list[Any], tag: Tag, name: str, as_attr: bool) -> None:
    """Let each prefetched queryset say when it is read (a ``to_attr`` list cannot: those
    count as read)."""
    if as_attr:
        tag.read(name)
        return
    for instance in instances:
        for prefetched in instance.__dict__.get("_prefetched_objects_cache", {}).values():
            if _USE not in prefetched.__dict__:
                prefetched.__dict__[_USE] = (tag, name)


def _paused(method: Callable[..., Any]) -> Callable[..., Any]:
    """A cascade delete loads related rows one parent at a time on purpose."""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with pause():
            return method(self, *args, **kwargs)

    wrapper.__wrapped__ = method  # type: ignore[attr-defined]
    return wrapper


__all__ = ["install", "installed", "many_relation", "trigger_site", "uninstall"]
