"""Relations read past a generic foreign key (``ip.assigned_object.device``): no join can
cross it, and a plain ``prefetch_related("assigned_object__device")`` raises on a row of a
type that has no ``device``. ``GenericPrefetch`` with a queryset for one type joins the
relation for that type's rows only; rows of other types are prefetched as before."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models.constants import LOOKUP_SEP

from django_dbtune.nplusone.relations import relation_field

if TYPE_CHECKING:
    from django.db.models import Model

    from django_dbtune.nplusone.state import Load

Generic = tuple[str, str, str]
"""``(lookup, "app_label.Model", relation)``, as ``FixTarget.generic_prefetch`` holds it."""


def generic_join(load: Load, model: type[Model]) -> tuple[str, str, Generic] | None:
    """(code, advice, the load as data) for a relation ``load`` read right after one
    generic foreign key of ``model``'s rows; None for anything deeper."""
    lookup = load.tag.prefix.removesuffix(LOOKUP_SEP)
    if not lookup or through_generic(model, lookup) or load.tag.many:
        return None
    generic = (lookup, load.model._meta.label, load.name)
    code = f".prefetch_related({generic_code(generic)})"
    advice = (
        f"select_related cannot follow a generic foreign key; GenericPrefetch joins "
        f"{load.name} for its {load.model.__name__} rows, and rows of other types are "
        "prefetched as before (from django.contrib.contenttypes.prefetch import "
        "GenericPrefetch)."
    )
    return code, advice, generic


def generic_code(generic: Generic) -> str:
    lookup, label, relation = generic
    model = label.rsplit(".", 1)[1]
    return f'GenericPrefetch("{lookup}", [{model}.objects.select_related("{relation}")])'


def generic_prefetch(lookup: str, label: str, relation: str) -> Any:
    """The ``GenericPrefetch`` object itself, for a proof."""
    from django.apps import apps
    from django.contrib.contenttypes.prefetch import GenericPrefetch

    model = apps.get_model(label)
    return GenericPrefetch(lookup, [model._default_manager.select_related(relation)])


def through_generic(model: type[Model], path: str) -> bool:
    """The path crosses a generic foreign key before its last step."""
    from django.contrib.contenttypes.fields import GenericForeignKey

    for name in path.split(LOOKUP_SEP)[:-1]:
        field = relation_field(model, name)
        if field is None or isinstance(field, GenericForeignKey):
            return field is not None
        target = getattr(field, "related_model", None)
        if not isinstance(target, type):
            return False
        model = target
    return False
