"""SQLite's answer to a recorded workload: which recorded reads scan a whole table.

SQLite cannot try an index without building it, so nothing is proven here: ``EXPLAIN QUERY
PLAN`` shows the reads that go through every row, grouped by the index the rules would add.
"""

from __future__ import annotations

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from django_dbtune.advisor import planner
from django_dbtune.advisor.candidates import Candidate, candidates_for
from django_dbtune.advisor.ranking import by_size
from django_dbtune.advisor.schema_rules import proposed_index
from django_dbtune.advisor.workload_candidates import (
    Outcome,
    Served,
    described,
    location,
    model_named,
    recorded,
    usage_of,
)
from django_dbtune.findings import Evidence, Finding, ProposedIndex
from django_dbtune.schema import ModelSchema, leads_with
from django_dbtune.workload import Shape


def full_scans(
    connection: BaseDatabaseWrapper,
    shapes: list[Shape],
    served: list[Served],
    schemas: dict[str, ModelSchema],
    outcome: Outcome,
) -> list[Finding]:
    """Recorded reads whose plan scans a whole table, grouped by the index the rules would
    add for them (the longest candidate of the model that starts with the shape's own)."""
    offered = [entry.candidate for entry in served]
    scanned: dict[tuple[str, tuple[str, ...]], list[tuple[Shape, str]]] = {}
    wanted: dict[tuple[str, tuple[str, ...]], Candidate] = {}
    for shape in shapes:
        model = model_named(shape.orm.model) if shape.orm is not None else None
        usage = usage_of(shape, model) if model is not None else None
        own = [c for c in candidates_for(usage) if not c.search] if usage is not None else []
        if model is None or not own:
            continue  # nothing filtered or sorted that a new index could serve
        found = max(own, key=lambda c: len(c.fields))  # the composite, when there is one
        longer = [c for c in offered if c.model is model and leads_with(c.fields, found.fields)]
        if not longer:
            continue  # an existing index already leads with these columns
        found = max(longer, key=lambda c: len(c.fields))
        params = shape.params if shape.params is not None else [None] * shape.sql.count("%s")
        try:
            plan = planner.explain(connection, shape.sql, params)
        except DatabaseError:
            outcome.skip("queries the planner could not plan")
            continue
        scans = plan.full_reads(model._meta.db_table)
        if scans:
            key = (model._meta.label, found.fields)
            scanned.setdefault(key, []).append((shape, scans[0].detail))
            wanted[key] = found
    return [
        _finding(connection.alias, wanted[key], found, schemas.get(key[0]))
        for key, found in scanned.items()
    ]


def _finding(
    database: str,
    candidate: Candidate,
    scans: list[tuple[Shape, str]],
    schema: ModelSchema | None,
) -> Finding:
    model = candidate.model
    proposed = proposed_index(model, list(candidate.fields))
    calls = sum(shape.calls for shape, _ in scans)
    total_ms = sum(shape.total_ms for shape, _ in scans)
    why = "called more than once" if calls > 1 else "called once"
    ranked = by_size("medium" if calls > 1 else "low", why, schema)
    return Finding(
        kind="workload_scan",
        severity=ranked.severity,
        model=model._meta.label,
        fields=candidate.fields,
        database=database,
        message=(
            f"{recorded(len(scans), calls, total_ms, ('reads', 'read'))} the whole table: "
            "EXPLAIN QUERY PLAN "
            f"says {scans[0][1]!r}. One index would serve {'it' if len(scans) == 1 else 'them'}. "
            f"{ranked.sentence}"
        ),
        index=ProposedIndex(proposed.fields, proposed.name),
        evidence=tuple(
            Evidence(*location(site), described(shape))
            for shape, _ in scans
            for site in list(shape.call_sites)[:3]
        ),
        advice=(
            "SQLite cannot try an index without building it: record the workload against "
            "PostgreSQL to have the planner prove the index first."
        ),
        **ranked.size,
    )
