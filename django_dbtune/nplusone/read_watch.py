"""Noting which eager loads are read, without wrapping any attribute read for good.

While a queryset's eager load of a single-valued relation has not been read, that
relation's descriptor on its model class is a :class:`ReadWatch`, which puts Django's
descriptor back after the first read. (Many-valued relations need none: a prefetched
queryset says when it is read, see :func:`.evaluation.mark_use`.)
"""

from __future__ import annotations

import threading
from typing import Any

from django.db.models import Model

from django_dbtune.nplusone.relations import descriptor_at
from django_dbtune.nplusone.state import TAG, Detection, Group

# Guards every watch's ``waiting`` set and the table of watches: detections in other
# threads add and release their reads on the same watches.
_lock = threading.Lock()


class ReadWatch:
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
                    with _lock:
                        self.waiting.discard(key)
                        if not self.waiting:
                            _restore(self)
        return self.original.__get__(instance, cls)

    def __set__(self, instance: Model, value: Any) -> None:
        self.original.__set__(instance, value)


_watches: dict[tuple[type[Model], str], ReadWatch] = {}


def watch_reads(group: Group) -> None:
    """Put a read watch on every single-valued relation the group loaded eagerly."""
    with _lock:
        for path in (*group.select_related, *group.prefetch_related):
            step = descriptor_at(group.model, path)
            if step is None:
                continue  # many-valued: a prefetched queryset says when it is read
            owner, name, lookup = step
            watch = _watches.get((owner, name))
            if watch is None:
                original = owner.__dict__[name]
                watch = _watches[(owner, name)] = ReadWatch(owner, name, original, lookup)
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


def restore_all() -> None:
    """Put Django's descriptor back on every class (the last detection closed)."""
    with _lock:
        for watch in list(_watches.values()):
            _restore(watch)


def _restore(watch: ReadWatch) -> None:
    if _watches.get((watch.owner, watch.name)) is watch:
        del _watches[(watch.owner, watch.name)]
        setattr(watch.owner, watch.name, watch.original)
