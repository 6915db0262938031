"""From recorded query shapes to the candidate indexes worth trying, each with the recorded
reads it may serve.

Each recorded ORM query says which fields it filters and sorts by; the static advisor's
rules turn that into candidate indexes (equality columns first, then the range or prefix
column, else the sort columns), with a covering variant when a query reads few columns and a
partial one when every call compares a field of few values to one constant. The proof
(PostgreSQL) tries them with the planner; on SQLite the full scans they would end are shown.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from django.apps import apps
from django.db import connections
from django.db.models import Model

from django_dbtune.advisor.candidates import Candidate, candidates_for, pattern_opclasses
from django_dbtune.advisor.code_scan import Usage
from django_dbtune.advisor.own_columns import call_of
from django_dbtune.advisor.partials import has_partial, partial_fields, partial_index
from django_dbtune.advisor.schema_rules import proposed_index
from django_dbtune.advisor.sql_reads import use_of
from django_dbtune.findings import Finding, ProposedIndex, condition_code
from django_dbtune.schema import ModelSchema, field_columns
from django_dbtune.workload import OrmUse, Shape


@dataclass
class Outcome:
    """What the proof found, and why shapes or candidates were left out."""

    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    """Why shapes or candidates were left out, with how many."""
    method: str = ""
    replanned: dict[str, int] = field(default_factory=dict)
    """Reads recorded on another vendor, rebuilt from their ORM fields: how many, by vendor."""
    samples: list[str] = field(default_factory=list)
    """On scratch copies: each table's copy, described (its rows, of the table's)."""

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass
class Served:
    """A candidate and the recorded queries it would serve."""

    candidate: Candidate
    shapes: list[Shape] = field(default_factory=list)
    include: tuple[str, ...] = ()
    """Columns the index also stores, so that a query reading only them scans just the index."""
    condition: tuple[str, Any] | None = None
    """A partial index's (field, value): every recorded call compared the field to it."""
    opclasses: bool = True
    """A prefix search's index takes pattern operator classes (PostgreSQL's): elsewhere a
    plain index, which the planner proves or not (MariaDB reads ``LIKE 'abc%'`` through one
    under a case-insensitive collation)."""

    @property
    def model(self) -> type[Model]:
        return self.candidate.model

    def proposal(self) -> ProposedIndex:
        """The index as ``Meta.indexes`` and the migration declare it, under Django's name."""
        candidate = self.candidate
        named = proposed_index(self.model, list(candidate.fields))
        condition = self.condition
        return ProposedIndex(
            named.fields,
            named.name,
            pattern_opclasses(self.model, candidate.fields)
            if candidate.pattern and self.opclasses
            else (),
            condition=condition_code(*condition) if condition else None,
            include=self.include,
            condition_lookup=condition,
        )


def usage_of(shape: Shape, model: type[Model]) -> Usage | None:
    if shape.orm is None:
        return None
    site = shape.call_sites.most_common(1)[0][0] if shape.call_sites else "(unknown)"
    return usage_from(model, shape.orm, site, described(shape))


def usage_from(model: type[Model], orm: OrmUse, site: str, code: str) -> Usage:
    """What a query filters and sorts by, as the static rules take a call site."""
    file, line = location(site)
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


def described(shape: Shape) -> str:
    calls = plural(shape.calls, "call", "calls")
    return f"{calls}, {shape.total_ms:.1f} ms: {_short(shape.sql)}"


def _short(sql: str, length: int = 140) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= length else sql[: length - 1] + "…"


def model_named(label: str) -> type[Model] | None:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


