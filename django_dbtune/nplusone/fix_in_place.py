"""A fix put in place in-process for one re-run of a page or test, as if its source had
been edited: eager loads added to (or removed from) the querysets built where it goes, a
ModelAdmin's ``list_select_related``, and the per-row calls it answers (:mod:`.row_calls`).
Only the re-run sees it (a context variable scopes it), never another thread's request."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any

from django.db.models import Count
from django.db.models.constants import LOOKUP_SEP
from django.db.models.query import QuerySet
from django.utils.module_loading import import_string

from django_dbtune.call_sites import call_site_finder, relative_path
from django_dbtune.fix_targets import FixTarget
from django_dbtune.nplusone.generic import generic_prefetches
from django_dbtune.nplusone.origin import installed_view, owner_on_stack
from django_dbtune.nplusone.relations import relation_field
from django_dbtune.nplusone.row_calls import (
    replaced_prefetches,
    row_annotations,
    row_prefetches,
    stood_in,
)
from django_dbtune.nplusone.state import ORIGIN, OWNER, current

AMENDED = "_dbtune_amended"
"""In a ``QuerySet``'s ``__dict__`` while a fix is applied: it was changed already."""


class Applied:
    """How often the fix met its queryset while applied (0: the run never built it), and
    where what the page read differed from what the code returns without the fix."""

    def __init__(self) -> None:
        self.hits = 0
        self.mismatches: list[str] = []

    def hit(self) -> None:
        self.hits += 1


@contextmanager
def applied(target: FixTarget, *more: FixTarget) -> Iterator[Applied]:
    """The fix (or several fixes at once) in place for the code run inside, as if the
    source had been edited.

    Querysets built at the target's line (or for its owner class) get the eager loads added
    (or the one removed) just before they are evaluated, however the chain went on; a
    ModelAdmin's ``list_select_related`` is set on the class. Run inside an open
    ``detect()``: the detector records where each queryset was built.
    """
    with _one_at_a_time, _applied((target, *more)) as seen:
        yield seen


_one_at_a_time = threading.RLock()
"""Proofs in two threads at once (the middleware's, under a threaded server) would each put
back the ``QuerySet`` methods it found, and one's patches could stay in for good."""


@contextmanager
def _applied(targets: tuple[FixTarget, ...]) -> Iterator[Applied]:
    owners = [_owner_class(one) for one in targets]
    seen = Applied()
    previous = QuerySet.__dict__["_fetch_all"]
    previous_count = QuerySet.__dict__["count"]
    counted_names = tuple(name for one in targets for name in one.count_annotations)

    def fetch_all(queryset: Any) -> None:
        detection = current.get()
        # Not the querysets Django runs to load relations (a prefetch): only the project's.
        loading = detection is not None and detection.busy > 0
        fresh = queryset._result_cache is None and AMENDED not in queryset.__dict__
        if fresh and not loading and _proving.get() is seen:
            frame = sys._getframe(1)
            for one, owner in zip(targets, owners, strict=True):
                if _is_target(queryset, one, owner, frame):
                    queryset.__dict__[AMENDED] = True
                    seen.hits += 1
                    _amend(queryset, one)
        return previous(queryset)  # type: ignore[no-any-return]

    def count(queryset: Any) -> int:
        # The read the fix changes: row.<name>.count() becomes row.<name>_count.
        counted = None
        if _proving.get() is seen:
            counted = _counted(queryset, counted_names)
        return previous_count(queryset) if counted is None else counted

    admins: list[tuple[Any, Any, Any]] = [
        (owner, owner.__dict__.get("list_select_related", _MISSING), one.list_select_related)
        for one, owner in zip(targets, owners, strict=True)
        if owner is not None and one.list_select_related is not None
    ]
    QuerySet._fetch_all = fetch_all  # type: ignore[method-assign,assignment]
    if counted_names:
        QuerySet.count = count  # type: ignore[method-assign,assignment]
    token = _proving.set(seen)
    try:
        for admin, _, fixed in admins:
            scoped = _Scoped(seen, fixed, admin.list_select_related)
            admin.list_select_related = scoped
        with ExitStack() as stack:
            for one in targets:
                stack.enter_context(
                    stood_in(one, seen.mismatches, lambda: _proving.get() is seen, seen.hit)
                )
            yield seen
    finally:
        _proving.reset(token)
        QuerySet._fetch_all = previous  # type: ignore[method-assign]
        QuerySet.count = previous_count  # type: ignore[method-assign]
        for admin, saved, _ in reversed(admins):
            if saved is _MISSING:
                delattr(admin, "list_select_related")
            else:
                admin.list_select_related = saved


_MISSING = object()

_proving: ContextVar[Applied | None] = ContextVar("django_dbtune_proving", default=None)
"""The fix applied for the code running now: a proof changes only its own re-run, never a
request another thread serves meanwhile."""


