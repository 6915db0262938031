"""From what a detection saw to findings: which relation, how often, where, and the fix."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from django.db.models import Model
from django.db.models.constants import LOOKUP_SEP

from django_dbtune.call_sites import relative_path
from django_dbtune.findings import NPlusOneFinding, Proof
from django_dbtune.fix_targets import FixTarget
from django_dbtune.nplusone.fixes import fix_for, merged, queryset_site, site_text
from django_dbtune.nplusone.hand_written import per_row_queries
from django_dbtune.nplusone.homes import qualname
from django_dbtune.nplusone.relations import relation_field
from django_dbtune.nplusone.state import Detection, Group, Load


def findings(
    detection: Detection,
    threshold: int = 2,
    unused: bool = True,
    url: str | None = None,
    keep: Callable[[NPlusOneFinding], bool] = lambda finding: True,
) -> list[NPlusOneFinding]:
    """What the detection saw, one finding per place a fix goes. ``keep`` leaves out
    findings (allowlist, baseline) relation by relation, before those of one place merge."""
    if not (detection.loads or detection.groups or detection.log.records):
        return []  # a page that ran no query: nothing to look at
    entries = [(f, g) for f, g in _lazy_loads(detection, threshold, url) if keep(f)]
    found = merged(entries)
    found += [f for f in per_row_queries(detection, threshold, url) if keep(f)]
    if unused:
        found += [f for f in _unused_eager_loads(detection, url) if keep(f)]
    return found


# --- N+1 through relations -------------------------------------------------------------------


def _lazy_loads(
    detection: Detection, threshold: int, url: str | None
) -> list[tuple[NPlusOneFinding, Group]]:
    grouped: dict[tuple[object, ...], list[Load]] = defaultdict(list)
    last: Load | None = None
    into: list[Load] | None = None
    for load in detection.loads:
        # An N+1's loads come one after another: the same relation of rows of one tag,
        # loaded from the same line, go where the one before went, with no key to build.
        if (
            last is not None
            and load.tag is last.tag
            and load.name == last.name
            and load.kind == last.kind
            and load.model is last.model
            and load.site == last.site
        ):
            if into is not None:
                into.append(load)
            continue
        last = load
        group = load.tag.group
        if load.site is None and not group.from_project and _django_only(load):
            into = None  # Django's own models, loaded by Django's code: nothing to change
            continue
        path = load.tag.prefix + load.name
        place = group.site or group.owner or group.library_owner
        into = grouped[(load.kind, load.model, path, load.site, place)]
        into.append(load)
    repeated = [
        loads for loads in grouped.values() if sum(load.rows for load in loads) >= threshold
    ]
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
        fix = fix_for(first, path, group, joins.get(id(group), [path]))
        finding = NPlusOneFinding(
            kind="n_plus_one",
            relation=f"{first.model._meta.label}.{first.name}",
            count=sum(load.end - load.start for load in loads),
            call_site=site_text(first.site),
            queryset_site=queryset_site(group),
            fix=fix.code if fix.tried is None else fix.tried[0],
            proven_fix=None if fix.tried is None else fix.code,
            database=records[first.start].alias,
            sample_sql=records[first.start].sql,
            load_queries=tuple(i for load in loads for i in range(load.start, load.end)),
            model=group.model._meta.label,
            path=path,
            advice=fix.advice if fix.tried is None else fix.tried[1],
            url=url,
            target=fix.target,
            proof=Proof("unproven", reason=fix.unproven) if fix.unproven else None,
        )
        found.append((finding, group))
    return found


# --- Unused eager loads ----------------------------------------------------------------------

UNUSED_ADVICE = (
    "Its rows were loaded but nothing read them on this run. Unproven: remove it only if no "
    "other data reads it (a __str__ or template branch that reads the relation for some "
    "rows would then run one query per row)."
)


_SHARED_BUILDERS = frozenset({"get_queryset", "get_object"})
"""Methods that build a view's queryset for all of its actions (a list, a detail page)."""


def _unused_eager_loads(detection: Detection, url: str | None) -> list[NPlusOneFinding]:
    found: dict[tuple[str, str, str | None], NPlusOneFinding] = {}
    for group in detection.groups:
        if not group.from_project:
            continue
        if group.size < 2 and (group.site is None or group.site[2] in _SHARED_BUILDERS):
            # One object read through a view's queryset (a viewset's detail action): that
            # queryset serves the view's other actions too, whose reads this page never saw.
            continue
        used = group.used
        for kind, paths in (
            ("unused_select_related", group.select_related),
            ("unused_prefetch_related", group.prefetch_related),
        ):
            for path in _unread(paths, used):
                site = queryset_site(group)
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
                    target=_removal(group, method, path),
                )
    return list(found.values())


def _removal(group: Group, method: str, path: str) -> FixTarget | None:
    """The removal as data, to prove it by running without the eager load."""
    select = (path,) if method == "select_related" else ()
    prefetch = () if select else (path,)
    label = group.model._meta.label
    if group.site is not None:
        file, line, _ = group.site
        site = relative_path(file)
        return FixTarget("remove", select, prefetch, file=site, line=line, model=label)
    if group.owner is not None:
        owner = group.owner
        return FixTarget(
            "remove", select, prefetch, owner=qualname(owner), owner_class=owner, model=label
        )
    return None


def _unread(paths: Iterable[str], used: set[str]) -> list[str]:
    """Eager-load paths nothing read, the shallowest only (an unread "a" hides "a__b")."""
    unread = [
        path
        for path in paths
        if path not in used and not any(u.startswith(path + LOOKUP_SEP) for u in used)
    ]
    return [p for p in unread if not any(p.startswith(q + LOOKUP_SEP) for q in unread)]


def _django_only(load: Load) -> bool:
    """A load of Django's own models (sessions, permissions, content types) by Django's own
    code. A library's models loaded by the library's code for the project's pages (a CMS
    listing) are still the project's N+1: reported with no line, and no place for a fix."""
    return load.model.__module__.startswith("django.")


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
