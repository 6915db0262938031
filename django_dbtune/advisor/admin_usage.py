"""What the Django admin asks of the database: list_filter, search_fields, ordering and
date_hierarchy of each registered ModelAdmin, read from the admin site's registry."""

from __future__ import annotations

from collections.abc import Iterable

from django.apps import apps
from django.db import models
from django.db.models.constants import LOOKUP_SEP

from django_dbtune.advisor.code_scan import Usage, resolve_path
from django_dbtune.advisor.source import attribute_evidence, class_evidence
from django_dbtune.lookups import is_lookup, use_of


def admin_usages(app_labels: Iterable[str]) -> list[Usage]:
    if not apps.is_installed("django.contrib.admin"):
        return []
    from django.contrib import admin

    labels = set(app_labels)
    usages: list[Usage] = []
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in labels:
            continue
        klass = type(model_admin)
        for list_filter in model_admin.list_filter:
            name = list_filter[0] if isinstance(list_filter, list | tuple) else list_filter
            if isinstance(name, str) and (found := _usage(model, klass, "list_filter", name)):
                found[0].equality.append((found[1], ...))
                usages.append(found[0])
        for search in model_admin.search_fields:
            path, lookup = _search_lookup(search)
            if use_of(lookup) is None:
                continue  # "^" and "=" compare UPPER(column), "@" is full text: no B-tree
            if found := _usage(model, klass, "search_fields", path):
                found[0].add(found[1], lookup)
                usages.append(found[0])
        if not model_admin.ordering and model._meta.ordering:
            # The changelist sorts by the model's Meta.ordering when the admin sets none.
            found = _usage(model, klass, "list_display", model._meta.pk.name)
            if found is not None:
                found[0].explicit_sort = False
                found[0].list_view = True
                usages.append(found[0])
        for order in model_admin.ordering or ():
            # Sorting by a related model's column goes through a join no index here serves.
            if (
                isinstance(order, str)
                and "__" not in order
                and (found := _usage(model, klass, "ordering", order.lstrip("-")))
            ):
                found[0].sort.append(order)
                usages.append(found[0])
        if model_admin.date_hierarchy and (
            found := _usage(model, klass, "date_hierarchy", model_admin.date_hierarchy)
        ):
            found[0].ranges.append(found[1])
            usages.append(found[0])
    return usages


def _search_lookup(search: str) -> tuple[str, str]:
    """The field path and lookup of one ``search_fields`` entry, as the admin reads it: a
    prefix (``^`` istartswith, ``=`` iexact, ``@`` full-text search), or a lookup named at
    the end (``"code__exact"``), else icontains."""
    lookup = {"^": "istartswith", "=": "iexact", "@": "search"}.get(search[:1])
    if lookup:
        return search[1:], lookup
    path, _, last = search.rpartition(LOOKUP_SEP)
    if path and is_lookup(last):
        return path, last
    return search, "icontains"


def _usage(
    model: type[models.Model], klass: type, option: str, path: str
) -> tuple[Usage, str] | None:
    """A usage of the field ``path`` leads to, at the line that sets ``option``."""
    resolved = resolve_path(model, path.split("__"))
    if resolved is None:
        return None
    # An option no class of the project's sets (the changelist's sort by Meta.ordering):
    # the admin class, else the model's ordering.
    evidence = (
        attribute_evidence(klass, option)
        or class_evidence(klass)
        or attribute_evidence(model, "ordering")
    )
    usage = Usage(
        resolved[0],
        evidence.file if evidence else klass.__module__,
        evidence.line if evidence else 0,
        evidence.code if evidence else f"{klass.__name__}.{option}",
        explicit_sort=True,
        admin=True,
    )
    return usage, resolved[1]