class _Scoped:
    """A ModelAdmin's ``list_select_related`` while a fix is proven: the fix's tuple in the
    re-run, what the class had everywhere else."""

    def __init__(self, seen: Applied, fixed: Any, kept: Any) -> None:
        self.seen = seen
        self.fixed = fixed
        self.kept = kept

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return self.fixed if _proving.get() is self.seen else self.kept


def _counted(queryset: Any, names: tuple[str, ...]) -> int | None:
    """The annotated count of the row whose related manager built ``queryset``, if the fix
    annotated it: what ``row.<name>_count`` reads once the code is changed."""
    row = queryset._query.__dict__.get(OWNER) if names else None
    if row is None or queryset._query.is_sliced:
        return None
    for name in names:
        value = row.__dict__.get(f"{name}_count")
        field = relation_field(type(row), name)
        if isinstance(value, int) and getattr(field, "related_model", None) is queryset.model:
            return value
    return None


def _owner_class(target: FixTarget) -> type | None:
    if target.owner_class is not None:
        return target.owner_class
    if target.owner is None:
        return None
    try:
        found = import_string(target.owner)
    except ImportError:
        return None
    return found if isinstance(found, type) else None


def _is_target(queryset: Any, target: FixTarget, owner: type | None, frame: Any) -> bool:
    if target.model is not None and queryset.model._meta.label != target.model:
        return False
    site, built_for = queryset._query.__dict__.get(ORIGIN) or (None, None)
    if target.in_template:
        if site is not None:
            return False  # built on a line of the project's code, not by the template
        # Built by the template line that runs it: the queryset run at that line.
        run_at = call_site_finder().find_trigger(frame)
        if run_at is None or run_at[2] != "template" or run_at[0] is None:
            return False
        return (relative_path(run_at[0]), run_at[1]) == (target.file, target.line)
    if target.file is not None:
        if site is None:
            return False
        place = (relative_path(site[0]), site[1])
        return place == (target.file, target.line) or place in target.also
    if owner is None:
        return False
    if site is None and built_for is None and target.in_subclass:
        view = installed_view(queryset._query, frame)  # as the finding found it
        built_for = view[0] if view is not None else None
    elif site is None and built_for is None:
        built_for = owner_on_stack(frame)
    return built_for is not None and issubclass(built_for, owner)


def _amend(queryset: Any, target: FixTarget) -> None:
    query = queryset._query
    lookups = tuple(queryset._prefetch_related_lookups)
    if target.action == "add":
        annotations = row_annotations(target)
        if annotations:
            queryset.query = queryset.annotate(**annotations).query
            query = queryset._query
        if target.row_calls:
            replaced = replaced_prefetches(target)
            lookups = tuple(lookup for lookup in lookups if lookup not in replaced)
            lookups += tuple(row_prefetches(target))
        if target.count_annotations:
            counts = {name: Count(path, distinct=True) for name, path in target.counted().items()}
            queryset.query = queryset.annotate(**counts).query
            query = queryset._query
        select = target.select_related
        if select and query.select_related is True:
            if target.names_bare_select:
                query.select_related = False  # the bare call, named as the fix says
            else:
                select = ()  # a named join added before a bare call is overridden by it
        if select:
            query.add_select_related(select)
        known = {_prefetch_to(lookup) for lookup in lookups}
        extra = tuple(path for path in target.prefetch_related if path not in known)
        # First: a plain lookup of the same name after it is skipped, one before it raises.
        generic = tuple(generic_prefetches(target.generic_prefetch))
        queryset._prefetch_related_lookups = generic + lookups + extra
        if target.specific_select or target.specific_prefetch:
            _amend_subqueries(queryset, target)
        return
    for path in target.select_related:
        _drop_join(query, path)
    for path in target.prefetch_related:
        queryset._prefetch_related_lookups = tuple(
            lookup
            for lookup in lookups
            if _prefetch_to(lookup) != path and not _prefetch_to(lookup).startswith(path + "__")
        )


def _amend_subqueries(queryset: Any, target: FixTarget) -> None:
    """The subclass rows' own loads, through the queryset's public methods (their state is
    the library's): as if the chain had gone on with them."""
    amended = queryset
    if target.specific_select:
        amended = amended.select_related(*target.specific_select, for_specific_subqueries=True)
    if target.specific_prefetch:
        amended = amended.prefetch_related(*target.specific_prefetch, for_specific_subqueries=True)
    kept = ("_result_cache", "_prefetch_done")
    queryset.__dict__.update((k, v) for k, v in vars(amended).items() if k not in kept)


def _prefetch_to(lookup: Any) -> str:
    return lookup if isinstance(lookup, str) else str(lookup.prefetch_to)


def _drop_join(query: Any, path: str) -> None:
    tree = query.select_related
    if not isinstance(tree, dict):
        return
    names = path.split(LOOKUP_SEP)
    for name in names[:-1]:
        tree = tree.get(name)
        if not isinstance(tree, dict):
            return
    tree.pop(names[-1], None)
    if not query.select_related:
        query.select_related = False
