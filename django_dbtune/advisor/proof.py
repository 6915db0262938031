"""Index advice from a recorded workload, proven by the planner.

Each recorded ORM query says which fields it filters and sorts by; the static advisor's
rules turn that into candidate indexes (equality columns first, then the range or prefix
column, else the sort columns). On PostgreSQL every candidate is then tried:

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

On SQLite nothing can be tried hypothetically: ``EXPLAIN QUERY PLAN`` shows which recorded
queries scan a whole table, with the index the rules would add.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any

import sqlglot
from django.apps import apps
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from sqlglot import exp
from sqlglot.errors import SqlglotError

from django_dbtune.advisor.candidates import (
    PATTERN_OPCLASS,
    Candidate,
    candidates_for,
    has_partial,
    partial_fields,
    partial_index,
)
from django_dbtune.advisor.code_scan import Usage
from django_dbtune.advisor.schema_rules import proposed_index
from django_dbtune.errors import DbtuneError
from django_dbtune.findings import (
    Evidence,
    Finding,
    ProposedIndex,
    Severity,
    condition_code,
    python_literal,
)
from django_dbtune.schema import ModelSchema, field_columns
from django_dbtune.workload import OrmUse, Shape

DEFAULT_MIN_REDUCTION = 0.2
"""An index is suggested when it cuts the estimated cost of the queries it serves by 20%."""
DEFAULT_MAX_PER_TABLE = 3
LOCK_TIMEOUT = "2s"
BUILD_TIMEOUT = "5min"


class ProofError(DbtuneError):
    """The planner cannot be asked (no HypoPG and building not allowed, no permission...)."""


@dataclass
class Plan:
    cost: float
    node: str
    """The node that reads the candidate's table, as ``Seq Scan on shop_book``."""
    indexes: frozenset[str]


@dataclass
class _Served:
    """A candidate and the recorded queries it would serve."""

    candidate: Candidate
    shapes: list[Shape] = field(default_factory=list)
    include: tuple[str, ...] = ()
    """Columns the index also stores, so that a query reading only them scans just the index."""
    condition: tuple[str, Any] | None = None
    """A partial index's (field, value): every recorded call compared the field to it."""

    @property
    def model(self) -> type[Model]:
        return self.candidate.model


@dataclass
class Outcome:
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    """Why shapes or candidates were left out, with how many."""
    method: str = ""

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


# --- From shapes to candidates -------------------------------------------------------------


def usage_of(shape: Shape, model: type[Model]) -> Usage | None:
    if shape.orm is None:
        return None
    site = shape.call_sites.most_common(1)[0][0] if shape.call_sites else "(unknown)"
    return usage_from(model, shape.orm, site, _described(shape))


def usage_from(model: type[Model], orm: OrmUse, site: str, code: str) -> Usage:
    """What a query filters and sorts by, as the static rules take a call site."""
    file, line = _site(site)
    return Usage(
        model=model,
        file=file,
        line=line,
        code=code,
        equality=[(name, ...) for name in orm.equality],
        ranges=list(orm.ranges),
        patterns=list(orm.patterns),
        sort=list(orm.sort),
        single=list(orm.single),
        contains=list(orm.contains),
        explicit_sort=orm.explicit_sort,
        list_view=orm.sliced,
    )


def _described(shape: Shape) -> str:
    calls = _count(shape.calls, "call", "calls")
    return f"{calls}, {shape.total_ms:.1f} ms: {_short(shape.sql)}"


def _short(sql: str, length: int = 140) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= length else sql[: length - 1] + "…"


def _model(label: str) -> type[Model] | None:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


