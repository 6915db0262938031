"""Index advice from a recorded workload, proven by the planner.

The candidates of the recorded reads (``workload_candidates``) are tried on PostgreSQL:

- with HypoPG, as a hypothetical index (no lock, nothing built, works on a replica);
- else, only with ``allow_build`` (development databases), built for real inside a
  transaction that is rolled back, under ``lock_timeout`` and ``statement_timeout``.

Queries are planned with plain ``EXPLAIN`` (never ``ANALYZE``: nothing runs), and only the
recorded reads. Without recorded parameter values, a query is planned as a prepared statement
with ``plan_cache_mode = force_generic_plan``: the plan for any value.

A candidate is suggested when the planner uses it and the estimated cost of the queries it
serves falls by at least ``min_reduction``. Candidates are tried greedily, the most time
saved first (calls x cost saved), each against the indexes accepted before it, so one made
redundant by a better one is not suggested; at most ``max_per_table`` per table.

On MariaDB and MySQL, only with ``allow_build``: each candidate is built online and dropped
(``online_build``); MariaDB runs each recorded read with ``ANALYZE`` (never a write, nor a read
that locks rows) and the rows it reads are compared, since its cost estimate leaves out a
``LIMIT`` an index in the sort's order stops early. Reads recorded without values get values
from the tables (``table_values``).

On SQLite nothing can be tried hypothetically: ``full_scans`` shows which recorded queries
scan a whole table, with the index the rules would add.

Each trial index is rendered by Django from the ``models.Index`` the migration would write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import DatabaseError, connections

from django_dbtune.advisor import planner
from django_dbtune.advisor.full_scans import full_scans
from django_dbtune.advisor.planner import Plan, TrialIndexes
from django_dbtune.advisor.ranking import by_size
from django_dbtune.advisor.replan import for_vendor
from django_dbtune.advisor.scratch_copy import (
    ScratchCopies,
    on_sample,
    scratch_copies,
    stops_early,
)
from django_dbtune.advisor.trial_methods import ProofError as ProofError
from django_dbtune.advisor.trial_methods import trial_indexes
from django_dbtune.advisor.workload_candidates import (
    Outcome,
    Served,
    described,
    location,
    recorded,
    workload_candidates,
)
from django_dbtune.findings import Evidence, Finding, ProposedIndex, Severity, python_literal
from django_dbtune.schema import ModelSchema, leads_with
from django_dbtune.schema.innodb import database_name, is_mariadb
from django_dbtune.sql import locks, rename_table
from django_dbtune.workload import Shape

DEFAULT_MIN_REDUCTION = 0.2
"""An index is suggested when it cuts the estimated cost of the queries it serves by 20%."""
DEFAULT_MAX_PER_TABLE = 3
MIN_ROWS_SAVED = 1000
"""Where the rows read are compared (MariaDB), an index must save at least this many per
call: reading 50 rows instead of 40 passes a relative threshold, and costs every write for
nothing a page would show (measured: 0.81 ms before, 0.84 ms after)."""


def _plan_of(trials: TrialIndexes, shape: Shape, table: str) -> Plan | None:
    """The plan of a recorded read: for its recorded values, else for any value (MariaDB:
    for values read from the table); None when it cannot be planned. With scratch copies,
    of the read of ``table``'s copy, as a read of ``table``."""
    connection = trials.connection
    try:
        if connection.vendor == "mysql":
            sql, sample = shape.sql, None
            if trials.copies is not None:
                sample = trials.copies.of(table)  # (ScratchCopyError: not a DatabaseError)
                sql = rename_table(sql, table, sample.copy)
            params = shape.params if shape.params is not None else trials.values.params(sql)
            if params is None:
                return None
            if is_mariadb(connection) and not locks(sql):
                plan = planner.measure_mariadb(connection, sql, params)
            else:
                plan = planner.explain(connection, sql, params)
            if sample is None:
                return plan
            return on_sample(plan, sample, scaled=not stops_early(shape.sql))
        if shape.params is not None:
            return planner.explain(connection, shape.sql, shape.params)
        return planner.explain_generic(connection, shape.sql, dollar=shape.placeholders == "$")
    except DatabaseError:
        return None


