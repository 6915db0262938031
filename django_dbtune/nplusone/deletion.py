"""Deletion while a detection is open: the replacements of ``Collector.collect`` and
``Collector.delete``. A cascade delete loads related rows one parent at a time on purpose,
so nothing it runs is an N+1: it runs as if inside :func:`~django_dbtune.nplusone.pause`."""

from __future__ import annotations

from typing import Any

from django.db.models.deletion import Collector

from django_dbtune.nplusone.state import detection_now, pause

# Django's own, called by the replacements below (never the replacements themselves).
_django_collect = Collector.collect
_django_delete = Collector.delete


def collect(self: Collector, *args: Any, **kwargs: Any) -> Any:
    if detection_now() is None:
        return _django_collect(self, *args, **kwargs)
    with pause():
        return _django_collect(self, *args, **kwargs)


def delete(self: Collector, *args: Any, **kwargs: Any) -> Any:
    if detection_now() is None:
        return _django_delete(self, *args, **kwargs)
    with pause():
        return _django_delete(self, *args, **kwargs)
