"""Part of a proven N+1 fix, for ``--write`` to apply when the whole cannot be: the eager
loads of a fix whose per-row count is read where no edit can go."""

from __future__ import annotations

from dataclasses import replace

from django_dbtune.findings import NPlusOneFinding
from django_dbtune.fix_targets import FixTarget


def without_counts(finding: NPlusOneFinding) -> NPlusOneFinding | None:
    """``finding`` with its fix's count annotations left out (its eager loads only), or
    None when nothing would be left, or its text does not say the counts as expected."""
    target = finding.target
    if target is None or not target.count_annotations or finding.fix is None:
        return None
    if not (target.select_related or target.prefetch_related or target.list_select_related):
        return None
    counted = ", ".join(f'{n}=Count("{p}", distinct=True)' for n, p in target.counted().items())
    annotation = f".annotate({counted})"
    if annotation not in finding.fix:
        return None
    return replace(
        finding,
        fix=finding.fix.replace(annotation, "", 1),
        target=replace(target, count_annotations=(), count_paths=()),
        advice=None,
    )


def other_actions(target: FixTarget) -> list[str]:
    """The extra actions (``@action``) of the REST framework viewset whose queryset the fix
    changes: an annotation there joins a table under each of them, and an aggregate an
    action runs over the queryset (``.values("status").annotate(n=Count("id"))``) would
    count every row of that join. None for any other class."""
    owner = target.owner_class
    extra = getattr(owner, "get_extra_actions", None)
    if owner is None or extra is None:
        return []
    try:
        return sorted(action.__name__ for action in extra())
    except Exception:  # a class of its own under that name
        return []