def candidates(
    shapes: list[Shape], schemas: dict[str, ModelSchema], outcome: Outcome
) -> list[_Served]:
    """Every candidate index of the recorded reads, each to be tried against every recorded
    read of its model (the planner says which ones it serves)."""
    served: dict[tuple[Any, ...], _Served] = {}
    by_model: dict[str, list[Shape]] = {}
    for shape in shapes:
        if shape.kind != "read":
            continue
        if shape.orm is None:
            outcome.skip("queries not from the ORM (raw SQL) or with no ORM detail")
            continue
        schema = schemas.get(shape.orm.model)
        model = _model(shape.orm.model)
        if schema is None or model is None:
            outcome.skip("queries on tables no model of the checked apps owns")
            continue
        by_model.setdefault(shape.orm.model, []).append(shape)
        usage = usage_of(shape, model)
        if usage is None:
            continue
        # As the static rules: a field of a few values (choices, booleans) that every call
        # compares to one constant makes a partial index, when calls repeat it.
        constants = {
            (shape.orm.model, name): [value] * shape.calls
            for name, value in (shape.constants or {}).items()
        }
        for candidate in _orders(candidates_for(usage), usage):
            if candidate.trigram:
                outcome.skip("contains/icontains searches (trigram indexes are not tried)")
                continue
            key: tuple[Any, ...]
            partial = partial_index(candidate, constants)
            if partial is not None:
                if has_partial(schema, candidate, partial):
                    continue  # declared already
                fields = tuple(partial_fields(candidate, partial))
                key = (shape.orm.model, fields, candidate.pattern, (), partial)
                whole = replace(candidate, fields=fields)
                served.setdefault(key, _Served(whole, condition=partial))
                continue
            columns = field_columns(model, candidate.names)
            if schema.serves(columns, prefix=candidate.pattern):
                continue  # an index already starts with these columns
            key = (shape.orm.model, candidate.fields, candidate.pattern, (), None)
            served.setdefault(key, _Served(candidate))
            include = _covering(candidate, shape.orm.selects)
            if include:
                key = (shape.orm.model, candidate.fields, candidate.pattern, include, None)
                served.setdefault(key, _Served(candidate, include=include))
    for entry in served.values():
        entry.shapes = by_model[entry.model._meta.label]
    return list(served.values())


MAX_INCLUDE = 3
"""A covering index stores at most this many more columns."""


def _covering(candidate: Candidate, selects: list[str] | None) -> tuple[str, ...]:
    """The selected fields the candidate lacks, when an index could cover them all."""
    if not selects or candidate.pattern:
        return ()
    extra = tuple(name for name in dict.fromkeys(selects) if name not in candidate.names)
    return extra if 0 < len(extra) <= MAX_INCLUDE else ()


def _orders(found: list[Candidate], usage: Usage) -> Iterator[Candidate]:
    """Each candidate, and with several equality columns, each order of them: which one
    should lead depends on the other queries, which the planner weighs."""
    equality = {name for name, _ in usage.equality}
    for candidate in found:
        yield candidate
        lead = 0
        while lead < len(candidate.fields) and candidate.fields[lead] in equality:
            lead += 1
        if 2 <= lead <= 3:
            for order in itertools.permutations(candidate.fields[:lead]):
                if order != candidate.fields[:lead]:
                    yield replace(candidate, fields=order + candidate.fields[lead:])


# --- The planner ---------------------------------------------------------------------------


class Planner:
    """EXPLAIN on one PostgreSQL connection, with candidate indexes present."""

    def __init__(self, connection: BaseDatabaseWrapper, allow_build: bool) -> None:
        self.connection = connection
        self.allow_build = allow_build
        self.method = self._method()
        self._names = itertools.count(1)

    def _method(self) -> str:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'")
            if cursor.fetchone():
                return "hypopg"
            cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'")
            available = cursor.fetchone() is not None
        if self.allow_build:
            return "build"
        hint = (
            "It is installed on the server: run CREATE EXTENSION hypopg; in the database"
            if available
            else "Install it on the server (Debian: postgresql-15-hypopg) and run CREATE "
            "EXTENSION hypopg; in the database"
        )
        raise ProofError(
            f"Proving indexes needs HypoPG (hypothetical indexes), which database "
            f"{self.connection.alias!r} does not have. {hint}, or pass --allow-build to build "
            "each candidate inside a transaction that is rolled back (development databases "
            "only: it locks writes to the table while it builds)."
        )

    def plan(self, shape: Shape, table: str) -> Plan | None:
        """The plan of a recorded read, or None when it cannot be planned."""
        alias = self.connection.alias
        if shape.params is not None:
            try:
                with transaction.atomic(using=alias), self.connection.cursor() as cursor:
                    cursor.execute(f"EXPLAIN (FORMAT JSON) {shape.sql}", shape.params)
                    return _parse(cursor.fetchone(), table)
            except DatabaseError:
                return None
        name = f"dbtune_plan_{next(self._names)}"
        if shape.placeholders == "$":
            positional, count = shape.sql, _dollar_parameters(shape.sql)
        else:
            positional, count = _positional(shape.sql)
        arguments = f"({', '.join(['NULL'] * count)})" if count else ""
        try:
            with transaction.atomic(using=alias), self.connection.cursor() as cursor:
                cursor.execute(f"PREPARE {name} AS {positional}")
                cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {name}{arguments}")
                row = cursor.fetchone()
                cursor.execute("SET LOCAL plan_cache_mode = DEFAULT")
            return _parse(row, table)
        except DatabaseError:
            return None
        finally:
            # A prepared statement outlives a rolled-back transaction: always let it go.
            with (
                suppress(DatabaseError),
                transaction.atomic(using=alias),
                self.connection.cursor() as cursor,
            ):
                cursor.execute(f"DEALLOCATE {name}")

    @contextmanager
    def trying(self, statements: list[str]) -> Iterator[list[str]]:
        """The indexes present while planning: their names as plans show them."""
        if self.method == "hypopg":
            names = []
            try:
                with self.connection.cursor() as cursor:
                    for statement in statements:
                        cursor.execute(
                            "SELECT indexname FROM hypopg_create_index(%s)", [statement]
                        )
                        names.append(cursor.fetchone()[0])
                yield names
            finally:
                with self.connection.cursor() as cursor:
                    cursor.execute("SELECT hypopg_reset()")
            return
        with transaction.atomic(using=self.connection.alias):
            with self.connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cursor.execute(f"SET LOCAL statement_timeout = '{BUILD_TIMEOUT}'")
                names = []
                for statement in statements:
                    name = f"dbtune_trial_{next(self._names)}"
                    cursor.execute(
                        statement.replace("CREATE INDEX ON", f"CREATE INDEX {name} ON", 1)
                    )
                    names.append(name)
            try:
                yield names
            finally:
                transaction.set_rollback(True, using=self.connection.alias)