def workload_candidates(
    shapes: list[Shape], schemas: dict[str, ModelSchema], outcome: Outcome
) -> list[Served]:
    """Every candidate index of the recorded reads, each to be tried against every recorded
    read of its model (the planner says which ones it serves)."""
    served: dict[tuple[Any, ...], Served] = {}
    by_model: dict[str, list[Shape]] = {}
    for shape in shapes:
        if shape.kind != "read":
            continue
        if not shape.tables:  # SELECT VERSION(), @@sql_mode: Django setting up a connection
            outcome.skip("statements that read no table (no index can serve them)")
            continue
        if shape.orm is None:
            outcome.skip("queries not from the ORM (raw SQL) or with no ORM detail")
            continue
        schema = schemas.get(shape.orm.model)
        model = model_named(shape.orm.model)
        if schema is None or model is None:
            outcome.skip("queries on tables no model of the checked apps owns")
            continue
        if _unknown_fields(shape.orm, model):
            outcome.skip("queries on fields the model does not have (recorded before a change?)")
            continue
        by_model.setdefault(shape.orm.model, []).append(shape)
        usage = usage_of(shape, model)
        if usage is None:
            continue
        # As the static rules: a field of a few values (choices, booleans) that every call
        # compares to one constant makes a partial index, when calls repeat it (and the
        # database has partial indexes: MySQL and MariaDB build one whole).
        features = connections[schema.database].features
        partial_indexes = features.supports_partial_indexes
        opclasses = connections[schema.database].vendor == "postgresql"
        constants = {
            (shape.orm.model, name): [value] * shape.calls
            for name, value in (shape.constants or {}).items()
        }
        # And an index the table has serves what it serves: a partial one, the calls that
        # imply its condition (by the SQL's own constants, and the recorded ones).
        call = call_of(usage, {**_literals(shape, schema), **(shape.constants or {})})
        for candidate in _orders(candidates_for(usage), usage):
            if candidate.search:
                outcome.skip("contains-style searches (GIN indexes are not tried)")
                continue
            if (
                candidate.pattern
                and opclasses
                and not pattern_opclasses(candidate.model, candidate.fields)
            ):
                outcome.skip("prefix searches after a column that is not text (no operator class)")
                continue
            key: tuple[Any, ...]
            partial = partial_index(candidate, constants) if partial_indexes else None
            if partial is not None:
                if has_partial(schema, candidate, partial):
                    continue  # declared already
                fields = tuple(partial_fields(candidate, partial))
                key = (shape.orm.model, fields, candidate.pattern, (), partial)
                whole = replace(candidate, fields=fields)
                served.setdefault(key, Served(whole, condition=partial))
                continue
            columns = field_columns(model, candidate.names)
            if schema.serves(columns, prefix=candidate.pattern, call=call):
                continue  # an index the table has serves these columns already
            key = (shape.orm.model, candidate.fields, candidate.pattern, (), None)
            served.setdefault(key, Served(candidate, opclasses=opclasses))
            include = _covering(candidate, shape.orm.selects)
            if include and features.supports_covering_indexes:
                key = (shape.orm.model, candidate.fields, candidate.pattern, include, None)
                served.setdefault(key, Served(candidate, include=include, opclasses=opclasses))
    for entry in served.values():
        entry.shapes = by_model[entry.model._meta.label]
    return list(served.values())


def _unknown_fields(orm: OrmUse, model: type[Model]) -> bool:
    """A recorded field the model lacks (renamed or removed since the recording)."""
    names = {f.name for f in model._meta.concrete_fields} | {"pk"}
    recorded = [*orm.equality, *orm.ranges, *orm.patterns, *orm.single]
    recorded += [name for name, _ in orm.contains] + [name.lstrip("-") for name in orm.sort]
    return any(name.split("__")[0] not in names for name in recorded)


def _literals(shape: Shape, schema: ModelSchema) -> dict[str, Any]:
    """The constants a recorded read's SQL states itself (``IS NULL``, a boolean column
    alone), which no recorded value is needed for."""
    read = use_of(shape.sql, shape.vendor, {schema.table: schema.model})
    return read.literals if read is not None else {}


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


def plural(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def recorded(queries: int, calls: int, total_ms: float, verb: tuple[str, str]) -> str:
    """How a workload finding opens: ``1 recorded query (5 calls, 9.0 ms in total) reads``,
    the verb (singular, plural) agreeing with the number of queries."""
    return (
        f"{plural(queries, 'recorded query', 'recorded queries')} "
        f"({plural(calls, 'call', 'calls')}, {total_ms:.1f} ms in total) "
        f"{verb[0] if queries == 1 else verb[1]}"
    )


def location(site: str) -> tuple[str, int]:
    """A call site's file and line: ``"shop/views.py:12 in view"`` -> ``("shop/views.py", 12)``."""
    file, _, rest = site.partition(":")
    number = rest.partition(" ")[0]
    return file, int(number) if number.isdigit() else 0
