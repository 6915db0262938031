"""Prefetching while a detection is open: the replacement of Django's
``prefetch_one_level``. A prefetch run for one row at a time is a per-row query; the rows
a prefetch brings in are tagged; each prefetched queryset learns how to say it was read."""

from __future__ import annotations

import sys
from typing import Any

from django.db.models import Model, query
from django.db.models.constants import LOOKUP_SEP
from django.db.models.fields.related_descriptors import ReverseManyToOneDescriptor
from django.db.models.manager import BaseManager

from django_dbtune.nplusone.lazy_loads import site_or_none, trigger_site
from django_dbtune.nplusone.state import TAG, USE, Load, Tag, Use, current, suspended

# Django's own, called by the replacement below (never the replacement itself).
_django_prefetch_one_level = query.prefetch_one_level


def prefetch_one_level(instances: list[Any], prefetcher: Any, lookup: Any, level: int) -> Any:
    detection = current.get()
    if detection is None or suspended() or not instances:
        return _django_prefetch_one_level(instances, prefetcher, lookup, level)
    tag: Tag | None = getattr(instances[0]._state, TAG, None)
    per_row = level == 0 and not detection.busy and len(instances) == 1
    site = trigger_site(sys._getframe(1), detection) if per_row else None
    start = len(detection.log.records)
    detection.busy += 1
    try:
        result = _django_prefetch_one_level(instances, prefetcher, lookup, level)
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
            Load("prefetch", tag, type(instances[0]), name, site_or_none(site), start, end)
        )
    else:
        detection.quiet.append((start, end))
    related_rows = result[0]
    if related_rows:
        nested = tag.group.tag(tag.prefix + name + LOOKUP_SEP, many or tag.many)
        for row in related_rows:
            if isinstance(row, Model):
                setattr(row._state, TAG, nested)
    if tag.eager and many:
        _attach_uses(instances, tag, name, lookup.get_current_to_attr(level)[1])
    return result


def _attach_uses(instances: list[Any], tag: Tag, name: str, as_attr: bool) -> None:
    """Let each prefetched queryset say when it is read (a ``to_attr`` list cannot: those
    count as read). A single-valued prefetch has no queryset: its read watch says it."""
    if as_attr:
        tag.read(name)
        return
    use = Use(tag, name)
    for instance in instances:
        cache = instance.__dict__.get("_prefetched_objects_cache")
        if cache:
            for prefetched in cache.values():
                if getattr(prefetched, USE, False) is None:  # a queryset not marked yet
                    setattr(prefetched, USE, use)
