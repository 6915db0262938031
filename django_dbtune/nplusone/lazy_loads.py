"""Running one lazy load and remembering its queries, and finding the line behind it.

How a lazy load is recognised depends on the Django version (:mod:`.fetch_mode` on 6.1+,
:mod:`.django52` before); what happens then is the same, and lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from types import FrameType
from typing import Any

from django.db.models import Model
from django.db.models.fields.related_descriptors import (
    ForwardManyToOneDescriptor,
    ReverseOneToOneDescriptor,
)
from django.db.models.query_utils import DeferredAttribute

from django_dbtune.capture import attribution
from django_dbtune.nplusone.state import Detection, Load, LoadKind, Site, Tag, tag_one


def load(
    tag: Tag,
    instance: Model,
    kind: LoadKind,
    name: str,
    call: Callable[[], Any],
    frame: FrameType | int | None,
) -> Any:
    """Run one lazy load of ``name`` on ``instance`` (asked for by ``frame``, or by the
    frame that many levels up from the caller) and remember its queries."""
    detection = tag.group.detection
    # trigger_site(), inline: once per load
    if isinstance(frame, int):
        found = detection.finder.find_trigger_above(frame + 1)  # this function is one more
    else:
        found = detection.finder.find_trigger(frame)
    if found is None:
        return quietly(detection, call)
    filename, lineno, function = found
    if filename is None or lineno is None or function is None:
        site = _UNKNOWN_SITE
    else:
        site = (filename, lineno, function)
    start = len(detection.log.records)
    detection.busy += 1
    previous = attribution.site
    attribution.site = site  # the line is known: capture need not walk the stack again
    try:
        result = call()
    finally:
        attribution.site = previous
        detection.busy -= 1
    end = len(detection.log.records)
    if end > start:
        shown = None if site is _UNKNOWN_SITE else site  # site_or_none(), inline
        loads = detection.loads
        last = loads[-1] if loads else None
        if (
            last is not None
            and last.end == start
            and last.tag is tag
            and last.name == name
            and last.kind == kind
            and last.model is type(instance)
            and last.site == shown
        ):
            # The row before's load of the same relation from the same line, and nothing
            # in between: one loop's N+1, kept as one load of several rows.
            last.end = end
            last.rows += 1
        else:
            loads.append(Load(kind, tag, type(instance), name, shown, start, end))
    return result


def tag_loaded(tag: Tag, name: str, target: Any) -> None:
    """Watch what a lazy load brought in: its own relations are the next level."""
    if isinstance(target, Model):
        tag_one(target, tag.through(name))


def quietly(detection: Detection, call: Callable[[], Any]) -> Any:
    """Run queries that are nobody's N+1 (a tool's own rendering)."""
    start = len(detection.log.records)
    try:
        return call()
    finally:
        detection.quiet.append((start, len(detection.log.records)))


def describe_fetcher(fetcher: Any) -> tuple[LoadKind, str]:
    """What a fetcher (a fetch-mode fetcher, or a descriptor) loads: (kind, lookup name)."""
    if isinstance(fetcher, ForwardManyToOneDescriptor):
        return "forward", fetcher.field.name
    if isinstance(fetcher, ReverseOneToOneDescriptor):
        return "reverse_one", fetcher.related.field.related_query_name()
    if isinstance(fetcher, DeferredAttribute):
        return "deferred", fetcher.field.name
    return "generic_fk", getattr(fetcher, "field", fetcher).name  # 5.2: the field itself


def loaded_by(fetcher: Any, instance: Model) -> Any:
    """The object a relation fetcher just loaded onto ``instance`` (None for a field)."""
    if isinstance(fetcher, ReverseOneToOneDescriptor):
        return fetcher.related.get_cached_value(instance, None)
    if isinstance(fetcher, DeferredAttribute):
        return None
    return getattr(fetcher, "field", fetcher).get_cached_value(instance, None)


_UNKNOWN_SITE: Site = ("", 0, "")


def trigger_site(frame: FrameType | None, detection: Detection) -> Site | None:
    """The line (or template line) behind a load; None when django-debug-toolbar's own
    rendering caused it, which is not the project's N+1."""
    found = detection.finder.find_trigger(frame)
    if found is None:
        return None
    filename, lineno, function = found
    if filename is None or lineno is None or function is None:
        return _UNKNOWN_SITE
    return filename, lineno, function


def site_or_none(site: Site) -> Site | None:
    """``site`` as a finding shows it: None when the line could not be found."""
    return None if site is _UNKNOWN_SITE else site
