"""Relations read past a generic foreign key (``ip.assigned_object.device``): no join can
cross it, and a plain ``prefetch_related("assigned_object__device")`` raises on a row of a
type that has no ``device``. ``GenericPrefetch`` with a queryset for one type joins the
relation for that type's rows only; rows of other types are prefetched as before."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from django.db.models.constants import LOOKUP_SEP

from django_dbtune.nplusone.relations import relation_field

if TYPE_CHECKING:
    from django.db.models import Model

    from django_dbtune.nplusone.state import Load

T = TypeVar("T")

Generic = tuple[str, str, str, str]
"""``(lookup, "app_label.Model", relation, "select_related" or "prefetch_related")``, as
``FixTarget.generic_prefetch`` holds it."""


def generic_join(load: Load, model: type[Model]) -> tuple[str, Generic] | None:
    """(advice, the load as data) for a relation ``load`` read right after one generic
    foreign key of ``model``'s rows; None for anything deeper."""
    lookup = load.tag.prefix.removesuffix(LOOKUP_SEP)
    if not lookup or through_generic(model, lookup) or load.tag.many:
        return None
    method = "select_related" if load.kind in ("forward", "reverse_one") else "prefetch_related"
    generic = (lookup, load.model._meta.label, load.name, method)
    advice = (
        f"No eager load crosses a generic foreign key for one type only; GenericPrefetch "
        f"loads {load.name} for its {load.model.__name__} rows, and rows of other types are "
        "prefetched as before (from django.contrib.contenttypes.prefetch import "
        f'GenericPrefetch). Put it before any other prefetch of "{lookup}" on this '
        "queryset: Django skips a GenericPrefetch of a lookup it has prefetched already."
    )
    return advice, generic


def generic_calls(generics: Iterable[Generic]) -> list[str]:
    """One ``GenericPrefetch(...)`` per lookup, with one queryset per type (Django takes
    one ``GenericPrefetch`` of a lookup and skips any later one)."""

    def queryset(label: str, loads: dict[str, list[str]]) -> str:
        calls = "".join(
            f".{method}({', '.join(f'{chr(34)}{r}{chr(34)}' for r in relations)})"
            for method, relations in loads.items()
        )
        return f"{label.rsplit('.', 1)[1]}.objects{calls}"

    grouped = _grouped(generics, queryset)
    return [
        f'GenericPrefetch("{lookup}", [{", ".join(sets)}])' for lookup, sets in grouped.items()
    ]


def generic_prefetches(generics: Iterable[Generic]) -> list[Any]:
    """The ``GenericPrefetch`` objects themselves, for a proof."""
    from django.apps import apps
    from django.contrib.contenttypes.prefetch import GenericPrefetch

    def queryset(label: str, loads: dict[str, list[str]]) -> Any:
        built = apps.get_model(label)._default_manager.all()
        for method, relations in loads.items():
            built = getattr(built, method)(*relations)
        return built

    return [
        GenericPrefetch(lookup, querysets)
        for lookup, querysets in _grouped(generics, queryset).items()
    ]


def _grouped(
    generics: Iterable[Generic], queryset: Callable[[str, dict[str, list[str]]], T]
) -> dict[str, list[T]]:
    """``{lookup: [a queryset per type]}``, each type's loads grouped by method."""
    loads: dict[str, dict[str, dict[str, list[str]]]] = {}
    for lookup, label, relation, method in generics:
        named = loads.setdefault(lookup, {}).setdefault(label, {}).setdefault(method, [])
        if relation not in named:
            named.append(relation)
    return {
        lookup: [queryset(label, by_method) for label, by_method in by_type.items()]
        for lookup, by_type in loads.items()
    }


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
