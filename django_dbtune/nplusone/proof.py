"""Proving a fix as the planner proves an index: run the page (or test) again with the fix
applied in-process, in a transaction that is rolled back, and compare the query counts.

:func:`applied` puts one :class:`~django_dbtune.findings.FixTarget` in place for the code
run inside it; :func:`judged` turns the two runs into the finding's
:class:`~django_dbtune.findings.Proof`. Whoever can run the code again (a command, the
pytest plugin, the middleware) drives both.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Count
from django.db.models.constants import LOOKUP_SEP
from django.db.models.query import QuerySet
from django.utils.module_loading import import_string

from django_dbtune.call_sites import relative_path
from django_dbtune.findings import NPlusOneFinding, Proof
from django_dbtune.fix_targets import FixTarget
from django_dbtune.nplusone.cold_caches import cold_local_caches
from django_dbtune.nplusone.generic import generic_prefetches
from django_dbtune.nplusone.origin import owner_on_stack
from django_dbtune.nplusone.relations import relation_field
from django_dbtune.nplusone.row_calls import row_annotations, row_prefetches, stood_in
from django_dbtune.nplusone.state import ORIGIN, OWNER, current

AMENDED = "_dbtune_amended"
"""In a ``QuerySet``'s ``__dict__`` while a fix is applied: it was changed already."""


@dataclass(frozen=True)
class Outcome:
    """One run of the page or test: its answer and how many queries it ran."""

    queries: int
    status: int | None = None
    error: str | None = None
    """The exception the run raised, as ``Type: message``; None when it did not raise."""
    repeated: frozenset[tuple[object, str]] | None = None
    """What the run loaded once per row, as (place, relation) pairs (None: not looked at)."""
    mismatch: str | None = None
    """Where the fixed page read something else than the code returns without the fix."""


@contextmanager
def rolled_back(aliases: Iterable[str] = (DEFAULT_DB_ALIAS,)) -> Iterator[None]:
    """Whatever runs inside writes nothing: one transaction per database, rolled back."""
    with ExitStack() as stack:
        names = list(dict.fromkeys(aliases))
        for alias in names:
            stack.enter_context(transaction.atomic(using=alias))
        try:
            yield
        finally:
            for alias in names:
                transaction.set_rollback(True, using=alias)


class Applied:
    """How often the fix met its queryset while applied (0: the run never built it), and
    where what the page read differed from what the code returns without the fix."""

    def __init__(self) -> None:
        self.hits = 0
        self.mismatches: list[str] = []

    def hit(self) -> None:
        self.hits += 1


@contextmanager
def applied(target: FixTarget) -> Iterator[Applied]:
    """The fix in place for the code run inside, as if its source had been edited.

    Querysets built at the target's line (or for its owner class) get the eager loads added
    (or the one removed) just before they are evaluated, however the chain went on; a
    ModelAdmin's ``list_select_related`` is set on the class. Run inside an open
    ``detect()``: the detector records where each queryset was built.
    """
    owner = _owner_class(target)
    seen = Applied()
    previous = QuerySet.__dict__["_fetch_all"]
    previous_count = QuerySet.__dict__["count"]

    def fetch_all(queryset: Any) -> None:
        detection = current.get()
        # Not the querysets Django runs to load relations (a prefetch): only the project's.
        loading = detection is not None and detection.busy > 0
        fresh = queryset._result_cache is None and AMENDED not in queryset.__dict__
        fresh = fresh and not loading and _proving.get() is seen
        if fresh and _is_target(queryset, target, owner, sys._getframe(1)):
            queryset.__dict__[AMENDED] = True
            seen.hits += 1
            _amend(queryset, target)
        return previous(queryset)  # type: ignore[no-any-return]

    def count(queryset: Any) -> int:
        # The read the fix changes: row.<name>.count() becomes row.<name>_count.
        counted = None
        if _proving.get() is seen:
            counted = _counted(queryset, target.count_annotations)
        return previous_count(queryset) if counted is None else counted

    admin = owner if target.list_select_related is not None else None
    saved = admin.__dict__.get("list_select_related", _MISSING) if admin else _MISSING
    QuerySet._fetch_all = fetch_all  # type: ignore[method-assign,assignment]
    if target.count_annotations:
        QuerySet.count = count  # type: ignore[method-assign,assignment]
    token = _proving.set(seen)
    try:
        if admin is not None:
            scoped = _Scoped(seen, target.list_select_related, admin.list_select_related)  # type: ignore[attr-defined]
            admin.list_select_related = scoped  # type: ignore[attr-defined]
        with stood_in(target, seen.mismatches, lambda: _proving.get() is seen, seen.hit):
            yield seen
    finally:
        _proving.reset(token)
        QuerySet._fetch_all = previous  # type: ignore[method-assign]
        QuerySet.count = previous_count  # type: ignore[method-assign]
        if admin is not None:
            if saved is _MISSING:
                delattr(admin, "list_select_related")
            else:
                admin.list_select_related = saved  # type: ignore[attr-defined]


