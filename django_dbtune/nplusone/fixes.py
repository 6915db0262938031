"""The fix for a relation loaded once per row: the code to paste, where it goes, and the
same change as data (:class:`~django_dbtune.findings.FixTarget`) for a proof or a codemod.
Findings whose fixes go to one place become one finding with one change."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import django
from django.db.models import Model
from django.db.models.constants import LOOKUP_SEP

from django_dbtune.call_sites import relative_path
from django_dbtune.findings import NPlusOneFinding
from django_dbtune.fix_targets import FixTarget
from django_dbtune.nplusone.generic import Generic, generic_calls, generic_join, through_generic
from django_dbtune.nplusone.homes import (
    BUILT_IN_TEMPLATE,
    admin_joins,
    bare_joins,
    in_owner,
    in_subclass,
    is_model_admin,
    qualname,
)
from django_dbtune.nplusone.list_reads import list_read
from django_dbtune.nplusone.per_row_source import annotation_name, written_through
from django_dbtune.nplusone.relations import query_path, relation_field
from django_dbtune.nplusone.state import Group, Load, Site


@dataclass(frozen=True)
class Fix:
    code: str
    """As the finding prints it: ``.select_related("author")``, or where it goes too."""
    advice: str | None = None
    target: FixTarget | None = None
    """None when the fix cannot be applied in-process: it changes how rows are read
    (``obj.x_list``, an annotation), or no project code builds the queryset."""

    placed: bool = True
    """False: no project line or class builds the queryset, so the fix has no place."""
    why: str | None = None
    """Why it is not re-run, when no general reason says it."""
    tried: tuple[str, str] | None = None
    """(code, advice) shown until the proof holds, when ``code`` (what the proof tries) serves
    only some code: a plain prefetch for a filtered related read."""

    @property
    def unproven(self) -> str | None:
        """Why the fix is not re-run, when it is not."""
        if self.target is not None:
            return None
        if self.why is not None:
            return self.why
        return NO_PLACE if self.code.startswith(".") and self.placed is False else CODE_CHANGE


CODE_CHANGE = "the fix changes how rows are read too; it cannot be applied to the queryset alone"
NO_PLACE = (
    "no line or class of the project builds this queryset (a template or a library does), "
    "so there is no place to apply the fix and re-run"
)
_NOT_LOADED = (
    "; an object this queryset did not load (one a POST just created, say) has no {0}: "
    'where both can come, read obj.{0} if hasattr(obj, "{0}") and count as before otherwise.'
)
"""Said with every annotation a fix adds: REST framework serializes a created object too."""


def site_text(site: Site | None) -> str | None:
    if site is None:
        return None
    file, line, function = site
    file = relative_path(file)
    return f"{file}:{line}" if function == "template" else f"{file}:{line} in {function}"


def queryset_site(group: Group) -> str | None:
    if group.site is not None:
        return site_text(group.site)
    if group.owner is not None:
        return f"{qualname(group.owner)} (Django builds its queryset)"
    if group.library_owner is not None:
        return f"{qualname(group.library_owner)} (installed code builds its queryset)"
    return site_text(group.evaluated_at)


def fix_for(load: Load, path: str, group: Group, joins: list[str]) -> Fix:
    """The fix for repeated loads like ``load`` of ``path`` on ``group``'s queryset;
    ``joins`` are all the select_related paths that queryset lacks."""
    fix = _fix_for(load, path, group, joins)
    first = path.split(LOOKUP_SEP)[0]
    own = relation_field(group.model, first) is not None
    placeable = group.site is not None or group.library_owner is not None
    # Rows of a subclass from a parent model's queryset (Wagtail's .specific()), or any
    # rows its iterable loads by queries of their own: only those queries reach them.
    reloaded = own and group.subclass_rows and placeable and _subqueries(group)
    if fix.target is not None and (not own or reloaded):
        target = fix.target
        if placeable and not target.count_annotations and _subqueries(group):
            placed = _placed(
                group,
                path,
                joins,
                advice=fix.advice,
                specific_select=target.select_related,
                specific_prefetch=target.prefetch_related,
            )
            return replace(placed, tried=fix.tried)
        why = (
            f"the rows are {load.model._meta.label} objects from a "
            f"{group.model._meta.label} queryset, which cannot name their own relations"
        )
        return replace(fix, target=None, why=why)
    return fix


def _subqueries(group: Group) -> bool:
    """The model's querysets load subclass rows with eager loads of their own: their
    ``select_related`` takes ``for_specific_subqueries`` (Wagtail's ``PageQuerySet``)."""
    queryset_class = getattr(group.model._default_manager, "_queryset_class", None)
    try:
        parameters = inspect.signature(queryset_class.select_related).parameters  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        return False
    return SUBQUERIES in parameters


SUBQUERIES = "for_specific_subqueries"


def _fix_for(load: Load, path: str, group: Group, joins: list[str]) -> Fix:
    many = load.tag.many
    name = load.name
    related = load.related_model.__name__ if load.related_model else "Related"
    if load.kind in ("forward", "reverse_one") and not many:
        if through_generic(group.model, path):
            generic = generic_join(load, group.model)
            if generic is not None:
                # The join right after a generic foreign key, for its rows' own type.
                note, load_generic = generic
                return _placed(group, path, joins, advice=note, generics=(load_generic,))
            # select_related cannot cross a generic foreign key; a prefetch can, when every
            # type it points to has the relation (the proof tells).
            note = "select_related cannot follow a generic foreign key."
            return _placed(group, path, joins, prefetch=(path,), advice=note)
        return _placed(group, path, joins, select=(path,))
    if load.kind in ("forward", "reverse_one", "generic_fk"):
        advice = None
        if load.kind == "generic_fk":
            advice = "A generic foreign key cannot be joined; prefetch_related loads it per type."
        return _placed(group, path, joins, prefetch=(path,), advice=advice)
    if load.kind == "deferred":
        defer = group.deferred[1] if group.deferred else True
        code = f'remove "{path}" from .defer(...)' if defer else f'add "{path}" to .only(...)'
        return Fix(code)
    written = written_through(load) if load.filtered or load.kind == "aggregate" else None
    if written is not None and not load.tag.prefix:
        annotated = annotation_name(written, name, group.model)
        return Fix(
            written.annotation(annotated),
            f"Then read obj.{annotated} instead of calling .{name}...{written.kind}() per row"
            + _NOT_LOADED.format(annotated),
        )
    if load.kind == "count":
        advice = f"Then read obj.{name}_count instead of calling .{name}.count() per row"
        advice += _NOT_LOADED.format(f"{name}_count")
        if load.filtered or load.sliced:
            counted = query_path(group.model, path)
            if load.filtered:
                code = (
                    f'.annotate({name}_count=Count("{counted}", filter=Q({counted}__...),'
                    " distinct=True))"
                )
                return Fix(code, f"{advice} Keep the conditions the per-row call filters on.")
            return Fix(f'.annotate({name}_count=Count("{counted}", distinct=True))', advice)
        if load.tag.prefix:
            # Rows reached through another relation: an annotation on this queryset would
            # count per parent row, but .count() on a prefetched manager counts in memory.
            note = f"Then .{name}.count() counts the prefetched rows without a query."
            return _placed(group, path, joins, prefetch=(path,), advice=note)
        return _placed(group, path, joins, counts=(name,), advice=advice)
    if load.kind == "exists":
        back = load.related_query_name or "<field>"
        more = ", ..." if load.filtered else ""
        return Fix(
            f'.annotate(has_{name}=Exists({related}.objects.filter({back}=OuterRef("pk"){more})))',
            f"Then read obj.has_{name} instead of calling .{name}.exists() per row"
            + _NOT_LOADED.format(f"has_{name}"),
        )
    if load.kind == "aggregate":
        over = query_path(group.model, path)
        return Fix(f'.annotate(...) over "{over}" instead of .aggregate() per row')
    if load.sliced and not load.filtered:
        # .all()[:3] slices the prefetched rows; .first() or an .order_by() queries again:
        # the proof tells which, and the advice gives the fix for the second case.
        return _placed(
            group,
            path,
            joins,
            prefetch=(path,),
            advice=f'If re-running shows no gain, use Prefetch("{path}", queryset=...,'
            f' to_attr="{name}_list") and read obj.{name}_list: .first() or a new '
            "order_by() on a related manager queries again even when it was prefetched.",
        )
    if load.sliced or load.filtered:
        listed = list_read(load) if not load.tag.prefix else None
        if listed is not None:
            # The reading code must change too; the proof reads the list at its line.
            code, advice, call = listed
            placed = _placed(group, path, joins, advice=advice, extra=code)
            if placed.target is not None:
                return replace(placed, target=replace(placed.target, row_calls=(call,)))
        # .filter() on a related manager queries again even when it was prefetched, unless
        # the code reads the prefetched rows when there are some (Wagtail's renditions):
        # the proof tries the plain prefetch; until it holds, the general fix is shown.
        plain = _placed(group, path, joins, prefetch=(path,))
        general = (
            f'.prefetch_related(Prefetch("{path}", '
            f'queryset={related}.objects.filter(...), to_attr="{name}_list"))',
            f"Then read obj.{name}_list: calling .filter()/.first() on the related manager "
            "runs a new query per row, even when it was prefetched.",
        )
        return replace(plain, tried=general)
    if through_generic(group.model, path) and load.kind == "many" and not load.reshaped:
        generic = generic_join(load, group.model)
        if generic is not None:
            # A relation of one type's rows: a plain prefetch raises on the other types.
            note, load_generic = generic
            return _placed(group, path, joins, advice=note, generics=(load_generic,))
    advice = None
    if load.kind == "prefetch":
        advice = "Instead of prefetch_related_objects() once per row."
    elif load.reshaped:
        advice = (
            f"Then take the values from the rows of obj.{name}.all(): .values(), "
            ".values_list() or django-taggit's names() on a related manager runs a new "
            "query per row, even when it was prefetched."
        )
    return _placed(group, path, joins, prefetch=(path,), advice=advice)


def chain(
    select: Iterable[str],
    prefetch: Iterable[str],
    counts: Mapping[str, str] | None = None,
    specific_select: Iterable[str] = (),
    specific_prefetch: Iterable[str] = (),
    generics: Iterable[Generic] = (),
) -> str:
    """``.select_related("a", "b").prefetch_related(GenericPrefetch(...), "c")``, then the
    subclass rows' own loads: ``.select_related("d", for_specific_subqueries=True)``."""
    code = ""
    calls = (
        ("select_related", [f'"{path}"' for path in select], ""),
        ("prefetch_related", [*generic_calls(generics), *(f'"{p}"' for p in prefetch)], ""),
        ("select_related", [f'"{path}"' for path in specific_select], f", {SUBQUERIES}=True"),
        ("prefetch_related", [f'"{p}"' for p in specific_prefetch], f", {SUBQUERIES}=True"),
    )
    for method, arguments, keyword in calls:
        if arguments:
            code += f".{method}({', '.join(arguments)}{keyword})"
    counted = ", ".join(
        f'{name}=Count("{path}", distinct=True)' for name, path in (counts or {}).items()
    )
    return code + (f".annotate({counted})" if counted else "")


def _placed(
    group: Group,
    path: str,
    joins: list[str],
    select: tuple[str, ...] = (),
    prefetch: tuple[str, ...] = (),
    advice: str | None = None,
    counts: tuple[str, ...] = (),
    specific_select: tuple[str, ...] = (),
    specific_prefetch: tuple[str, ...] = (),
    extra: str = "",
    generics: tuple[Generic, ...] = (),
) -> Fix:
    """The fix where it goes: on the line that built the queryset, or in the project class
    Django builds it for (a view's ``queryset``, a ModelAdmin's ``list_select_related`` or
    ``get_queryset``)."""
    owner = group.owner
    bare = bool(select) and group.select_all and not is_model_admin(owner or object)
    if bare:
        # A select_related() with no names later in the chain would override named ones.
        select = _deepest(tuple(dict.fromkeys([*bare_joins(group.model), *select])))
        advice = join_notes(
            advice,
            "This queryset calls select_related() with no names, which joins only non-null "
            "foreign keys and overrides named ones: name these relations in that call.",
        )
    # Count() names a relation as queries do: "review" for the accessor "review_set".
    paths = tuple(query_path(group.model, name) for name in counts)
    counted = {f"{n}_count": p for n, p in zip(counts, paths, strict=True)}
    code = chain(select, prefetch, counted, specific_select, specific_prefetch, generics) + extra
    base = FixTarget(
        "add",
        select,
        prefetch,
        count_annotations=counts,
        model=group.model._meta.label,
        names_bare_select=bare,
        count_paths=paths,
        specific_select=specific_select,
        specific_prefetch=specific_prefetch,
        generic_prefetch=generics,
    )
    if group.site is not None:
        file, line, function = group.site
        if function == "template":
            advice = join_notes(advice, BUILT_IN_TEMPLATE)
        in_template = function == "template"
        target = replace(base, file=relative_path(file), line=line, in_template=in_template)
        return Fix(code, advice, target)
    if owner is None and group.library_owner is not None:
        library = group.library_owner
        written = in_subclass(library, group.library_method, group.model, code)
        if written is None:
            return Fix(code, advice, placed=False)
        target = replace(base, owner=qualname(library), owner_class=library, in_subclass=True)
        return Fix(written[0], join_notes(advice, written[1]), target)
    if owner is None or specific_select or specific_prefetch:
        return Fix(code, advice, placed=False)
    target = replace(base, owner=qualname(owner), owner_class=owner)
    if is_model_admin(owner) and select:
        names = tuple(admin_joins(owner, group.model, joins))
        listed = f'"{names[0]}",' if len(names) == 1 else ", ".join(f'"{n}"' for n in names)
        note = _nullable_note(group.model, path)
        return Fix(
            f"list_select_related = ({listed})  # on {qualname(owner)}",
            join_notes(advice, note),
            replace(target, select_related=(), list_select_related=names),
        )
    return Fix(in_owner(owner, group.model, code), advice, target)


def merged(entries: list[tuple[NPlusOneFinding, Group]]) -> list[NPlusOneFinding]:
    """One finding per place a fix goes: findings whose targets share a queryset (or an
    admin's ``list_select_related``) become one, with one change that fixes them all."""
    places: dict[tuple[object, ...], list[tuple[NPlusOneFinding, Group]]] = {}
    alone: list[NPlusOneFinding] = []
    for finding, group in entries:
        target = finding.target
        if target is None:
            alone.append(finding)
            continue
        if finding.proven_fix is not None or target.row_calls:
            # A plain prefetch for a filtered read may save nothing: merged, the proof of
            # the others would vouch for it. It is proven on its own, as is a change that
            # the reading code must follow.
            alone.append(finding)
            continue
        key = (target.place, target.list_select_related is not None, finding.database)
        places.setdefault(key, []).append((finding, group))
    for same in places.values():
        alone.append(same[0][0] if len(same) == 1 else _one(same))
    return alone


def _one(same: list[tuple[NPlusOneFinding, Group]]) -> NPlusOneFinding:
    first, group = same[0]
    findings = [finding for finding, _ in same]
    targets = [finding.target for finding in findings if finding.target is not None]
    select = tuple(dict.fromkeys(p for t in targets for p in t.select_related))
    prefetch = tuple(dict.fromkeys(p for t in targets for p in t.prefetch_related))
    counts = tuple(dict.fromkeys(n for t in targets for n in t.count_annotations))
    specific_select = tuple(dict.fromkeys(p for t in targets for p in t.specific_select))
    specific_prefetch = tuple(dict.fromkeys(p for t in targets for p in t.specific_prefetch))
    generics = tuple(dict.fromkeys(g for t in targets for g in t.generic_prefetch))
    # The GenericPrefetch of a lookup prefetches it: only deeper plain paths stay beside it.
    prefetch = tuple(p for p in prefetch if p not in {g[0] for g in generics})
    # "author" is joined by "author__publisher" already (prefetched likewise).
    base = _placed(
        group,
        first.path,
        list(_deepest(select)),
        _deepest(select),
        _deepest(prefetch),
        counts=counts,
        specific_select=_deepest(specific_select),
        specific_prefetch=_deepest(specific_prefetch),
        generics=generics,
    )
    fix = first.fix if targets[0].list_select_related is not None else base.code
    sentences = (s for f in findings if f.advice for s in f.advice.split(". ") if s)
    text = ". ".join(dict.fromkeys(s.removesuffix(".") for s in sentences))
    advice = f"{text}." if text else None
    relations = tuple(dict.fromkeys(r for f in findings for r in f.relations))
    target = base.target if targets[0].list_select_related is None else targets[0]
    counted_at = next(
        (f.call_site for f in findings if f.target and f.target.count_annotations), None
    )
    if target is not None and counted_at is not None:
        target = replace(target, count_site=counted_at)
    return replace(
        first,
        count=sum(f.count for f in findings),
        # The first trigger the project's code shows (a library's own loads have none).
        call_site=first.call_site or next((f.call_site for f in findings if f.call_site), None),
        fix=fix,
        advice=advice,
        relations=relations,
        load_queries=tuple(i for f in findings for i in f.load_queries),
        target=target,
        baseline_keys=tuple(dict.fromkeys(f.baseline_key for f in findings)),
    )


def _deepest(paths: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p for p in paths if not any(o.startswith(p + LOOKUP_SEP) for o in paths))


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


def join_notes(*notes: str | None) -> str | None:
    """The notes in one text, each once (a fix placed again keeps the notes it had)."""
    kept: list[str] = []
    for note in notes:
        if note and not any(note in other for other in kept):
            kept.append(note)
    return " ".join(kept) or None


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
