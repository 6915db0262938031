"""Django 5.2 only: lazy loads recognised without fetch modes (Django 6.0 has none either,
and its support ends before 5.2's). Delete this module when 5.2 support ends, with the
lines that name it in :mod:`.patches`, :mod:`.origin` and :mod:`.evaluation`.

A lazy load is a queryset evaluated from inside a relation descriptor's ``__get__``
(:func:`.origin.query_init` notes the frame, :func:`.evaluation.fetch_all` runs it through
:func:`lazy_load`); a deferred field's load is a ``refresh_from_db(fields=[name])`` from
``DeferredAttribute.__get__`` (:func:`refresh_from_db` replaces Django's while detecting).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache
from types import CodeType, FrameType
from typing import Any

from django.apps import apps
from django.db.models import Model
from django.db.models.fields.related_descriptors import (
    ForwardManyToOneDescriptor,
    ReverseOneToOneDescriptor,
)
from django.db.models.query_utils import DeferredAttribute

from django_dbtune.nplusone.lazy_loads import describe_fetcher, load, tag_loaded
from django_dbtune.nplusone.state import TAG

# Django's own, called by the replacement below (never the replacement itself).
_django_refresh_from_db = Model.refresh_from_db


@cache
def descriptor_gets() -> frozenset[int]:
    """The ``__get__`` of every relation descriptor that loads lazily. A queryset evaluated
    a few frames below one of them is that descriptor's lazy load. As ids, like every set
    of code objects here: Python does not cache a code object's hash."""
    codes = {
        ForwardManyToOneDescriptor.__get__.__code__,
        ReverseOneToOneDescriptor.__get__.__code__,
    }
    if apps.is_installed("django.contrib.contenttypes"):
        from django.contrib.contenttypes import fields

        descriptor = getattr(fields, "GenericForeignKeyDescriptor", fields.GenericForeignKey)
        codes.add(descriptor.__dict__["__get__"].__code__)
    return frozenset(map(id, codes))


def lazy_load(queryset: Any, frame: FrameType, fetch_all: Callable[[Any], None]) -> bool:
    """Evaluate (with Django's ``fetch_all``) the queryset a relation descriptor built to
    load lazily (its ``__get__`` is ``frame``) as a load, when the instance is watched.
    False when it is not: an ordinary evaluation then."""
    names = frame.f_locals
    instance = names.get("instance")
    if not isinstance(instance, Model):
        return False
    tag = getattr(instance, TAG, None)
    if tag is None or not tag.watched or not tag.live():
        return False
    kind, name = describe_fetcher(names.get("self"))
    load(tag, instance, kind, name, lambda: fetch_all(queryset), frame.f_back)
    for row in queryset._result_cache or ():
        tag_loaded(tag, name, row)
    return True


_DEFERRED_GET: CodeType = DeferredAttribute.__get__.__code__


def refresh_from_db(self: Model, *args: Any, **kwargs: Any) -> None:
    """Replaces ``Model.refresh_from_db``: a deferred field read calls
    ``refresh_from_db(fields=[name])``."""
    tag = getattr(self, TAG, None)
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
        load(
            tag,
            self,
            "deferred",
            name,
            lambda: _django_refresh_from_db(self, *args, **kwargs),
            sys._getframe(1),
        )
        return
    _django_refresh_from_db(self, *args, **kwargs)


def _called_from(frame: FrameType | None, code: CodeType, depth: int = 3) -> bool:
    while frame is not None and depth > 0:
        if frame.f_code is code:
            return True
        frame = frame.f_back
        depth -= 1
    return False