_MISSING = object()

_proving: ContextVar[Applied | None] = ContextVar("django_dbtune_proving", default=None)
"""The fix applied for the code running now: a proof changes only its own re-run, never a
request another thread serves meanwhile."""


class _Scoped:
    """A ModelAdmin's ``list_select_related`` while a fix is proven: the fix's tuple in the
    re-run, what the class had everywhere else."""

    def __init__(self, seen: Applied, fixed: Any, kept: Any) -> None:
        self.seen = seen
        self.fixed = fixed
        self.kept = kept

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return self.fixed if _proving.get() is self.seen else self.kept


def _counted(queryset: Any, names: tuple[str, ...]) -> int | None:
    """The annotated count of the row whose related manager built ``queryset``, if the fix
    annotated it: what ``row.<name>_count`` reads once the code is changed."""
    row = queryset._query.__dict__.get(OWNER) if names else None
    if row is None or queryset._query.is_sliced:
        return None
    for name in names:
        value = row.__dict__.get(f"{name}_count")
        field = relation_field(type(row), name)
        if isinstance(value, int) and getattr(field, "related_model", None) is queryset.model:
            return value
    return None


def _owner_class(target: FixTarget) -> type | None:
    if target.owner_class is not None:
        return target.owner_class
    if target.owner is None:
        return None
    try:
        found = import_string(target.owner)
    except ImportError:
        return None
    return found if isinstance(found, type) else None


def _is_target(queryset: Any, target: FixTarget, owner: type | None, frame: Any) -> bool:
    if target.model is not None and queryset.model._meta.label != target.model:
        return False
    site, built_for = queryset._query.__dict__.get(ORIGIN) or (None, None)
    if target.file is not None:
        if site is None:
            return False
        place = (relative_path(site[0]), site[1])
        return place == (target.file, target.line) or place in target.also
    if owner is None:
        return False
    if site is None and built_for is None:
        built_for = owner_on_stack(frame)
    return built_for is not None and issubclass(built_for, owner)


def _amend(queryset: Any, target: FixTarget) -> None:
    query = queryset._query
    lookups = tuple(queryset._prefetch_related_lookups)
    if target.action == "add":
        annotations = row_annotations(target)
        if annotations:
            queryset.query = queryset.annotate(**annotations).query
            query = queryset._query
        if target.row_calls:
            lookups += tuple(row_prefetches(target))
        if target.count_annotations:
            counts = {name: Count(path) for name, path in target.counted().items()}
            queryset.query = queryset.annotate(**counts).query
            query = queryset._query
        select = target.select_related
        if select and query.select_related is True:
            if target.names_bare_select:
                query.select_related = False  # the bare call, named as the fix says
            else:
                select = ()  # a named join added before a bare call is overridden by it
        if select:
            query.add_select_related(select)
        known = {_prefetch_to(lookup) for lookup in lookups}
        extra = tuple(path for path in target.prefetch_related if path not in known)
        # First: a plain lookup of the same name after it is skipped, one before it raises.
        generic = tuple(generic_prefetches(target.generic_prefetch))
        queryset._prefetch_related_lookups = generic + lookups + extra
        if target.specific_select or target.specific_prefetch:
            _amend_subqueries(queryset, target)
        return
    for path in target.select_related:
        _drop_join(query, path)
    for path in target.prefetch_related:
        queryset._prefetch_related_lookups = tuple(
            lookup
            for lookup in lookups
            if _prefetch_to(lookup) != path and not _prefetch_to(lookup).startswith(path + "__")
        )


