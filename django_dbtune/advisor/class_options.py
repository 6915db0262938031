"""What a view or filter set class declares about its model's queries, read from its syntax:
a list view's ``model = Model`` (Django lists the rows, sorted), and Django REST framework's
``filterset_fields`` and ``ordering_fields``. The code scan (``queryset_chains``) finds the
class's model; this module turns its options into ``Usage``s."""

from __future__ import annotations

import ast

from django.db import models

from django_dbtune.advisor.code_scan import Usage, resolve_path
from django_dbtune.advisor.syntax import class_assignment, string_items

LIST_VIEWS = ("ListView", "ListAPIView", "ListCreateAPIView", "ModelViewSet")
"""Classes whose ``model = Model`` lists the model's rows (Django's and DRF's generic
views), by the end of their name."""


def class_option_usages(
    node: ast.ClassDef, model: type[models.Model], file: str, lines: list[str]
) -> list[Usage]:
    """The usages the options of a class whose model is ``model`` declare."""
    found = []
    listed = _list_view(node, model, file, lines)
    if listed is not None:
        found.append(listed)
    found.extend(_api_options(node, model, file, lines))
    return found


def _api_options(
    node: ast.ClassDef, model: type[models.Model], file: str, lines: list[str]
) -> list[Usage]:
    """Django REST framework views and filter sets: ``filterset_fields`` and
    ``ordering_fields`` name fields API clients filter and sort by, in any combination, so
    each is a candidate of its own."""
    found = []
    for option, target in (("filterset_fields", "single"), ("ordering_fields", "sort")):
        assignment = class_assignment(node, option)
        if assignment is None:
            continue
        for name in string_items(assignment.value):
            if name == "__all__" or (resolved := resolve_path(model, name.split("__"))) is None:
                continue
            line = assignment.lineno
            usage = Usage(resolved[0], file, line, lines[line - 1].strip())
            usage.explicit_sort = True
            if target == "single":
                usage.single.append(resolved[1])
            else:
                usage.sort.append(resolved[1])
            found.append(usage)
    return found


def _list_view(
    node: ast.ClassDef, model: type[models.Model], file: str, lines: list[str]
) -> Usage | None:
    """A list view declared with ``model = Model`` (no ``queryset``): Django lists
    ``Model.objects.all()``, sorted by the view's ``ordering`` or the model's
    ``Meta.ordering``, a page at a time."""
    declared = class_assignment(node, "model")
    bases = {getattr(base, "attr", getattr(base, "id", "")) for base in node.bases}
    if declared is None or class_assignment(node, "queryset") is not None:
        return None
    if not any(name.endswith(LIST_VIEWS) for name in bases):
        return None
    line = declared.lineno
    usage = Usage(model, file, line, lines[line - 1].strip(), list_view=True)
    ordering = class_assignment(node, "ordering")
    if ordering is not None:
        usage.explicit_sort = True
        usage.sort = [name for name in string_items(ordering.value) if "__" not in name]
    return usage
