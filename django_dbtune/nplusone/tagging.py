"""Tagging the rows of an evaluated queryset worth watching, and the instances its
``select_related`` attached to them (see :class:`.state.Tag`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.db.models import Model
from django.db.models.constants import LOOKUP_SEP
from django.db.models.query import ModelIterable

from django_dbtune.nplusone.lazy_loads import site_or_none, trigger_site
from django_dbtune.nplusone.origin import installed_view, is_library_class, owner_on_stack
from django_dbtune.nplusone.read_watch import watch_reads
from django_dbtune.nplusone.relations import cache_key, many_relation
from django_dbtune.nplusone.state import (
    ORIGIN,
    OWNER,
    TAG,
    Detection,
    Group,
    Site,
    Tag,
    tag_all,
    tag_of,
    tag_one,
)


def tag_rows(queryset: Any, rows: list[Any], detection: Detection) -> None:
    """Watch the rows of an evaluated queryset: two or more, or with eager loads."""
    sql_query = queryset._query
    select_related = sql_query.select_related
    prefetch = queryset._prefetch_related_lookups
    site, owner = sql_query.__dict__.get(ORIGIN) or (None, None)
    library: type | None = None
    method = "get_queryset"
    if owner is not None and is_library_class(owner):
        library, owner = owner, None  # a library's view: the fix goes in a subclass of it
    if len(rows) < 2 and not select_related and not prefetch:
        if site is None and owner is None:
            # A view's class attribute, built before any detection (a viewset's detail
            # page): the view on the stack owns it, so that what its related managers
            # load per row is fixed on it.
            owner = owner_on_stack(sys._getframe(1), model=queryset.model, named=True)
        if site is not None or owner is not None:
            # One row the project fetched (a detail page's object): not watched, but what
            # its related managers load per row is fixed on this queryset (tag_through).
            group = Group(detection, queryset.model, 1, site, owner, None)
            detection.groups.append(group)
            tag_one(rows[0], group.tag())
        return
    evaluated_at: Site | None = None
    if site is None and owner is None:
        through = _through(queryset)
        if through is None:
            owner = owner_on_stack(sys._getframe(1), model=queryset.model)
            if owner is None and library is None:
                view = installed_view(sql_query, sys._getframe(1))
                if view is not None:
                    library, method = view
        else:
            evaluated_at = trigger_site(sys._getframe(1), detection)
            if not _chained_in_template(queryset, through, evaluated_at, detection):
                _, parent_tag, name = through
                tag_all(rows, parent_tag.group.tag(parent_tag.prefix + name + LOOKUP_SEP, True))
                return
            site = evaluated_at  # the template's line builds it: the fix goes on it there
    deferred_names, defer = sql_query.deferred_loading
    if evaluated_at is None:
        evaluated_at = trigger_site(sys._getframe(1), detection)
    group = Group(
        detection,
        queryset.model,
        len(rows),
        site,
        owner,
        site_or_none(evaluated_at) if evaluated_at is not None else None,
        select_related=tuple(_paths(select_related)) if isinstance(select_related, dict) else (),
        select_all=select_related is True,
        prefetch_related=_prefetch_paths(prefetch) if prefetch else (),
        plain_prefetches=tuple(lookup for lookup in prefetch if isinstance(lookup, str)),
        deferred=(frozenset(deferred_names), defer) if deferred_names else None,
        subclass_rows=queryset._iterable_class is not ModelIterable,
        library_owner=library if owner is None and site is None else None,
        library_method=method,
    )
    detection.groups.append(group)
    tag_all(rows, group.tag())
    if select_related is True:
        _tag_all_selected(group, rows)
    elif select_related:
        _tag_selected(group, rows, select_related)
    if detection.reads and group.from_project and (group.select_related or prefetch):
        watch_reads(group)


def _through(queryset: Any) -> tuple[Model, Tag, str] | None:
    """Rows a related manager of a project-fetched instance loaded where no fix can go (a
    template's ``{% for b in genre.book_set.all %}``): the instance's tag and the relation,
    to tag them as reached through that instance, so that loads per row are fixed on the
    instance's queryset (``.prefetch_related("book_set__author")``); and the instance."""
    hints = queryset._hints
    parent = hints.get("instance") if hints else None
    parent = parent if parent is not None else queryset._query.__dict__.get(OWNER)
    tag = tag_of(parent)
    if tag is None or not tag.group.from_project or not tag.live():
        return None
    relation = many_relation(type(parent), queryset.model, queryset)
    if relation is None:
        return None
    return parent, tag, relation[0]


def _chained_in_template(
    queryset: Any, through: tuple[Model, Tag, str], run_at: Site | None, detection: Detection
) -> bool:
    """Whether a template line built this related manager's queryset past what a prefetch
    of the relation serves (``{% for r in product.reviews.approved %}``: a filter, another
    order, joins, eager loads), so that the instance's prefetch would not be read and the
    fix goes on the queryset the template runs. A slice is served by the prefetched rows.
    Judged once per template line and relation: the SQL of both is compared (expressions
    compare by identity, and a default manager's ``Exists()`` or ``now()`` would differ)."""
    if run_at is None or run_at[2] != "template":
        return False
    parent, _, name = through
    key = (run_at, type(parent), name)
    known = detection.chained.get(key)
    if known is None:
        known = detection.chained[key] = _chained(queryset, parent, name, detection)
    return known


def _chained(queryset: Any, parent: Model, name: str, detection: Detection) -> bool:
    detection.busy += 1  # building and compiling the plain queryset is nobody's query
    try:
        manager = getattr(parent, name)
        plain = manager.get_queryset() if hasattr(manager, "get_queryset") else None
        if plain is None:
            return False
        return bool(
            _sql(queryset) != _sql(plain)
            or tuple(queryset._prefetch_related_lookups) != tuple(plain._prefetch_related_lookups)
            or queryset._iterable_class is not plain._iterable_class
            # reverse() on an unordered queryset changes no SQL, but queries again
            or queryset.query.standard_ordering != plain.query.standard_ordering
        )
    except Exception:  # a relation that cannot be read or compiled here: keep the prefetch fix
        return False
    finally:
        detection.busy -= 1


def _sql(queryset: Any) -> str:
    """The queryset's SQL without its slice (a prefetch serves that) and without values."""
    query = queryset.query.chain()
    query.clear_limits()
    sql: str = query.get_compiler(queryset.db).as_sql()[0]
    return sql


def _tag_selected(group: Group, rows: list[Any], tree: dict[str, Any], prefix: str = "") -> None:
    """Tag the instances select_related attached, level by level, so that lazy loads and
    eager reads through them are seen too."""
    model: type[Model] = type(rows[0])
    for name, deeper in tree.items():
        key = cache_key(model, name)
        related = [
            value
            for value in (row._state.fields_cache.get(key) for row in rows)
            if value is not None
        ]
        if related:
            path = prefix + name + LOOKUP_SEP
            tag_all(related, group.tag(path))
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
            tag = getattr(related, TAG, None)
            if tag is not None and tag.group is group:
                continue  # the way back to a row already tagged
            attached.setdefault(name, []).append(related)
    for name, related_rows in attached.items():
        tag = group.tag(prefix + name + LOOKUP_SEP)
        tag_all(related_rows, tag)
        _tag_all_selected(group, related_rows, prefix + name + LOOKUP_SEP, depth - 1)


def _paths(tree: dict[str, Any], prefix: str = "") -> Iterable[str]:
    for name, sub in tree.items():
        yield prefix + name
        yield from _paths(sub, prefix + name + LOOKUP_SEP)


def _prefetch_paths(lookups: tuple[Any, ...]) -> tuple[str, ...]:
    """Every path the lookups prefetch, the steps on the way included. Lookups given as
    strings only (the usual case) are worked out once per process."""
    if all(isinstance(lookup, str) for lookup in lookups):
        return _string_paths(tuple(lookups))
    return tuple(_paths_of(lookups))


@lru_cache(maxsize=512)
def _string_paths(lookups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_paths_of(lookups))


def _paths_of(lookups: Iterable[Any]) -> Iterable[str]:
    seen: set[str] = set()
    for lookup in lookups:
        full = lookup if isinstance(lookup, str) else lookup.prefetch_to
        parts = full.split(LOOKUP_SEP)
        for i in range(1, len(parts) + 1):
            path = LOOKUP_SEP.join(parts[:i])
            if path not in seen:
                seen.add(path)
                yield path