# --- Proof ------------------------------------------------------------------------------------


@dataclass
class _Trial:
    served: Served
    proposal: ProposedIndex
    before: dict[int, Plan]
    after: dict[int, Plan]
    name: str
    baseline: dict[int, Plan] = field(default_factory=dict)
    """The plans with none of the suggested indexes: the database as it is."""

    def weighted(self, plans: dict[int, Plan]) -> float:
        return sum(shape.calls * plans[id(shape)].cost for shape in self.planned)

    @property
    def planned(self) -> list[Shape]:
        return [s for s in self.served.shapes if id(s) in self.before and id(s) in self.after]

    @property
    def helped(self) -> list[Shape]:
        """The queries whose plan uses the index and costs less with it."""
        return [
            s
            for s in self.planned
            if self.name in self.after[id(s)].all_indexes
            and self.after[id(s)].cost < self.before[id(s)].cost
        ]

    @property
    def saved(self) -> float:
        return self.weighted(self.before) - self.weighted(self.after)

    @property
    def reduction(self) -> float:
        """How much the cost of the queries that use the index falls."""
        helped = self.helped
        before = sum(s.calls * self.before[id(s)].cost for s in helped)
        after = sum(s.calls * self.after[id(s)].cost for s in helped)
        return (before - after) / before if before > 0 else 0.0

    @property
    def measured(self) -> bool:
        """Compared by the rows the reads read (MariaDB's ANALYZE), not by an estimate."""
        return any(self.before[id(s)].unit != "cost" for s in self.planned)

    @property
    def saved_per_call(self) -> float:
        """What one call of the queries the index helps saves, on average."""
        helped = self.helped
        calls = sum(s.calls for s in helped)
        saved = sum(s.calls * (self.before[id(s)].cost - self.after[id(s)].cost) for s in helped)
        return saved / calls if calls else 0.0

    @property
    def used(self) -> bool:
        return any(self.name in self.after[id(shape)].all_indexes for shape in self.planned)


def prove(
    shapes: list[Shape],
    schemas: dict[str, ModelSchema],
    database: str,
    *,
    allow_build: bool = False,
    scratch_rows: int | None = None,
    min_reduction: float = DEFAULT_MIN_REDUCTION,
    max_per_table: int = DEFAULT_MAX_PER_TABLE,
    outcome: Outcome | None = None,
) -> Outcome:
    """The candidates of ``shapes`` the planner proves, as findings (in ``outcome``, with
    what was left out)."""
    outcome = outcome if outcome is not None else Outcome()
    connection = connections[database]
    shapes = for_vendor(shapes, database, outcome)
    served = workload_candidates(shapes, schemas, outcome)
    if scratch_rows is not None and connection.vendor != "mysql":
        raise ProofError(
            "--scratch-copy is for MariaDB and MySQL, which have no hypothetical indexes; "
            f"{database!r} is {connection.vendor}, where it is not needed (PostgreSQL proves "
            "with HypoPG, or --allow-build; SQLite lists the reads that scan a whole table)."
        )
    if connection.vendor == "sqlite":
        outcome.method = "sqlite"
        outcome.findings = full_scans(connection, shapes, served, schemas, outcome)
        return outcome
    if connection.vendor not in ("postgresql", "mysql"):
        raise ProofError(
            f"Proving indexes needs PostgreSQL or MariaDB; {database!r} is {connection.vendor}."
        )
    trials = trial_indexes(connection, allow_build, scratch_rows)
    outcome.method = trials.method
    if scratch_rows is None:
        return _prove(trials, served, schemas, database, min_reduction, max_per_table, outcome)
    with scratch_copies(connection, scratch_rows) as trials.copies:
        outcome = _prove(trials, served, schemas, database, min_reduction, max_per_table, outcome)
        measured = is_mariadb(connection)
        outcome.samples = [s.describe(measured) for s in trials.copies.samples.values()]
        return outcome


