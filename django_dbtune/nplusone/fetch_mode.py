"""Django 6.1's fetch-mode hook: lazy loads of forward relations, reverse one-to-ones,
generic foreign keys and deferred fields, announced by Django itself.

Querysets evaluated while a detection is open use :data:`DETECTING_FETCH_ONE`, which
records and then fetches exactly like ``FETCH_ONE``. Before 6.1 there are no fetch modes:
see :mod:`.django52`.
"""

from __future__ import annotations

from typing import Any

import django
from django.db.models import Model

from django_dbtune.nplusone.failures import give_up
from django_dbtune.nplusone.lazy_loads import describe_fetcher, load, loaded_by, tag_loaded
from django_dbtune.nplusone.state import TAG

FETCH_MODES = django.VERSION >= (6, 1)

if FETCH_MODES:
    from django.db.models import fetch_modes

    class DetectingFetchOne(fetch_modes.FetchMode):
        """``FETCH_ONE`` that tells the detector first. Only querysets evaluated inside a
        detection get it; it pickles as Django's own ``FETCH_ONE``."""

        __slots__ = ()

        def fetch(self, fetcher: Any, instance: Model) -> None:
            tag = getattr(instance, TAG, None)
            if tag is None or not tag.watched or not tag.live():
                fetcher.fetch_one(instance)
                return
            fetched = False

            def fetch_one() -> None:
                nonlocal fetched
                fetcher.fetch_one(instance)
                fetched = True

            try:
                kind, name = describe_fetcher(fetcher)
                # The line is looked for from past the caller, always the relation
                # descriptor's own __get__ (Django's), by depth: see find_trigger_above.
                load(tag, instance, kind, name, fetch_one, 2)
                tag_loaded(tag, name, loaded_by(fetcher, instance))
            except Exception as error:
                if not give_up(tag.group.detection, error):
                    raise
                if not fetched:
                    fetcher.fetch_one(instance)

        def __reduce__(self) -> tuple[Any, ...]:
            return (_django_fetch_one, ())

    DETECTING_FETCH_ONE: Any = DetectingFetchOne()

    def _django_fetch_one() -> Any:
        return fetch_modes.FETCH_ONE


def detecting(rows: list[Any], depth: int = 5) -> None:
    """Rows filled by someone else (the query cache) announce their lazy loads like the rows
    of a queryset evaluated inside the detection: they, and the related objects attached to
    them, get :data:`DETECTING_FETCH_ONE` where they have Django's ``FETCH_ONE``."""
    if not FETCH_MODES or depth == 0:
        return
    attached: list[Model] = []
    for row in rows:
        if not isinstance(row, Model):
            return
        if row._state.fetch_mode is fetch_modes.FETCH_ONE:
            row._state.fetch_mode = DETECTING_FETCH_ONE
        attached.extend(
            related for related in row._state.fields_cache.values() if isinstance(related, Model)
        )
    if attached:
        detecting(attached, depth - 1)


def fill_result_cache(queryset: Any) -> None:
    """Run the queryset (``QuerySet._fetch_all`` without the prefetch); on 6.1+ its rows
    announce their lazy loads to the detector while it runs, then the mode is Django's."""
    swapped = FETCH_MODES and queryset._fetch_mode is fetch_modes.FETCH_ONE
    if swapped:
        queryset._fetch_mode = DETECTING_FETCH_ONE
    try:
        queryset._result_cache = list(queryset._iterable_class(queryset))
    finally:
        if swapped:
            queryset._fetch_mode = fetch_modes.FETCH_ONE
