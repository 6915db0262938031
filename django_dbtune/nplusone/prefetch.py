"""Prefetching while a detection is open: the replacement of Django's
``prefetch_one_level``. A prefetch run for one row at a time is a per-row query; the rows
a prefetch brings in are tagged; each prefetched queryset learns how to say it was read."""

from __future__ import annotations

import sys
from collections import deque
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

from django.db.models import Model, query
from django.db.models.constants import LOOKUP_SEP
from django.db.models.fields.related_descriptors import ReverseManyToOneDescriptor
from django.db.models.manager import BaseManager

from django_dbtune.nplusone.failures import give_up
from django_dbtune.nplusone.lazy_loads import site_or_none, trigger_site
from django_dbtune.nplusone.state import (
    TAG,
    USE,
    Detection,
    Load,
    Tag,
    Use,
    detection_now,
    suspended,
    tag_all,
)

# Django's own, called by the replacement below (never the replacement itself).
_django_prefetch_one_level = query.prefetch_one_level


def prefetch_one_level(instances: list[Any], prefetcher: Any, lookup: Any, level: int) -> Any:
    detection = detection_now()
    if detection is None or detection.failed or suspended() or not instances:
        return _django_prefetch_one_level(instances, prefetcher, lookup, level)
    try:
        tag: Tag | None = getattr(instances[0], TAG, None)
        cached = instances[0].__dict__.get(_CACHE) if tag is not None and tag.eager else None
        known = set(cached) if cached else set()  # the prefetch adds its queryset next to these
        per_row = level == 0 and not detection.busy and len(instances) == 1
        site = trigger_site(sys._getframe(1), detection) if per_row else None
    except Exception as error:
        if not give_up(detection, error):
            raise
        return _django_prefetch_one_level(instances, prefetcher, lookup, level)
    start = len(detection.log.records)
    detection.busy += 1
    try:
        result = _django_prefetch_one_level(instances, prefetcher, lookup, level)
    finally:
        detection.busy -= 1
    try:
        before = (tag, known, per_row, site, start)
        _note(detection, instances, prefetcher, lookup, level, result, before)
    except Exception as error:
        if not give_up(detection, error):
            raise
    return result


def _note(
    detection: Detection,
    instances: list[Any],
    prefetcher: Any,
    lookup: Any,
    level: int,
    result: Any,
    before: tuple[Tag | None, set[str], bool, Any, int],
) -> None:
    """What the prefetch just run means: a per-row prefetch is a load, its rows are tagged,
    and its querysets say when they are read."""
    tag, known, per_row, site, start = before
    end = len(detection.log.records)
    if tag is None or not tag.live():
        detection.quiet.append((start, end))
        return
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
        if isinstance(related_rows[0], Model):
            tag_all(related_rows, nested)
    if tag.eager:
        if lookup.get_current_to_attr(level)[1]:
            tag.read(name)  # a to_attr list or object: counted as read
        elif many:  # a single-valued prefetch has no queryset: its read watch says it
            _attach_uses(instances, tag, name, known)


_CACHE = "_prefetched_objects_cache"


def _attach_uses(instances: list[Any], tag: Tag, name: str, known: set[str]) -> None:
    """Let each prefetched queryset say when it is read. Django puts this prefetch's
    queryset under one new key of every instance's cache; when it did not (the key was
    there already), every queryset of the caches not marked yet is marked."""
    use = Use(tag, name)
    added = [key for key in instances[0].__dict__.get(_CACHE, ()) if key not in known]
    try:
        if len(added) != 1:
            raise KeyError(added)
        # The common case: this prefetch's own querysets, new and unmarked (in C: a page
        # has hundreds).
        querysets = list(map(itemgetter(added[0]), map(attrgetter(_CACHE), instances)))
    except (AttributeError, KeyError):
        every = [q for i in instances for q in i.__dict__.get(_CACHE, {}).values()]
        querysets = [queryset for queryset in every if getattr(queryset, USE, False) is None]
    deque(map(setattr, querysets, repeat(USE), repeat(use)), maxlen=0)
