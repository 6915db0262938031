"""From what a detection saw to findings: which relation, how often, where, and the fix."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable

import django
from django.apps import apps
from django.db.models import Model
from django.db.models.constants import LOOKUP_SEP

from django_dbtune.call_sites import relative_path
from django_dbtune.findings import NPlusOneFinding
from django_dbtune.nplusone.hand_written import per_row_queries
from django_dbtune.nplusone.relations import query_path, relation_field
from django_dbtune.nplusone.state import Detection, Group, Load, Site
from django_dbtune.project import is_project_file


def findings(
    detection: Detection, threshold: int = 2, unused: bool = True, url: str | None = None
) -> list[NPlusOneFinding]:
    found = _lazy_loads(detection, threshold, url)
    found += per_row_queries(detection, threshold, url)
    if unused:
        found += _unused_eager_loads(detection, url)
    return found


def site_text(site: Site | None) -> str | None:
    if site is None:
        return None
    file, line, function = site
    file = relative_path(file)
    return f"{file}:{line}" if function == "template" else f"{file}:{line} in {function}"


# --- N+1 through relations -------------------------------------------------------------------


def _lazy_loads(detection: Detection, threshold: int, url: str | None) -> list[NPlusOneFinding]:
    grouped: dict[tuple[object, ...], list[Load]] = defaultdict(list)
    for load in detection.loads:
        group = load.tag.group
        if load.site is None and not group.from_project:
            continue  # Django's own code, all the way: nothing in the project to change
        path = load.tag.prefix + load.name
        grouped[(load.kind, load.model, path, load.site, group.site or group.owner)].append(load)
    repeated = [loads for loads in grouped.values() if len(loads) >= threshold]
    # Every join one queryset lacks, so that a fix placed in one attribute (an admin's
    # list_select_related) names them all: applied one by one, one-item fixes undo each other.
    joins: dict[int, list[str]] = defaultdict(list)
    for loads in repeated:
        first = loads[0]
        if first.kind in ("forward", "reverse_one") and not first.tag.many:
            joins[id(first.tag.group)].append(first.tag.prefix + first.name)
    found = []
    for loads in repeated:
        first = loads[0]
        group = first.tag.group
        path = first.tag.prefix + first.name
        records = detection.log.records
        fix, advice = _fix(first, path, group, joins.get(id(group), [path]))
        found.append(
            NPlusOneFinding(
                kind="n_plus_one",
                relation=f"{first.model._meta.label}.{first.name}",
                count=sum(load.end - load.start for load in loads),
                call_site=site_text(first.site),
                queryset_site=_queryset_site(group),
                fix=fix,
                database=records[first.start].alias,
                sample_sql=records[first.start].sql,
                model=group.model._meta.label,
                path=path,
                advice=advice,
                url=url,
            )
        )
    return found


def _fix(load: Load, path: str, group: Group, joins: list[str]) -> tuple[str, str | None]:
    """The change as code, and a note when the code alone does not say enough."""
    many = load.tag.many
    name = load.name
    related = load.related_model.__name__ if load.related_model else "Related"
    advice = None
    if load.kind in ("forward", "reverse_one"):
        code = f'.prefetch_related("{path}")' if many else f'.select_related("{path}")'
    elif load.kind == "generic_fk":
        code = f'.prefetch_related("{path}")'
        advice = "A generic foreign key cannot be joined; prefetch_related loads it per type."
    elif load.kind == "deferred":
        defer = group.deferred[1] if group.deferred else True
        code = f'remove "{path}" from .defer(...)' if defer else f'add "{path}" to .only(...)'
    elif load.kind == "count":
        code = f'.annotate({name}_count=Count("{query_path(group.model, path)}"))'
        advice = f"Then read obj.{name}_count instead of calling .{name}.count() per row."
    elif load.kind == "exists":
        back = load.related_query_name or "<field>"
        code = f'.annotate(has_{name}=Exists({related}.objects.filter({back}=OuterRef("pk"))))'
        advice = f"Then read obj.has_{name} instead of calling .{name}.exists() per row."
    elif load.kind == "aggregate":
        over = query_path(group.model, path)
        code = f'.annotate(...) over "{over}" instead of .aggregate() per row'
    elif load.sliced or load.filtered:
        code = (
            f'.prefetch_related(Prefetch("{path}", '
            f'queryset={related}.objects.filter(...), to_attr="{name}_list"))'
        )
        advice = (
            f"Then read obj.{name}_list: calling .filter()/.first() on the related manager "
            "runs a new query per row, even when it was prefetched."
        )
    else:
        code = f'.prefetch_related("{path}")'
        if load.kind == "prefetch":
            advice = "Instead of prefetch_related_objects() once per row."
        elif load.reshaped:
            advice = (
                f"Then take the values from the rows of obj.{name}.all(): .values(), "
                ".values_list() or django-taggit's names() on a related manager runs a new "
                "query per row, even when it was prefetched."
            )
    return _placed(code, group, path, advice, joins)


def _placed(
    code: str, group: Group, path: str, advice: str | None, joins: list[str]
) -> tuple[str, str | None]:
    """Where the fix goes when Django, not the project, builds the queryset."""
    owner = group.owner
    if owner is None or not code.startswith("."):
        return code, advice
    model = group.model.__name__
    admin = _is_model_admin(owner)
    if admin and code.startswith(".select_related("):
        names = [f'"{name}"' for name in _admin_joins(owner, group.model, joins)]
        listed = f"{names[0]}," if len(names) == 1 else ", ".join(names)
        note = _nullable_note(group.model, path)
        return f"list_select_related = ({listed}) on {_qualname(owner)}", _join(advice, note)
    overridden = _own_get_queryset(owner)
    if overridden is not None:
        # Replacing the project's own get_queryset would drop what it does.
        return f"{code} on the queryset {_qualname(overridden)}.get_queryset returns", advice
    if admin:
        return (
            f"def get_queryset(self, request): return "
            f"super().get_queryset(request){code}  # on {_qualname(owner)}",
            advice,
        )
    return f"queryset = {model}.objects{code}  # on {_qualname(owner)}", advice


def _own_get_queryset(owner: type) -> type | None:
    """The project class, ``owner`` or a base of it, whose own ``get_queryset`` Django
    calls, if any (not Django's, nor an installed library's)."""
    for cls in owner.__mro__:
        if "get_queryset" in vars(cls):
            module = sys.modules.get(cls.__module__)
            filename = getattr(module, "__file__", None)
            return cls if filename is not None and is_project_file(filename) else None
    return None


def _admin_joins(owner: type, model: type[Model], joins: list[str]) -> list[str]:
    """``list_select_related`` as it must read to keep what the changelist joins now and
    add ``joins``: setting it replaces the admin's own choice (``select_related()`` when
    ``list_display`` shows a relation), so the relations it shows are listed too."""
    current = getattr(owner, "list_select_related", False)
    names: list[str] = []
    if isinstance(current, list | tuple):
        names.extend(current)
    else:
        for name in getattr(owner, "list_display", ()):
            field = relation_field(model, name) if isinstance(name, str) else None
            if field is not None and getattr(field, "concrete", False) and field.is_relation:
                names.append(name)
        if current is True:
            names.extend(
                f.name
                for f in model._meta.concrete_fields
                if f.is_relation and not f.null and f.name not in names
            )
    names.extend(joins)
    unique = list(dict.fromkeys(names))
    # "author" is joined by "author__publisher" already.
    return [n for n in unique if not any(o.startswith(n + LOOKUP_SEP) for o in unique)]


def _is_model_admin(cls: type) -> bool:
    if not apps.is_installed("django.contrib.admin"):
        return False
    from django.contrib.admin import ModelAdmin

    return issubclass(cls, ModelAdmin)


def _nullable_note(model: type[Model], path: str) -> str | None:
    note = (
        "list_select_related replaces the admin's own joins: list every relation the "
        "changelist shows."
    )
    field = _field_at(model, path)
    direct = LOOKUP_SEP not in path  # the admin's own joins cover list_display's fields
    if django.VERSION < (6, 1) and direct and field is not None and getattr(field, "null", False):
        note = (
            "Before Django 6.1 the admin joins list_display's foreign keys by itself but "
            f"skips nullable ones like this. {note}"
        )
    return note


def _join(*notes: str | None) -> str | None:
    text = " ".join(note for note in notes if note)
    return text or None


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _queryset_site(group: Group) -> str | None:
    if group.site is not None:
        return site_text(group.site)
    if group.owner is not None:
        return f"{_qualname(group.owner)} (Django builds its queryset)"
    return site_text(group.evaluated_at)


def _field_at(model: type[Model], path: str) -> object | None:
    """The model field at the end of a lookup path, by query name or accessor name."""
    field = None
    for name in path.split(LOOKUP_SEP):
        field = relation_field(model, name)
        if field is None:
            return None
        target = getattr(field, "related_model", None)
        if isinstance(target, type):
            model = target
    return field


# --- Unused eager loads ----------------------------------------------------------------------

UNUSED_ADVICE = (
    "Its rows were loaded but nothing read them on this run. Unproven: remove it only if no "
    "other data reads it (a __str__ or template branch that reads the relation for some "
    "rows would then run one query per row)."
)


def _unused_eager_loads(detection: Detection, url: str | None) -> list[NPlusOneFinding]:
    found: dict[tuple[str, str, str | None], NPlusOneFinding] = {}
    for group in detection.groups:
        if not group.from_project:
            continue
        used = group.used
        for kind, paths in (
            ("unused_select_related", group.select_related),
            ("unused_prefetch_related", group.prefetch_related),
        ):
            for path in _unread(paths, used):
                site = _queryset_site(group)
                key = (kind, f"{group.model._meta.label}:{path}", site)
                if key in found:
                    continue
                method = (
                    "select_related" if kind == "unused_select_related" else "prefetch_related"
                )
                found[key] = NPlusOneFinding(
                    kind=kind,  # type: ignore[arg-type]
                    relation=_relation_label(group.model, path),
                    count=0 if kind == "unused_select_related" else 1,
                    call_site=site_text(group.evaluated_at),
                    queryset_site=site,
                    fix=f'remove "{path}" from .{method}(...)',
                    model=group.model._meta.label,
                    path=path,
                    advice=UNUSED_ADVICE,
                    url=url,
                )
    return list(found.values())


def _unread(paths: Iterable[str], used: set[str]) -> list[str]:
    """Eager-load paths nothing read, the shallowest only (an unread "a" hides "a__b")."""
    unread = [
        path
        for path in paths
        if path not in used and not any(u.startswith(path + LOOKUP_SEP) for u in used)
    ]
    return [p for p in unread if not any(p.startswith(q + LOOKUP_SEP) for q in unread)]


def _relation_label(model: type[Model], path: str) -> str:
    names = path.split(LOOKUP_SEP)
    owner = model
    for name in names[:-1]:
        field = relation_field(owner, name)
        target = getattr(field, "related_model", None)
        if not isinstance(target, type):
            break
        owner = target
    return f"{owner._meta.label}.{names[-1]}"