def _amend_subqueries(queryset: Any, target: FixTarget) -> None:
    """The subclass rows' own loads, through the queryset's public methods (their state is
    the library's): as if the chain had gone on with them."""
    amended = queryset
    if target.specific_select:
        amended = amended.select_related(*target.specific_select, for_specific_subqueries=True)
    if target.specific_prefetch:
        amended = amended.prefetch_related(*target.specific_prefetch, for_specific_subqueries=True)
    kept = ("_result_cache", "_prefetch_done")
    queryset.__dict__.update((k, v) for k, v in vars(amended).items() if k not in kept)


def _prefetch_to(lookup: Any) -> str:
    return lookup if isinstance(lookup, str) else str(lookup.prefetch_to)


def _drop_join(query: Any, path: str) -> None:
    tree = query.select_related
    if not isinstance(tree, dict):
        return
    names = path.split(LOOKUP_SEP)
    for name in names[:-1]:
        tree = tree.get(name)
        if not isinstance(tree, dict):
            return
    tree.pop(names[-1], None)
    if not query.select_related:
        query.select_related = False


def judged(
    finding: NPlusOneFinding, before: Outcome, after: Outcome, hits: int
) -> NPlusOneFinding | None:
    """The finding with its proof; None for an "unused" eager load that running without it
    showed is read (the detector missed the read: saying nothing beats a harmful fix)."""
    counts: dict[str, Any] = {
        "before": before.queries,
        "after": after.queries,
        "status_before": before.status,
        "status_after": after.status,
    }
    removal = finding.target is not None and finding.target.action == "remove"
    if after.error is not None:
        reason = f"re-run with the fix, the code raised {after.error}"
    elif after.mismatch is not None:
        reason = f"re-run with the fix, {after.mismatch}"
    elif (
        not removal and before.repeated is not None and before.repeated.isdisjoint(_loops(finding))
    ):
        reason = (
            "re-run as it is, the page no longer ran these queries per row (a cache the "
            "first run filled?), so the fix could not be measured"
        )
    elif hits == 0:
        reason = "re-run with the fix, the queryset it changes was not evaluated"
    elif after.status != before.status:
        reason = "re-run with the fix, the page answered another status"
    elif removal and after.queries > before.queries:
        return None
    elif not removal and after.queries >= before.queries:
        reason = "re-run with the fix, the queries did not go down"
    elif (
        not removal
        and after.repeated is not None
        and not after.repeated.isdisjoint(_loops(finding))
    ):
        reason = "re-run with the fix, these queries still ran once per row"
    else:
        advice = PROVEN_UNUSED if removal else finding.advice
        proven = replace(finding, proof=Proof("proven", **counts), advice=advice)
        if finding.proven_fix is not None:
            proven = replace(proven, fix=finding.proven_fix, proven_fix=None, advice=None)
        return proven
    return replace(finding, proof=Proof("unproven", reason=reason, **counts))


def _loops(finding: NPlusOneFinding) -> set[tuple[object, str]]:
    """Each relation the finding loads per row, with where its fix goes (or, without one,
    the line that triggered it): one relation may repeat at several places of a page."""
    target = finding.target
    place = target.place if target is not None else finding.call_site
    return {(place, relation) for relation in finding.relations}


PROVEN_UNUSED = (
    "Running without it added no query, on this run's data only: other data may read it (a "
    "__str__ or template branch that reads the relation for some rows would then run one "
    "query per row)."
)


