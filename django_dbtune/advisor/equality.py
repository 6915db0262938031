"""The columns a call compares for equality, as an index holds them: in which order, and
when the foreign key's own index is not enough."""

from __future__ import annotations

from django.db import models

from django_dbtune.advisor.code_scan import Usage


def equality_columns(usage: Usage) -> list[str]:
    """The columns a call compares for equality, in index order: those compared to a value
    the call passes (``owner=request.user``) first, then those compared to a constant
    (``status="Open"``, ``date_read=None``), which hold few distinct values; an index so
    ordered also serves the first ones alone."""
    ordered = sorted(usage.equality, key=lambda pair: pair[1] is not ...)
    return list(dict.fromkeys(name for name, _ in ordered))


def piles_up(usage: Usage, candidate_names: tuple[str, ...]) -> str | None:
    """The column compared to a constant when the call reads one parent's rows in one
    state (``owner=user, status="Open"``, ``recipient=user, date_read=None``): the foreign
    key's own index reads every row of that parent, and the rows in other states pile up
    (submitted baskets, read notifications). A state is a field of a few known values
    (choices, a boolean) or a null check; None otherwise."""
    meta = usage.model._meta
    first = candidate_names[0]
    if not isinstance(meta.get_field(first), models.ForeignKey):
        return None
    for name, value in usage.equality:
        if name == first or name not in candidate_names or value is ...:
            continue
        field = meta.get_field(name)
        if (
            value is None
            or getattr(field, "choices", None)
            or isinstance(field, models.BooleanField)
        ):
            return name
    return None
