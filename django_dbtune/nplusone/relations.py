"""What the detector needs to know about a model's relations, cached per model."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db.models import Model
from django.db.models.constants import LOOKUP_SEP


def relation_field(model: type[Model], name: str) -> Any:
    """The field or relation a lookup segment names on ``model``, the default reverse
    accessors included (``review_set``, which ``_meta.get_field`` knows only as ``review``);
    None when it names neither (a ``to_attr``, a property)."""
    try:
        return model._meta.get_field(name)
    except Exception:
        for rel in model._meta.related_objects:
            if rel.get_accessor_name() == name:
                return rel
        return None


@cache
def query_path(model: type[Model], path: str) -> str:
    """``path`` as a query spells it (``Count``, ``filter``): a default reverse accessor
    (``review_set``) becomes the name queries know it by (``review``); other names stay."""
    names = []
    owner: Any = model
    for name in path.split(LOOKUP_SEP):
        field = relation_field(owner, name) if isinstance(owner, type) else None
        if field is not None and field.auto_created and not field.concrete:
            name = field.name  # a reverse relation: its query name
        names.append(name)
        owner = getattr(field, "related_model", None)
    return LOOKUP_SEP.join(names)


@cache
def descriptor_at(model: type[Model], path: str) -> tuple[type[Model], str, str] | None:
    """(class defining the descriptor, its attribute name, lookup name) of the last step
    of ``path`` from ``model``, when that step is a single-valued relation."""
    owner: Any = model
    names = path.split(LOOKUP_SEP)
    for i, name in enumerate(names):
        field = relation_field(owner, name)
        if field is None:  # a to_attr prefetch or a name Django resolves itself
            return None
        last = i == len(names) - 1
        if last:
            if field.many_to_many or field.one_to_many:
                return None
            attribute = field.name if field.concrete or field.many_to_one else None
            if attribute is None:  # a reverse one-to-one: read through its accessor
                attribute = field.get_accessor_name()
            defining = next((k for k in owner.__mro__ if attribute in vars(k)), None)
            return (defining, attribute, name) if defining is not None else None
        owner = field.related_model
        if not isinstance(owner, type):
            return None
    return None


@cache
def cache_key(model: type[Model], name: str) -> str:
    """The key select_related stores a relation under in ``_state.fields_cache``."""
    field = relation_field(model, name)
    return name if field is None else str(getattr(field, "cache_name", name))


@cache
def _many_relations(
    owner: type[Model], target: type[Model]
) -> tuple[tuple[str, str | None, Any], ...]:
    """Every many-valued relation from ``owner`` to ``target``: (accessor, the name of the
    way back as ``target``'s queries spell it, the field that tells them apart)."""
    concrete = target._meta.concrete_model
    found: list[tuple[str, str | None, Any]] = []
    for rel in owner._meta.related_objects:
        if (rel.one_to_many or rel.many_to_many) and _same(rel.related_model, concrete):
            found.append((rel.get_accessor_name() or rel.name, rel.field.name, rel.field))
    for field in owner._meta.many_to_many:
        if _same(field.related_model, concrete):
            found.append((field.name, field.related_query_name(), field))
    for field in owner._meta.private_fields:
        if getattr(field, "one_to_many", False) and _same(field.related_model, concrete):
            found.append((field.name, None, field))
    return tuple(found)


def _same(model: Any, concrete: Any) -> bool:
    meta = getattr(model, "_meta", None)
    return meta is not None and meta.concrete_model is concrete


def many_relation(
    owner: type[Model],
    target: type[Model],
    queryset: Any = None,
    back: str | None = None,
) -> tuple[str, str | None] | None:
    """Which of ``owner``'s many-valued relations to ``target`` a per-row query reads:
    (accessor, the way back as ``target``'s queries name it)."""
    candidates = _many_relations(owner, target)
    if not candidates:
        return None
    if len(candidates) > 1:
        known = queryset._known_related_objects if queryset is not None else {}
        deferred = queryset._deferred_filter if queryset is not None else None
        keys = {key.split(LOOKUP_SEP, 1)[0] for key in deferred[2]} if deferred else set()
        if back:
            keys.add(back)
        for name, way_back, field in candidates:
            if field in known or (way_back and way_back in keys):
                return name, way_back
    name, way_back, _ = candidates[0]
    return name, way_back
