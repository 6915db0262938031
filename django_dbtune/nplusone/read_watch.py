"""Noting which eager loads are read, without wrapping any attribute read for good.

While a queryset's eager load of a single-valued relation has not been read, that
relation's descriptor (the ``ForwardManyToOneDescriptor`` in ``Book.__dict__["author"]``)
is of a :class:`ReadWatch` subclass of its own class, which notes the first read and then
turns the descriptor back into what it was. Only the descriptor's ``__class__`` changes: no
model class is touched, so Python keeps what it cached about the models (changing a class
drops that for the class and its subclasses, and costs every later attribute read until it
is cached again). Many-valued relations need none: a prefetched queryset says when it is
read, see :func:`.evaluation.mark_use`.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db.models import Model

from django_dbtune.nplusone.failures import give_up
from django_dbtune.nplusone.relations import descriptor_at
from django_dbtune.nplusone.state import TAG, Detection, Group

# Guards every watch's ``waiting`` set and the table of watches: detections in other
# threads add and release their reads on the same watches.
_lock = threading.Lock()


class Watch:
    """What one watched descriptor waits for."""

    __slots__ = ("descriptor", "lookup", "original", "waiting")

    def __init__(self, descriptor: Any, lookup: str) -> None:
        self.descriptor = descriptor
        self.original: type = type(descriptor)
        self.lookup = lookup
        """The relation as a lookup segment (a reverse one-to-one's query name)."""
        self.waiting: set[tuple[Group, str]] = set()
        """(queryset, path) pairs whose read has not been seen."""


_watches: dict[int, Watch] = {}
"""The watched descriptors, by ``id`` (a descriptor lives as long as its model class)."""


class ReadWatch:
    """Mixed in before a relation descriptor's own class while a queryset's eager load of
    that relation has not been read yet.

    It only needs one read per queryset: the first read of each marks the relation used,
    and when no queryset waits any more the descriptor gets its own class back. So a page
    of 200 rows pays for one read, not 200, and no instance carries anything extra.
    """

    def __get__(self, instance: Model | None, cls: Any = None) -> Any:
        # Django's own __get__, taken first: the first read gives the descriptor its own
        # class back (here, or in another thread), and super() fails on it then.
        kind = type(self)
        original = _originals.get(kind, kind)
        watch = _watches.get(id(self))
        if instance is not None and watch is not None:
            tag = getattr(instance, TAG, None)
            if tag is not None and tag.live():
                try:
                    tag.read(watch.lookup)
                    key = (tag.group, tag.prefix + watch.lookup)
                    if key in watch.waiting:
                        with _lock:
                            watch.waiting.discard(key)
                            if not watch.waiting:
                                _restore(watch)
                except Exception as error:
                    if not give_up(tag.group.detection, error):
                        raise
        return original.__get__(self, instance, cls)  # type: ignore[attr-defined]


_watching_classes: dict[type, type] = {}
_originals: dict[type, type] = {}
"""Each watching class's descriptor class."""


def _watching(cls: type) -> type:
    """``cls`` with :class:`ReadWatch` in front, made once per descriptor class."""
    watching = _watching_classes.get(cls)
    if watching is None:
        # No __slots__ here or in ReadWatch: the descriptor's layout must stay its class's.
        watching = _watching_classes[cls] = type(f"Watching{cls.__name__}", (ReadWatch, cls), {})
        _originals[watching] = cls
    return watching


def watch_reads(group: Group) -> None:
    """Put a read watch on every single-valued relation the group loaded eagerly."""
    with _lock:
        for path in (*group.select_related, *group.prefetch_related):
            step = descriptor_at(group.model, path)
            if step is None:
                continue  # many-valued: a prefetched queryset says when it is read
            owner, name, lookup = step
            descriptor = owner.__dict__[name]
            watch = _watches.get(id(descriptor))
            if watch is None:
                watch = _watches[id(descriptor)] = Watch(descriptor, lookup)
                descriptor.__class__ = _watching(watch.original)
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
    """Give every watched descriptor its own class back (the last detection closed)."""
    with _lock:
        for watch in list(_watches.values()):
            _restore(watch)


def _restore(watch: Watch) -> None:
    if _watches.get(id(watch.descriptor)) is watch:
        del _watches[id(watch.descriptor)]
        watch.descriptor.__class__ = watch.original
