"""Proving a fix as the planner proves an index: run the page (or test) again with the fix
applied in-process, in a transaction that is rolled back, and compare the query counts.

:func:`.fix_in_place.applied` puts fixes (:class:`~django_dbtune.fix_targets.FixTarget`) in
place for the code run inside it; :func:`judged` turns the two runs into the finding's
:class:`~django_dbtune.findings.Proof`. Whoever can run the code again (a command, the
pytest plugin, the middleware) drives both.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction

from django_dbtune.capture import unrecorded
from django_dbtune.conf import conf
from django_dbtune.filled_rows import fetched_by_django
from django_dbtune.findings import NPlusOneFinding, Proof
from django_dbtune.fix_targets import FixTarget
from django_dbtune.nplusone.cold_caches import cold_local_caches
from django_dbtune.nplusone.fix_in_place import Applied, applied
from django_dbtune.nplusone.per_row_source import enclosing_function


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
    content: str | None = None
    """A digest of what the page answered (None: not known, or not the same from one run
    to the next as it is, so not compared)."""


Answer = int | None | tuple[int, str | None]
"""What running the page or test again returns: its status (None for a test), or its
status and a digest of its content (:func:`answer_of`)."""


def answer_of(response: Any) -> tuple[int, str | None]:
    """A response's status, and a digest of its content when it has all of it at hand (a
    streaming or file response is not read)."""
    content = None
    if not getattr(response, "streaming", False):
        content = hashlib.sha256(bytes(response.content)).hexdigest()
    return response.status_code, content


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
    elif before.content is not None and after.content != before.content:
        reason = (
            "re-run with the fix, the page answered something else than it does without it "
            "(the same every time as it is): the fix changes what it shows"
        )
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
    findings: list[NPlusOneFinding],
    run: Callable[[tuple[FixTarget, ...]], tuple[Outcome, int]],
) -> list[NPlusOneFinding]:
    """Each finding with its proof. ``run(targets)`` runs the page or test once with
    ``targets`` applied together (none: as it is), in a transaction rolled back, and
    returns its outcome and how often the fixes met their querysets."""
    if not any(finding.target is not None for finding in findings):
        return [_not_rerun(finding) for finding in findings]
    before, _ = run(())
    if before.error is not None:
        reason = f"it does not run twice: re-run as it is, it raised {before.error}"
        return [not_rerun(finding, reason) for finding in findings]
    if before.content is not None:
        # What the page shows is compared only if it shows the same every time as it is
        # (a CSRF token, the time, a random order make each answer new).
        again, _ = run(())
        if again.content != before.content:
            before = replace(before, content=None)
    proven = []
    for finding in findings:
        target = finding.target
        if target is None:
            proven.append(_not_rerun(finding))
            continue
        after, hits = run((target,))
        result = judged(finding, before, after, hits)
        if result is not None:
            proven.append(result)
    return _together(proven, before, run)


def _together(
    findings: list[NPlusOneFinding],
    before: Outcome,
    run: Callable[[tuple[FixTarget, ...]], tuple[Outcome, int]],
) -> list[NPlusOneFinding]:
    """Proven fixes of N+1s triggered in one function (one loop, fixed in one edit) run
    once more all at once. A proof says what they reach together only when its own fix
    counts there: together is below what the others reach without it."""
    by_function: dict[tuple[str, int], list[NPlusOneFinding]] = {}
    for finding in findings:
        proof, site = finding.proof, finding.call_site or ""
        if proof is None or proof.verdict != "proven" or finding.target is None:
            continue
        if finding.kind == "n_plus_one" and " in " in site:
            file, line = site.split(" in ")[0].rsplit(":", 1)
            function = enclosing_function(str(conf.PROJECT_ROOT / file), int(line))
            if function is not None:
                by_function.setdefault((file, function), []).append(finding)
    settled: dict[int, NPlusOneFinding] = {}
    for group in by_function.values():
        if len(group) < 2:
            continue
        all_of_them, _ = run(tuple(f.target for f in group if f.target is not None))
        if not _clean(all_of_them, before):
            continue
        for finding in group:
            others = [f for f in group if f is not finding]
            if len(others) == 1:
                without = others[0].proof.after if others[0].proof is not None else None
            else:
                outcome, _ = run(tuple(f.target for f in others if f.target is not None))
                without = outcome.queries if _clean(outcome, before) else None
            if finding.proof is None or without is None or all_of_them.queries >= without:
                continue
            proof = replace(
                finding.proof,
                together=all_of_them.queries,
                together_with=tuple(f.call_site or "" for f in others),
            )
            settled[id(finding)] = replace(finding, proof=proof)
    return [settled.get(id(finding), finding) for finding in findings]


def _clean(outcome: Outcome, before: Outcome) -> bool:
    """The run raised nothing, read what the code reads, and answered as before."""
    return not outcome.error and not outcome.mismatch and outcome.status == before.status


def rerun(
    findings: list[NPlusOneFinding],
    call: Callable[[], Answer],
    aliases: Iterable[str] = (DEFAULT_DB_ALIAS,),
) -> list[NPlusOneFinding]:
    """:func:`prove` for code that can run again: ``call()`` runs the page or test once
    and returns its status (None for a test), or raises. Each run is watched by a
    detection of its own, in a transaction rolled back on every database in ``aliases``,
    with cold local-memory caches."""
    from django_dbtune.nplusone import detect

    def run(targets: tuple[FixTarget, ...]) -> tuple[Outcome, int]:
        status = error = content = None
        fix = applied(*targets) if targets else nullcontext(Applied())
        with (
            unrecorded(),  # a capture around the page (dbtune_capture, CaptureMiddleware)
            rolled_back({DEFAULT_DB_ALIAS, *aliases}),
            cold_local_caches(),
            fetched_by_django(),  # the query cache's rows would hide what the fix changes
            detect(baseline=False, unused_eager_loads=False, reports_inner=True) as report,
            fix as seen,
        ):
            try:
                answered = call()
                status, content = answered if isinstance(answered, tuple) else (answered, None)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        # What the run repeated per row: as it is, what was found; with the fix, nothing of it.
        repeated = frozenset(loop for f in report.findings for loop in _loops(f))
        mismatch = seen.mismatches[0] if seen.mismatches else None
        outcome = Outcome(len(report.queries.records), status, error, repeated, mismatch, content)
        return outcome, seen.hits

    return prove(findings, run)


_settled: dict[tuple[object, ...], NPlusOneFinding | None] = {}
"""Findings already proven in this process, by fix, as their proof left them (None: a
removal the run disproved)."""
_settled_lock = threading.Lock()


def rerun_once(
    findings: list[NPlusOneFinding],
    call: Callable[[], Answer],
    aliases: Iterable[str] = (DEFAULT_DB_ALIAS,),
) -> list[NPlusOneFinding]:
    """:func:`rerun`, at most once per fix in this process (for the middleware and the
    toolbar, which see the same page again and again): a fix proven before keeps the proof
    measured then."""
    fresh = [finding for finding in findings if _settled_key(finding) not in _settled]
    now: dict[tuple[object, ...], NPlusOneFinding] = {}
    if fresh:
        now = {_settled_key(f): f for f in rerun(fresh, call, aliases)}
        with _settled_lock:
            for finding in fresh:
                _settled[_settled_key(finding)] = now.get(_settled_key(finding))
    kept = []
    for finding in findings:
        key = _settled_key(finding)
        if key in now:
            kept.append(now[key])
            continue
        settled = _settled.get(key)
        if settled is not None and settled.proof is not None:
            # What the proof changed comes along (a proven removal's note, the fix the
            # proof settled on), and the proof says it was measured on another request.
            proof = replace(settled.proof, earlier=True)
            kept.append(
                replace(
                    finding,
                    proof=proof,
                    advice=settled.advice,
                    fix=settled.fix,
                    proven_fix=settled.proven_fix,
                )
            )
    return kept


def forget_proofs() -> None:
    """Measure every fix again (tests, or after the code changed)."""
    with _settled_lock:
        _settled.clear()


def _settled_key(finding: NPlusOneFinding) -> tuple[object, ...]:
    target = finding.target
    place = target.place if target is not None else finding.call_site
    return (finding.kind, place, finding.relations, finding.path)