def _prove(
    trials: TrialIndexes,
    served: list[Served],
    schemas: dict[str, ModelSchema],
    database: str,
    min_reduction: float,
    max_per_table: int,
    outcome: Outcome,
) -> Outcome:
    accepted: list[_Trial] = []
    tried = [_trial(trials, entry, [], outcome) for entry in served]
    pending = sorted((t for t in tried if t is not None), key=lambda t: -t.saved)
    per_table: dict[str, int] = {}
    for trial in pending:
        table = trial.served.model._meta.db_table
        if per_table.get(table, 0) >= max_per_table:
            outcome.skip(f"candidates beyond --max-per-table {max_per_table}")
            continue
        if accepted:  # again, with the indexes accepted so far in place
            again = _trial(trials, trial.served, accepted, outcome)
            if again is None:
                continue
            again.baseline = trial.before
            trial = again
        if not trial.used:
            outcome.skip("candidates the planner would not use")
            continue
        if trial.reduction < min_reduction:
            outcome.skip("candidates below the cost-reduction threshold")
            continue
        if trial.measured and trial.saved_per_call < MIN_ROWS_SAVED:
            outcome.skip(f"candidates saving fewer than {MIN_ROWS_SAVED:,} rows read per call")
            continue
        accepted.append(trial)
        per_table[table] = per_table.get(table, 0) + 1
    # An accepted index that leads another accepted one of the same table serves nothing
    # the longer one does not (the planner can read its leading columns alone).
    kept = [
        trial
        for trial in accepted
        if not any(
            other is not trial
            and other.served.model is trial.served.model
            and other.served.candidate.pattern == trial.served.candidate.pattern
            and len(other.served.candidate.fields) > len(trial.served.candidate.fields)
            and leads_with(other.served.candidate.fields, trial.served.candidate.fields)
            and set(trial.served.include)
            <= set(other.served.candidate.names) | set(other.served.include)
            and trial.served.condition == other.served.condition
            for other in accepted
        )
    ]
    for _ in range(len(accepted) - len(kept)):
        outcome.skip("candidates a longer accepted index of the same table leads with")
    outcome.findings = [
        _finding(trial, database, schemas, min_reduction, trials.method, trials.copies)
        for trial in kept
    ]
    return outcome


def _trial(
    trials: TrialIndexes, entry: Served, accepted: list[_Trial], outcome: Outcome
) -> _Trial | None:
    """The plans of the entry's queries without and with its index, the ``accepted`` ones
    present both times."""
    connection = trials.connection
    proposal = entry.proposal()
    table = entry.model._meta.db_table
    # On scratch copies a read runs against its candidate's table's copy: only the indexes
    # accepted for that table are on it.
    present = [
        (a.served.model, a.proposal.as_index())
        for a in accepted
        if trials.copies is None or a.served.model._meta.db_table == table
    ]
    # The plans without the entry's index depend only on what is present: planned once per
    # set of accepted indexes (on MariaDB each plan runs the read, each set is built).
    key = tuple(f"{model._meta.label} {index.deconstruct()}" for model, index in present)
    key += (table,) if trials.copies is not None else ()
    known = trials.plans.setdefault(key, {})
    try:
        if any(id(s) not in known for s in entry.shapes):
            with trials.present(present):
                for shape in entry.shapes:
                    if id(shape) not in known:
                        known[id(shape)] = _plan_of(trials, shape, table)
        before = {id(s): p for s in entry.shapes if (p := known[id(s)]) is not None}
        with trials.present([*present, (entry.model, proposal.as_index())]) as names:
            planned = {id(s): _plan_of(trials, s, table) for s in entry.shapes}
            after = {k: p for k, p in planned.items() if p is not None}
    except DatabaseError as error:
        if trials.method not in ("online", "sample"):
            raise
        if getattr(error.__cause__, "args", (None,))[:1] in ((1044,), (1142,)):
            # Access denied: no candidate will build; "no findings" would be a false answer.
            raise ProofError(
                f"Building a trial index was refused ({error}): the database user needs the "
                "CREATE, DROP, INSERT and INDEX privileges (ALTER too with --allow-build)."
            ) from None
        fields = ", ".join(entry.candidate.fields)
        outcome.skip(
            f"candidates {database_name(connection)} could not build: "
            f"{entry.model._meta.object_name}({fields}) ({error})"
        )
        return None
    # Rows read and estimated costs do not add up: where some reads ran (MariaDB), the
    # reads that could not (they lock rows) are left out of this comparison.
    if any(p.unit != "cost" for p in before.values()):
        before = {k: p for k, p in before.items() if p.unit != "cost"}
        after = {k: p for k, p in after.items() if p.unit != "cost"}
    if not before or not after:
        outcome.skip("queries the planner could not plan")
        return None
    return _Trial(entry, proposal, before, after, names[-1])


