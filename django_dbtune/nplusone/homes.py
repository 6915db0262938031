"""Where an N+1 fix goes in the project's classes (or in a subclass of an installed one): the
view or ModelAdmin that already says
which queryset it uses, and what a ModelAdmin's changelist joins by itself (which a
``list_select_related`` fix must keep)."""

from __future__ import annotations

import inspect
import sys
from typing import Any

import django
from django.apps import apps
from django.db.models import Model
from django.db.models.constants import LOOKUP_SEP

from django_dbtune.nplusone.relations import relation_field
from django_dbtune.project import is_project_file


def fix_home(owner: type) -> tuple[type, str] | None:
    """Where the project already says which queryset ``owner`` uses: (class, "queryset")
    for the nearest ``queryset`` attribute, or (class, "get_queryset") for the nearest own
    ``get_queryset``, whichever ``owner``'s MRO meets first in the project; None when
    only Django or a library says."""
    for cls in owner.__mro__:
        names = {"get_queryset", "queryset"} & vars(cls).keys()
        if not names:
            continue
        module = sys.modules.get(cls.__module__)
        filename = getattr(module, "__file__", None)
        if filename is None or not is_project_file(filename):
            return None
        # A class with both: its get_queryset may build its own queryset.
        return (cls, "get_queryset" if "get_queryset" in names else "queryset")
    return None


def admin_joins(owner: type, model: type[Model], joins: list[str]) -> list[str]:
    """``list_select_related`` as it must read to keep what the changelist joins now and
    add ``joins``: setting it replaces the admin's own choice (``select_related()`` when
    ``list_display`` shows a relation), so the relations it shows are listed too."""
    current = getattr(owner, "list_select_related", False)
    names: list[str] = []
    shown = [
        name
        for name in getattr(owner, "list_display", ())
        if isinstance(name, str)
        and getattr(relation_field(model, name), "concrete", False)
        and relation_field(model, name).is_relation
    ]
    if isinstance(current, list | tuple):
        names.extend(current)
    elif current is True or (shown and django.VERSION < (6, 1)):
        # select_related() with no names: every non-null foreign key, and theirs, in depth.
        names.extend(bare_joins(model))
    else:
        names.extend(shown)  # Django 6.1+ joins exactly list_display's foreign keys
    names.extend(joins)
    unique = list(dict.fromkeys(names))
    return [n for n in unique if not any(o.startswith(n + LOOKUP_SEP) for o in unique)]


def bare_joins(model: type[Model], prefix: str = "", depth: int = 5) -> list[str]:
    """The paths ``select_related()`` with no names follows: non-null forward foreign keys
    and one-to-ones, recursively, as deep as Django goes (five levels)."""
    paths: list[str] = []
    if depth == 0:
        return paths
    for field in model._meta.concrete_fields:
        target = field.related_model
        if field.is_relation and not field.null and isinstance(target, type):
            path = prefix + field.name
            paths.append(path)
            paths.extend(bare_joins(target, path + LOOKUP_SEP, depth - 1))
    return paths


def is_model_admin(cls: type) -> bool:
    if not apps.is_installed("django.contrib.admin"):
        return False
    from django.contrib.admin import ModelAdmin

    return issubclass(cls, ModelAdmin)


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def in_owner(owner: type, model: type[Model], code: str) -> str:
    """``code`` (a change of a queryset) where it goes when Django builds the queryset for
    the project class ``owner``: in its ``queryset`` attribute or inside its own
    ``get_queryset``, or a new ``get_queryset`` or ``queryset`` when it has neither."""
    home = fix_home(owner)
    if home is not None and home[1] == "queryset":
        return f"{code} on the queryset attribute of {qualname(home[0])}"
    if home is not None:
        # Replacing the project's own get_queryset would drop what it does.
        return f"{code} on the queryset {qualname(home[0])}.get_queryset returns"
    if is_model_admin(owner):
        return (
            f"def get_queryset(self, request): return "
            f"super().get_queryset(request){code}  # on {qualname(owner)}"
        )
    return f"queryset = {model.__name__}.objects{code}  # on {qualname(owner)}"


def in_subclass(
    library: type, method: str, model: type[Model], code: str
) -> tuple[str, str] | None:
    """``code`` where it goes when an installed view builds the queryset (a CMS's own
    listing): in a subclass of it whose ``method`` (the one that built it) it overrides,
    which the project uses in its place; with the note that says so. A Django generic view
    used as it is (``ListView.as_view(model=Book)`` in a URLconf) takes the queryset in
    ``as_view()`` instead. None when the class has no such method to extend."""
    function = getattr(library, method, None)
    if not callable(function):
        return None
    try:
        parameters = list(inspect.signature(function).parameters.values())[1:]  # after self
    except (TypeError, ValueError):
        return None
    stars: dict[Any, str] = {
        inspect.Parameter.VAR_POSITIONAL: "*",
        inspect.Parameter.VAR_KEYWORD: "**",
    }
    names = ", ".join(f"{stars.get(p.kind, '')}{p.name}" for p in parameters)
    call = f"{method}({names})"
    text = (
        f"a subclass of {qualname(library)} whose {call} returns super().{call}{code}, "
        "used in its place"
    )
    if method == "get_queryset" and _reads_queryset_attribute(library):
        name = library.__name__
        text = (
            f"{name}.as_view(queryset={model.__name__}.objects{code}) where the project "
            f"calls {name}.as_view(), or {text}"
        )
    note = (
        f"No line or class of the project builds this queryset: {qualname(library)}, "
        "installed code, does. Subclass it in the project and use the subclass where the "
        "project uses it (its URL, router, viewset or admin registration)."
    )
    return text, note


def _reads_queryset_attribute(view: type) -> bool:
    """Whether ``view`` builds its queryset from a ``queryset`` attribute that
    ``as_view(queryset=...)`` sets: Django's generic views, as Django defines them."""
    from django.views.generic.detail import SingleObjectMixin
    from django.views.generic.list import MultipleObjectMixin

    own = getattr(view, "get_queryset", None)
    return any(
        issubclass(view, mixin) and own is mixin.get_queryset
        for mixin in (MultipleObjectMixin, SingleObjectMixin)
    )


BUILT_IN_TEMPLATE = (
    "The template builds this queryset from a related manager, past what a prefetch of the "
    "relation serves: build it in the view with this change and pass it to the template."
)