def _positional(sql: str) -> tuple[str, int]:
    """Django's ``%s`` placeholders as ``$1, $2...`` (and ``%%`` as ``%``)."""
    out: list[str] = []
    count = 0
    i = 0
    while i < len(sql):
        pair = sql[i : i + 2]
        if pair == "%s":
            count += 1
            out.append(f"${count}")
            i += 2
        elif pair == "%%":
            out.append("%")
            i += 2
        else:
            out.append(sql[i])
            i += 1
    return "".join(out), count


def _dollar_parameters(sql: str) -> int:
    """How many ``$n`` parameters a statement takes (the highest n)."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except SqlglotError:
        return 0
    numbers = [int(p.name) for p in tree.find_all(exp.Parameter) if p.name.isdigit()]
    return max(numbers, default=0)


def _parse(row: Any, table: str) -> Plan:
    document = row[0]
    if isinstance(document, str):
        document = json.loads(document)
    top = document[0]["Plan"]
    indexes: set[str] = set()
    node = ""
    stack = [top]
    while stack:
        current = stack.pop()
        if "Index Name" in current:
            indexes.add(str(current["Index Name"]))
        if not node and current.get("Relation Name") == table:
            node = f"{current['Node Type']} on {table}"
            # A Bitmap Heap Scan names its index on the Bitmap Index Scan below it.
            below = [current, *current.get("Plans", [])]
            used = next((str(n["Index Name"]) for n in below if "Index Name" in n), None)
            if used:
                node += f" using {used}"
        stack.extend(current.get("Plans", []))
    return Plan(float(top["Total Cost"]), node or str(top["Node Type"]), frozenset(indexes))


def create_statement(
    connection: BaseDatabaseWrapper,
    candidate: Candidate,
    include: tuple[str, ...] = (),
    condition: tuple[str, Any] | None = None,
) -> str:
    quote = connection.ops.quote_name
    model = candidate.model
    parts = []
    for position, name in enumerate(candidate.fields):
        column = quote(field_columns(model, [name.lstrip("-")])[0])
        if candidate.pattern and position == 0:
            internal = model._meta.get_field(name.lstrip("-")).get_internal_type()
            column += " " + PATTERN_OPCLASS.get(internal, "varchar_pattern_ops")
        if name.startswith("-"):
            column += " DESC"
        parts.append(column)
    statement = f"CREATE INDEX ON {quote(model._meta.db_table)} ({', '.join(parts)})"
    if include:
        columns = ", ".join(quote(column) for column in field_columns(model, include))
        statement += f" INCLUDE ({columns})"
    if condition is not None:
        name, value = condition
        column = quote(field_columns(model, [name])[0])
        literal = connection.schema_editor().quote_value(value)
        statement += f" WHERE {column} = {literal}"
    return statement


# --- Proof ------------------------------------------------------------------------------------


@dataclass
class _Trial:
    served: _Served
    statement: str
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
            if self.name in self.after[id(s)].indexes
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
    def used(self) -> bool:
        return any(self.name in self.after[id(shape)].indexes for shape in self.planned)


def prove(
    shapes: list[Shape],
    schemas: dict[str, ModelSchema],
    database: str,
    *,
    allow_build: bool = False,
    min_reduction: float = DEFAULT_MIN_REDUCTION,
    max_per_table: int = DEFAULT_MAX_PER_TABLE,
    outcome: Outcome | None = None,
) -> Outcome:
    """The candidates of ``shapes`` the planner proves, as findings (in ``outcome``, with
    what was left out)."""
    outcome = outcome if outcome is not None else Outcome()
    connection = connections[database]
    shapes = [shape for shape in shapes if shape.vendor == connection.vendor]
    served = candidates(shapes, schemas, outcome)
    if connection.vendor == "sqlite":
        outcome.method = "sqlite"
        outcome.findings = _sqlite_scans(connection, shapes, served, outcome)
        return outcome
    if connection.vendor != "postgresql":
        raise ProofError(f"Proving indexes needs PostgreSQL; {database!r} is {connection.vendor}.")
    planner = Planner(connection, allow_build)
    outcome.method = planner.method
    accepted: list[_Trial] = []
    trials = [_trial(planner, entry, [], outcome) for entry in served]
    pending = sorted((t for t in trials if t is not None), key=lambda t: -t.saved)
    per_table: dict[str, int] = {}
    for trial in pending:
        table = trial.served.model._meta.db_table
        if per_table.get(table, 0) >= max_per_table:
            outcome.skip(f"candidates beyond --max-per-table {max_per_table}")
            continue
        if accepted:  # again, with the indexes accepted so far in place
            again = _trial(planner, trial.served, [a.statement for a in accepted], outcome)
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
            and other.served.candidate.fields[: len(trial.served.candidate.fields)]
            == trial.served.candidate.fields
            and set(trial.served.include)
            <= set(other.served.candidate.names) | set(other.served.include)
            and trial.served.condition == other.served.condition
            for other in accepted
        )
    ]
    for _ in range(len(accepted) - len(kept)):
        outcome.skip("candidates a longer accepted index of the same table leads with")
    outcome.findings = [_finding(trial, database, min_reduction, planner.method) for trial in kept]
    return outcome


def _trial(
    planner: Planner, entry: _Served, present: list[str], outcome: Outcome
) -> _Trial | None:
    table = entry.model._meta.db_table
    statement = create_statement(
        planner.connection, entry.candidate, entry.include, entry.condition
    )
    with planner.trying(present):
        before = {id(s): p for s in entry.shapes if (p := planner.plan(s, table)) is not None}
    with planner.trying([*present, statement]) as names:
        after = {id(s): p for s in entry.shapes if (p := planner.plan(s, table)) is not None}
    if not before or not after:
        outcome.skip("queries the planner could not plan")
        return None
    return _Trial(entry, statement, before, after, names[-1])


def _severity(reduction: float) -> Severity:
    return "high" if reduction >= 0.9 else "medium" if reduction >= 0.5 else "low"


def _finding(trial: _Trial, database: str, min_reduction: float, method: str) -> Finding:
    candidate = trial.served.candidate
    model = candidate.model
    index = proposed_index(model, list(candidate.fields))
    opclasses: tuple[str, ...] = ()
    if candidate.pattern:
        internal = model._meta.get_field(candidate.names[0]).get_internal_type()
        opclasses = (PATTERN_OPCLASS.get(internal, "varchar_pattern_ops"),)
    shapes = trial.helped
    calls = sum(shape.calls for shape in shapes)
    total_ms = sum(shape.total_ms for shape in shapes)
    worst = max(
        shapes, key=lambda s: s.calls * (trial.before[id(s)].cost - trial.after[id(s)].cost)
    )
    before = (trial.baseline or trial.before).get(id(worst), trial.before[id(worst)])
    after = trial.after[id(worst)]
    how = (
        "a hypothetical index (HypoPG)" if method == "hypopg" else "an index built and rolled back"
    )
    include = trial.served.include
    covering = f", reading only what it covers (include {', '.join(include)})" if include else ""
    condition = trial.served.condition
    if condition is not None:
        covering += (
            f"; every call compares {condition[0]} to {python_literal(condition[1])}, so a "
            "partial index holds only those rows"
        )
    message = (
        f"{_count(len(shapes), 'recorded query', 'recorded queries')} "
        f"({_count(calls, 'call', 'calls')}, {total_ms:.1f} ms in total) filter or sort "
        f"{model._meta.object_name} by ({', '.join(candidate.fields)}){covering}. "
        f"Planned with {how}, "
        f"their estimated cost falls by {trial.reduction:.0%} (threshold "
        f"{min_reduction:.0%}); the largest saving: "
        f"{before.node} cost {before.cost:.1f} -> {after.node.replace(trial.name, index.name)} "
        f"cost {after.cost:.1f}."
    )
    evidence = tuple(
        Evidence(*_site(site), _described(shape))
        for shape in shapes
        for site in list(shape.call_sites)[:3]
    )
    return Finding(
        kind="workload_index",
        severity=_severity(trial.reduction),
        model=model._meta.label,
        fields=candidate.fields,
        database=database,
        message=message,
        index=ProposedIndex(
            index.fields,
            index.name,
            opclasses,
            condition=condition_code(*condition) if condition else None,
            include=trial.served.include,
            condition_lookup=condition,
        ),
        evidence=evidence,
    )


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _site(site: str) -> tuple[str, int]:
    file, _, rest = site.partition(":")
    number = rest.partition(" ")[0]
    return file, int(number) if number.isdigit() else 0


# --- SQLite -------------------------------------------------------------------------------


def _sqlite_scans(
    connection: BaseDatabaseWrapper, shapes: list[Shape], served: list[_Served], outcome: Outcome
) -> list[Finding]:
    """Recorded reads whose plan scans a whole table, grouped by the index the rules would
    add for them (the longest candidate of the model that starts with the shape's own)."""
    offered = [entry.candidate for entry in served]
    scanned: dict[tuple[str, tuple[str, ...]], list[tuple[Shape, str]]] = {}
    wanted: dict[tuple[str, tuple[str, ...]], Candidate] = {}
    for shape in shapes:
        model = _model(shape.orm.model) if shape.orm is not None else None
        usage = usage_of(shape, model) if model is not None else None
        own = [c for c in candidates_for(usage) if not c.trigram] if usage is not None else []
        if model is None or not own:
            continue  # nothing filtered or sorted that a new index could serve
        found = max(own, key=lambda c: len(c.fields))  # the composite, when there is one
        longer = [
            c
            for c in offered
            if c.model is model and c.fields[: len(found.fields)] == found.fields
        ]
        if not longer:
            continue  # an existing index already leads with these columns
        found = max(longer, key=lambda c: len(c.fields))
        table = model._meta.db_table
        params = shape.params if shape.params is not None else [None] * shape.sql.count("%s")
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN QUERY PLAN {shape.sql}", params)
                details = [str(row[-1]) for row in cursor.fetchall()]
        except DatabaseError:
            outcome.skip("queries the planner could not plan")
            continue
        scans = [d for d in details if d.startswith("SCAN") and d.split()[1:2] == [table]]
        if scans:
            key = (model._meta.label, found.fields)
            scanned.setdefault(key, []).append((shape, scans[0]))
            wanted[key] = found
    return [_scan_finding(connection.alias, wanted[key], found) for key, found in scanned.items()]


def _scan_finding(database: str, candidate: Candidate, scans: list[tuple[Shape, str]]) -> Finding:
    model = candidate.model
    proposed = proposed_index(model, list(candidate.fields))
    calls = sum(shape.calls for shape, _ in scans)
    total_ms = sum(shape.total_ms for shape, _ in scans)
    return Finding(
        kind="workload_scan",
        severity="medium" if calls > 1 else "low",
        model=model._meta.label,
        fields=candidate.fields,
        database=database,
        message=(
            f"{_count(len(scans), 'recorded query', 'recorded queries')} "
            f"({_count(calls, 'call', 'calls')}, {total_ms:.1f} ms in total) "
            f"{'reads' if len(scans) == 1 else 'read'} the whole table: EXPLAIN QUERY PLAN "
            f"says {scans[0][1]!r}. One index would serve {'it' if len(scans) == 1 else 'them'}."
        ),
        index=ProposedIndex(proposed.fields, proposed.name),
        evidence=tuple(
            Evidence(*_site(site), _described(shape))
            for shape, _ in scans
            for site in list(shape.call_sites)[:3]
        ),
        advice=(
            "SQLite cannot try an index without building it: record the workload against "
            "PostgreSQL to have the planner prove the index first."
        ),
    )