_HOW = {
    "hypopg": "a hypothetical index (HypoPG)",
    "build": "an index built and rolled back",
    "online": "an index built online and dropped",
    "sample": "an index built on a scratch copy",
}


def _severity(reduction: float) -> Severity:
    return "high" if reduction >= 0.9 else "medium" if reduction >= 0.5 else "low"


def _finding(
    trial: _Trial,
    database: str,
    schemas: dict[str, ModelSchema],
    min_reduction: float,
    method: str,
    copies: ScratchCopies | None = None,
) -> Finding:
    candidate = trial.served.candidate
    model = candidate.model
    table = model._meta.db_table
    shapes = trial.helped
    calls = sum(shape.calls for shape in shapes)
    total_ms = sum(shape.total_ms for shape in shapes)
    worst = max(
        shapes, key=lambda s: s.calls * (trial.before[id(s)].cost - trial.after[id(s)].cost)
    )
    before = (trial.baseline or trial.before).get(id(worst), trial.before[id(worst)])
    after = trial.after[id(worst)]
    measured = before.unit != "cost"
    how = _HOW[method]
    if copies is not None:
        how = f"an index built on {copies.of(table).describe(measured)}"
    if method in ("online", "sample"):
        how += " (ANALYZE: each read ran, its rows counted)" if measured else " (EXPLAIN)"
        if any(shape.params is None for shape in shapes):
            how += f", for values read from the {'copy' if copies else 'table'}"
    include = trial.served.include
    covering = f", reading only what it covers (include {', '.join(include)})" if include else ""
    condition = trial.served.condition
    if condition is not None:
        covering += (
            f"; every call compares {condition[0]} to {python_literal(condition[1])}, so a "
            "partial index holds only those rows"
        )
    what = "the rows read fall" if measured else "the estimated cost falls"
    shown = "{:,.0f}" if measured else "{:.1f}"
    # Tried after others were accepted: its reduction is what it adds to them, while the
    # largest saving is shown against the database as it is.
    beyond = " beyond the indexes suggested before it" if trial.baseline else ""
    against = ", against the database as it is" if trial.baseline else ""
    message = (
        f"{recorded(len(shapes), calls, total_ms, ('filters or sorts', 'filter or sort'))} "
        f"{model._meta.object_name} by ({', '.join(candidate.fields)}){covering}. "
        f"{'Run' if measured else 'Planned'} with {how}, "
        f"{'its' if len(shapes) == 1 else 'their'} {what.removeprefix('the ')} by "
        f"{trial.reduction:.0%}{beyond} (threshold "
        f"{min_reduction:.0%}); the largest saving{against}: "
        f"{before.reading(table)} {before.unit} {shown.format(before.cost)} -> "
        f"{after.reading(table).replace(trial.name, trial.proposal.name)} "
        f"{after.unit} {shown.format(after.cost)}."
    )
    evidence = tuple(
        Evidence(*location(site), described(shape))
        for shape in shapes
        for site in list(shape.call_sites)[:3]
    )
    why = f"{what} by {trial.reduction:.0%} (high from 90%, medium from 50%)"
    ranked = by_size(_severity(trial.reduction), why, schemas.get(model._meta.label))
    return Finding(
        kind="workload_index",
        severity=ranked.severity,
        model=model._meta.label,
        fields=candidate.fields,
        database=database,
        message=f"{message} {ranked.sentence}",
        index=trial.proposal,
        evidence=evidence,
        **ranked.size,
    )
