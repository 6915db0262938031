"""Model instances as plain data in a cache entry, restored cheaply.

Pickling a model instance the usual way goes through ``Model.__reduce__``: a copy of its
state, a Django version check and a model lookup per instance on the way back, which makes
restoring 50 rows with their ``select_related`` objects cost as much as a database query.
Here each instance is (class, attributes, state, related objects): plain tuples and dicts
that pickle in C, rebuilt with ``__new__`` and two dict assignments.
"""

from __future__ import annotations

import weakref
from typing import Any

from django.db.models import Model
from django.db.models.base import ModelState


class PackedRows:
    """A queryset's model instances as plain data (``rows()`` makes instances again)."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __getstate__(self) -> list[Any]:
        return self.items

    def __setstate__(self, items: list[Any]) -> None:
        self.items = items

    def rows(self, fetch_mode: Any = None) -> list[Model]:
        rows = [_unpack(item) for item in self.items]
        if fetch_mode is not None and getattr(fetch_mode, "track_peers", False):
            # Django 6.1's FETCH_PEERS: rows fetched together load a relation together.
            peers = [weakref.ref(row) for row in rows]
            for row in rows:
                row._state.peers = peers
        return rows


def pack(rows: list[Any]) -> Any:
    """``rows`` as a ``PackedRows`` when they are plain model instances, else as they are."""
    try:
        return PackedRows([_pack(row) for row in rows])
    except _Unpackable:
        return rows


class _Unpackable(Exception):
    pass


def _pack(instance: Any) -> tuple[Any, ...]:
    if not isinstance(instance, Model):
        raise _Unpackable
    attributes = instance.__dict__.copy()
    state = attributes.pop("_state").__dict__.copy()
    for value in attributes.values():
        if isinstance(value, memoryview):
            raise _Unpackable  # Django's own pickling converts these; leave it to it
    state.pop("peers", None)  # weak references: rebuilt on the way back
    related = state.pop("fields_cache", None)
    if related:
        related = {
            name: None if value is None else _pack(value) for name, value in related.items()
        }
    return (instance.__class__, attributes, state, related)


def _unpack(item: tuple[Any, ...]) -> Model:
    cls, attributes, state_attributes, related = item
    instance: Model = cls.__new__(cls)
    state = ModelState.__new__(ModelState)
    state.__dict__ = state_attributes
    if related:
        state.fields_cache = {
            name: None if value is None else _unpack(value) for name, value in related.items()
        }
    attributes["_state"] = state
    instance.__dict__ = attributes
    return instance


def unpack(value: Any, fetch_mode: Any = None) -> Any:
    return value.rows(fetch_mode) if isinstance(value, PackedRows) else value
