"""Per-row related-manager queries: ``author.books.all()``, ``.count()``, ``.exists()``,
an aggregate or ``.get()`` run once for each watched instance in a loop."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache
from types import FrameType
from typing import Any

from django.db.models import Model
from django.db.models.constants import LOOKUP_SEP
from django.db.models.fields.related_descriptors import ForwardManyToOneDescriptor
from django.db.models.query import ModelIterable

from django_dbtune.nplusone.failures import give_up
from django_dbtune.nplusone.lazy_loads import quietly, site_or_none, trigger_site
from django_dbtune.nplusone.relations import many_relation
from django_dbtune.nplusone.state import (
    OWNER,
    TAG,
    Detection,
    Load,
    LoadKind,
    Tag,
    detection_now,
    suspended,
    tag_all,
    tag_of,
)


def owner_tag(queryset: Any) -> tuple[Model, Tag] | None:
    """The watched instance a related manager's queryset belongs to, and its tag."""
    owner = _owner(queryset)
    tag = tag_of(owner)
    if tag is None or not tag.watched or not tag.live():
        return None
    return owner, tag


def lone_owner_tag(queryset: Any) -> Tag | None:
    """The tag of the one project row, watched by nobody (fetched on its own), whose related
    manager built ``queryset``: its rows could be prefetched where that row was fetched."""
    tag = tag_of(_owner(queryset))
    if tag is None or tag.watched or tag.prefix or not tag.group.from_project:
        return None
    return tag


def _owner(queryset: Any) -> Any:
    hints = queryset._hints
    owner = hints.get("instance") if hints else None
    # Generic relations' managers give no hint; the manager hook marked the query.
    return owner if owner is not None else queryset._query.__dict__.get(OWNER)


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


def maybe_per_row(queryset: Any, kind: LoadKind, call: Callable[[], Any]) -> Any:
    """Run ``call`` (a queryset's ``count``, ``exists`` or ``aggregate``), as a per-row
    query when a watched instance's related manager asked for it."""
    detection = detection_now()
    if detection is None or detection.busy or suspended():
        return call()
    try:
        # Two frames up: the replaced QuerySet method, then who called it.
        manager = _manager_call(sys._getframe(2))
        if manager is not None:
            owner = manager.instance
            tag = tag_of(owner)
            if tag is None or not tag.watched or not tag.live():
                return call()
            return per_row(
                queryset,
                detection,
                owner,
                tag,
                kind,
                call,
                manager.model,
                manager.query_field_name,
            )
        owned = owner_tag(queryset)
        if owned is None:
            return _row_call(queryset, detection, call, sys._getframe(2))
        return per_row(queryset, detection, *owned, kind, call)
    except Exception as error:
        if not give_up(detection, error):
            raise
        return call()  # a count, exists() or aggregate: asking again changes nothing


def _row_call(
    queryset: Any, detection: Detection, call: Callable[[], Any], frame: FrameType | None
) -> Any:
    """A count, ``exists()`` or aggregate the project wrote by hand, for one watched row
    (``Ticket.objects.filter(kbitem=self).count()`` in a model method): its queries are
    noted with the row's tag, so the fix can annotate the row's queryset instead."""
    try:
        tag = _row_in(queryset, frame, detection)
    except Exception:  # a local that cannot be looked at is no reason to fail the request
        tag = None
    if tag is None:
        return call()
    records = detection.log.records
    start = len(records)
    result = call()
    if len(records) > start:
        detection.row_calls.append((start, len(records), tag))
    return result


def _row_in(queryset: Any, frame: FrameType | None, detection: Detection) -> Tag | None:
    """The one watched row of the project frame that made the call and of a model that
    ``queryset``'s model points at (``self`` in ``KBItem.num_open_tickets``)."""
    while frame is not None and detection.finder.is_internal(frame.f_code):
        frame = frame.f_back
    if frame is None:
        return None
    targets = _pointed_at(queryset.model)
    # type(), not isinstance(): a lazy object (request.user) would be evaluated.
    found = {
        id(value): getattr(value, TAG, None)
        for value in list(frame.f_locals.values())
        if issubclass(type(value), targets) and issubclass(type(value), Model)
    }
    tags = [tag for tag in found.values() if tag is not None]
    if len(found) != 1 or len(tags) != 1:
        return None
    tag: Tag = tags[0]
    if not tag.watched or tag.prefix or not tag.group.from_project or not tag.live():
        return None
    return tag


def per_row(
    queryset: Any,
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
        return quietly(detection, call)
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
                site_or_none(site),
                start,
                end,
                sliced=sliced,
                filtered=filtered,
                reshaped=kind == "many"
                and not issubclass(queryset._iterable_class, ModelIterable),
                related_model=target or queryset.model,
                related_query_name=related_query_name,
            )
        )
    rows = queryset._result_cache if kind == "many" else None
    if rows and issubclass(queryset._iterable_class, ModelIterable):
        nested = tag.group.tag(tag.prefix + name + LOOKUP_SEP, many=True)
        tag_all(rows, nested)
    return result


@cache
def _pointed_at(model: type[Model]) -> tuple[type, ...]:
    """The models ``model``'s foreign keys point at."""
    pointed = (field.related_model for field in model._meta.concrete_fields if field.many_to_one)
    return tuple(target for target in pointed if isinstance(target, type))


def _narrowed(queryset: Any, owner: Model, name: str) -> tuple[bool, bool]:
    """(sliced, filtered): the per-row call was sliced (``[:n]``), or had filters or an
    ordering of its own (``.first()``, ``.order_by()``), which a plain prefetch does not
    serve."""
    sql_query = queryset.query  # about to run anyway: forcing its deferred filter is free
    try:
        base = getattr(owner, name).all().query
    except Exception:  # an accessor that cannot be rebuilt: assume only the relation filter
        return sql_query.is_sliced, False
    # A filter or an ordering of its own (.first() orders by pk) queries again even over
    # prefetched rows; a plain slice of .all() reads them.
    reshaped = tuple(sql_query.order_by) != tuple(base.order_by)
    filtered = len(sql_query.where.children) > len(base.where.children)
    return sql_query.is_sliced, filtered or reshaped