def not_rerun(finding: NPlusOneFinding, reason: str) -> NPlusOneFinding:
    return replace(finding, proof=Proof("unproven", reason=reason))


def _not_rerun(finding: NPlusOneFinding) -> NPlusOneFinding:
    """A finding with no fix to apply: the reason it was built with, or a general one."""
    if finding.proof is not None:
        return finding
    return not_rerun(finding, "the fix cannot be applied to one queryset in-process")


def prove(
    findings: list[NPlusOneFinding], run: Callable[[FixTarget | None], tuple[Outcome, int]]
) -> list[NPlusOneFinding]:
    """Each finding with its proof. ``run(target)`` runs the page or test once with
    ``target`` applied (None: as it is), in a transaction rolled back, and returns its
    outcome and how often the fix met its queryset."""
    if not any(finding.target is not None for finding in findings):
        return [_not_rerun(finding) for finding in findings]
    before, _ = run(None)
    if before.error is not None:
        reason = f"it does not run twice: re-run as it is, it raised {before.error}"
        return [not_rerun(finding, reason) for finding in findings]
    proven = []
    for finding in findings:
        target = finding.target
        if target is None:
            proven.append(_not_rerun(finding))
            continue
        after, hits = run(target)
        result = judged(finding, before, after, hits)
        if result is not None:
            proven.append(result)
    return proven


def rerun(
    findings: list[NPlusOneFinding],
    call: Callable[[], int | None],
    aliases: Iterable[str] = (DEFAULT_DB_ALIAS,),
) -> list[NPlusOneFinding]:
    """:func:`prove` for code that can run again: ``call()`` runs the page or test once
    and returns its status (None for a test), or raises. Each run is watched by a
    detection of its own, in a transaction rolled back on every database in ``aliases``,
    with cold local-memory caches."""
    from django_dbtune.nplusone import detect

    def run(target: FixTarget | None) -> tuple[Outcome, int]:
        status = error = None
        fix = applied(target) if target is not None else nullcontext(Applied())
        with (
            rolled_back({DEFAULT_DB_ALIAS, *aliases}),
            cold_local_caches(),
            detect(baseline=False, unused_eager_loads=False) as report,
            fix as seen,
        ):
            try:
                status = call()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        # What the run repeated per row: as it is, what was found; with the fix, nothing of it.
        repeated = frozenset(loop for f in report.findings for loop in _loops(f))
        mismatch = seen.mismatches[0] if seen.mismatches else None
        outcome = Outcome(len(report.queries.records), status, error, repeated, mismatch)
        return outcome, seen.hits

    return prove(findings, run)


_settled: dict[tuple[object, ...], Proof | None] = {}
"""Proofs already measured in this process, by fix (None: a removal the run disproved)."""
_settled_lock = threading.Lock()


def rerun_once(
    findings: list[NPlusOneFinding],
    call: Callable[[], int | None],
    aliases: Iterable[str] = (DEFAULT_DB_ALIAS,),
) -> list[NPlusOneFinding]:
    """:func:`rerun`, at most once per fix in this process (for the middleware and the
    toolbar, which see the same page again and again): a fix proven before keeps the proof
    measured then."""
    fresh = [finding for finding in findings if _settled_key(finding) not in _settled]
    if fresh:
        measured = {_settled_key(f): f.proof for f in rerun(fresh, call, aliases)}
        with _settled_lock:
            for finding in fresh:
                _settled[_settled_key(finding)] = measured.get(_settled_key(finding))
    kept = []
    for finding in findings:
        proof = _settled.get(_settled_key(finding))
        if proof is not None:
            kept.append(replace(finding, proof=proof))
    return kept


def forget_proofs() -> None:
    """Measure every fix again (tests, or after the code changed)."""
    with _settled_lock:
        _settled.clear()


def _settled_key(finding: NPlusOneFinding) -> tuple[object, ...]:
    target = finding.target
    place = target.place if target is not None else finding.call_site
    return (finding.kind, place, finding.relations, finding.path)
