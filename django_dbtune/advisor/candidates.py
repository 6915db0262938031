"""From the queries the code writes to the indexes it lacks.

One candidate per call site: equality columns first (as written), then the first range or
prefix-search column, else the sort columns with their direction. Candidates of one model
where one is a leading prefix of another become one index. Nothing is suggested where the
first equality column already leads an index: it narrows the rows already, and whether a
wider index pays is for the planner to judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import DatabaseError, connections, models

from django_dbtune.advisor.code_scan import Usage
from django_dbtune.advisor.schema_rules import proposed_index
from django_dbtune.advisor.source import attribute_evidence
from django_dbtune.findings import (
    Evidence,
    Finding,
    ProposedIndex,
    Severity,
    condition_code,
    python_literal,
)
from django_dbtune.schema import ModelSchema, column_of, field_columns, leads_with

PATTERN_OPCLASS = {"CharField": "varchar_pattern_ops", "TextField": "text_pattern_ops"}


@dataclass
class Candidate:
    model: type[models.Model]
    fields: tuple[str, ...]
    """Field names, ``-`` for descending."""
    pattern: bool = False
    usages: list[Usage] = field(default_factory=list)
    from_meta_ordering: bool = False
    trigram: bool = False
    """A ``contains``/``icontains`` search, which only a trigram GIN index serves."""
    insensitive: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name.lstrip("-") for name in self.fields)


def candidates_for(usage: Usage) -> list[Candidate]:
    """The composite index that would serve this call site, and one index per field it
    filters where a composite cannot help (``exclude()``, ``Q`` objects)."""
    found = [
        Candidate(usage.model, (name,), False, [usage]) for name in dict.fromkeys(usage.single)
    ]
    found += [
        Candidate(usage.model, (name,), False, [usage], trigram=True, insensitive=insensitive)
        for name, insensitive in dict.fromkeys(usage.contains)
    ]
    main = _composite(usage)
    return [*found, main] if main else found


def _composite(usage: Usage) -> Candidate | None:
    model = usage.model
    pk = model._meta.pk.name if model._meta.pk else "id"
    equality: list[str] = []
    for name, _ in usage.equality:
        if name not in equality:
            equality.append(name)
    sort, from_meta = list(usage.sort), False
    if not usage.explicit_sort and model._meta.ordering:
        sort = [o for o in model._meta.ordering if isinstance(o, str) and "__" not in o]
        from_meta = bool(sort)
    sort = [name.replace("pk", pk) if name.lstrip("-") == "pk" else name for name in sort]
    pattern = False
    if usage.ranges:
        tail = [usage.ranges[0]]
        if sort and sort[0].lstrip("-") == usage.ranges[0]:
            tail = [sort[0]]
    elif usage.patterns:
        tail, pattern = [usage.patterns[0]], True
    else:
        tail = [name for name in sort if name.lstrip("-") not in equality]
    fields = tuple(equality + tail)
    if not fields:
        return None
    return Candidate(model, fields, pattern, [usage], from_meta and not usage.ranges)


def index_findings(usages: list[Usage], schemas: dict[str, ModelSchema]) -> list[Finding]:
    """unindexed_filter, composite_candidate and cannot_tell findings for these models."""
    findings: list[Finding] = []
    grouped: dict[tuple[Any, ...], Candidate] = {}
    trigrams = _Trigrams()
    for usage in usages:
        schema = schemas.get(usage.model._meta.label)
        if schema is None:
            continue
        if usage.dynamic_sort:
            findings.append(_cannot_tell(schema, usage))
        equality = tuple(dict.fromkeys(name for name, _ in usage.equality))
        for candidate in candidates_for(usage):
            if _is_low_cardinality(candidate):
                continue
            if candidate.trigram:
                if not trigrams.indexed(schema, candidate):
                    trigram_key = (
                        schema.label,
                        candidate.fields,
                        "trigram",
                        candidate.insensitive,
                    )
                    grouped.setdefault(trigram_key, replace(candidate, usages=[])).usages.append(
                        usage
                    )
                continue
            if (
                equality
                and leads_with(candidate.names, equality[:1])
                and schema.serves(field_columns(usage.model, equality[:1]), prefix=False)
            ):
                # An index already narrows by the first equality column; whether a wider
                # one pays is for the planner to say (the workload advisor), not a guess.
                continue
            columns = field_columns(usage.model, candidate.names)
            if schema.serves(columns, prefix=candidate.pattern):
                continue
            key: tuple[Any, ...] = (schema.label, candidate.fields, candidate.pattern)
            if key in grouped:
                grouped[key].usages.append(usage)
                grouped[key].from_meta_ordering |= candidate.from_meta_ordering
            else:
                grouped[key] = candidate
    constants = _constants(usages)
    for candidate in _merge_prefixes(list(grouped.values())):
        schema = schemas[candidate.model._meta.label]
        if candidate.trigram:
            findings.append(_trigram_finding(schema, candidate, trigrams.state(schema)))
            continue
        partial = partial_index(candidate, constants)
        if partial and has_partial(schema, candidate, partial):
            continue
        findings.append(_finding(schema, candidate, partial))
    return findings


def partial_fields(candidate: Candidate, partial: tuple[str, Any]) -> list[str]:
    rest = [name for name in candidate.fields if name.lstrip("-") != partial[0]]
    return rest or [partial[0]]


def has_partial(schema: ModelSchema, candidate: Candidate, partial: tuple[str, Any]) -> bool:
    """Whether the partial index this candidate calls for is declared already."""
    condition = str(models.Q(**{partial[0]: partial[1]}))
    columns = field_columns(
        candidate.model, (f.lstrip("-") for f in partial_fields(candidate, partial))
    )
    return any(
        index.condition == condition and leads_with(index.columns, columns)
        for index in schema.declared
    )


def _is_low_cardinality(candidate: Candidate) -> bool:
    if len(candidate.names) != 1:
        return False
    return isinstance(candidate.model._meta.get_field(candidate.names[0]), models.BooleanField)


def _merge_prefixes(candidates: list[Candidate]) -> list[Candidate]:
    """Fold each candidate into a longer one of the same model that it is a prefix of."""
    ordered = sorted(candidates, key=lambda c: (c.trigram, -len(c.fields)))
    kept: list[Candidate] = []
    for candidate in ordered:
        wider = next(
            (
                other
                for other in kept
                if other.model is candidate.model
                and not candidate.trigram
                and not other.trigram
                and other.pattern == candidate.pattern
                and leads_with(other.names, candidate.names)
            ),
            None,
        )
        if wider is None:
            kept.append(candidate)
        else:
            wider.usages.extend(candidate.usages)
            wider.from_meta_ordering |= candidate.from_meta_ordering
    return kept


def _constants(usages: list[Usage]) -> dict[tuple[str, str], list[Any]]:
    """Every value each (model, field) is compared to for equality; Ellipsis if not constant."""
    values: dict[tuple[str, str], list[Any]] = {}
    for usage in usages:
        for name, value in usage.equality:
            values.setdefault((usage.model._meta.label, name), []).append(value)
    return values


def partial_index(
    candidate: Candidate, constants: dict[tuple[str, str], list[Any]]
) -> tuple[str, Any] | None:
    """The (field, constant) to make a partial index on, when every call site agrees.

    Only for fields of a few known values (choices, booleans) filtered against the same
    constant at two or more call sites: one site is no evidence the other values are unused.
    """
    model = candidate.model
    for name in candidate.names:
        values = constants.get((model._meta.label, name), [])
        model_field = model._meta.get_field(name)
        few_values = bool(getattr(model_field, "choices", None)) or isinstance(
            model_field, models.BooleanField
        )
        if (
            few_values
            and len(values) >= 2
            and all(value is not ... for value in values)
            and len(set(map(repr, values))) == 1
        ):
            return name, values[0]
    return None


def pattern_opclasses(model: type[models.Model], fields: Sequence[str]) -> tuple[str, ...]:
    """The operator class of each of the index ``fields`` (as declared: the prefix-searched
    one last, ``LIKE 'abc%'``); empty when another one is not text. Django declares one
    class per field, and a text column's pattern class still serves equality."""
    found = []
    names = [name.lstrip("-") for name in fields]
    last = len(names) - 1
    for position, name in enumerate(names):
        model_field = model._meta.get_field(name)
        if position < last and not isinstance(model_field, models.CharField | models.TextField):
            return ()
        internal = model_field.get_internal_type()
        found.append(PATTERN_OPCLASS.get(internal, "varchar_pattern_ops"))
    return tuple(found)


def _finding(
    schema: ModelSchema, candidate: Candidate, partial: tuple[str, Any] | None
) -> Finding:
    model = candidate.model
    name = model._meta.object_name
    postgres = connections[schema.database].vendor == "postgresql"
    fields = list(candidate.fields)
    condition = None
    if partial:
        fields = partial_fields(candidate, partial)
        condition = condition_code(*partial)
    index = proposed_index(model, fields)
    opclasses: tuple[str, ...] = ()
    advice = None
    if candidate.pattern:
        opclasses = pattern_opclasses(model, fields)
        if not opclasses:
            others = ", ".join(name.lstrip("-") for name in fields[:-1])
            advice = (
                f"A prefix search (LIKE 'x%') on {candidate.names[-1]} needs a pattern-ops "
                f"operator class, and Django declares one class per column, which {others} "
                "(not text) cannot take: this index serves the equality columns only."
            )
        elif not postgres:
            listed = ", ".join(f"'{opclass}'" for opclass in opclasses)
            advice = (
                "On SQLite, LIKE is case-insensitive and uses no index unless "
                f"PRAGMA case_sensitive_like is on; on PostgreSQL add opclasses=[{listed}]."
            )
        if not postgres:
            opclasses = ()
    proposal = ProposedIndex(
        index.fields, index.name, opclasses, condition, condition_lookup=partial
    )
    sites = sorted({(u.file, u.line, u.code) for u in candidate.usages})
    evidence = [Evidence(file, line, code) for file, line, code in sites]
    if candidate.from_meta_ordering and (ordering := attribute_evidence(model, "ordering")):
        evidence.append(ordering)
    places = f"{len(sites)} place{'s' if len(sites) != 1 else ''}"
    described = ", ".join(candidate.fields)
    if len(candidate.fields) == 1:
        kind = "unindexed_filter"
        verb = "prefix-searched (startswith)" if candidate.pattern else "filtered or sorted"
        message = f"{name}.{candidate.names[0]} is {verb} in {places} and no index leads with it."
    else:
        kind = "composite_candidate"
        one = len(sites) == 1
        verbs = "filters {} and narrows or sorts" if one else "filter {} and narrow or sort"
        message = (
            f"{places} {verbs.format(name)} it by ({described}); one index serves "
            f"{'it' if one else 'them'}: equality columns first, then the range or sort column."
        )
    if partial:
        message += (
            f" Every call site compares {partial[0]} to {python_literal(partial[1])}, so a "
            "partial index holds only those rows."
        )
    if all(usage.admin for usage in candidate.usages):
        severity: Severity = "low"  # staff pages, run now and then
    elif any(usage.in_loop or usage.list_view for usage in candidate.usages):
        severity = "high"  # runs once per item of a loop, or behind a list page
    else:
        severity = "medium"
    return Finding(
        kind=kind,
        severity=severity,
        model=schema.label,
        fields=tuple(candidate.fields),
        database=schema.database,
        message=message,
        index=proposal,
        evidence=tuple(evidence),
        advice=advice,
    )


class _Trigrams:
    """What PostgreSQL offers for contains searches: the pg_trgm extension, and the trigram
    indexes tables already have (expression indexes that introspection does not describe)."""

    def __init__(self) -> None:
        self._states: dict[str, str | None] = {}
        self._definitions: dict[tuple[str, str], list[str]] = {}

    def state(self, schema: ModelSchema) -> str | None:
        """ "installed", "available", "missing", or None off PostgreSQL or when unreadable."""
        database = schema.database
        if database not in self._states:
            self._states[database] = None
            connection = connections[database]
            if connection.vendor == "postgresql" and schema.actual is not None:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT installed_version FROM pg_available_extensions "
                            "WHERE name = 'pg_trgm'"
                        )
                        row = cursor.fetchone()
                    self._states[database] = (
                        "missing" if row is None else "installed" if row[0] else "available"
                    )
                except DatabaseError:
                    pass
        return self._states[database]

    def indexed(self, schema: ModelSchema, candidate: Candidate) -> bool:
        if self.state(schema) is None:
            return False
        key = (schema.database, schema.table)
        if key not in self._definitions:
            with connections[schema.database].cursor() as cursor:
                cursor.execute(
                    "SELECT indexdef FROM pg_indexes WHERE tablename = %s", [schema.table]
                )
                self._definitions[key] = [row[0] for row in cursor.fetchall()]
        column = column_of(candidate.model._meta.get_field(candidate.names[0]))
        wanted = f"upper(({column})::text)" if candidate.insensitive else column
        return any(
            "gin_trgm_ops" in definition and wanted in definition.lower()
            for definition in self._definitions[key]
        )


def _trigram_finding(schema: ModelSchema, candidate: Candidate, state: str | None) -> Finding:
    model = candidate.model
    name = candidate.names[0]
    column = column_of(model._meta.get_field(name))
    lookup = "icontains" if candidate.insensitive else "contains"
    sites = sorted({(u.file, u.line, u.code) for u in candidate.usages})
    index_name = proposed_index(model, [name]).name.removesuffix("_idx") + "_trg"
    expression = f'(UPPER("{column}"::text))' if candidate.insensitive else f'"{column}"'
    sql = f'CREATE INDEX "{index_name}" ON "{schema.table}" USING gin ({expression} gin_trgm_ops)'
    advice = {
        "installed": "pg_trgm is installed in this database.",
        "available": "pg_trgm is available but not installed here: add "
        "django.contrib.postgres.operations.TrigramExtension() to the migration first.",
        "missing": "pg_trgm is not available on this server (it ships with PostgreSQL's "
        "contrib package); without it no index serves this search.",
        None: "On PostgreSQL a trigram GIN index (pg_trgm) serves it; SQLite has no index "
        "for LIKE '%x%'.",
    }[state]
    postgres = connections[schema.database].vendor == "postgresql"
    places = f"{len(sites)} place{'s' if len(sites) != 1 else ''}"
    return Finding(
        kind="unindexed_filter",
        severity="low" if all(u.admin for u in candidate.usages) else "medium",
        model=schema.label,
        fields=(name,),
        database=schema.database,
        message=(
            f"{model._meta.object_name}.{name} is searched with {lookup} in {places}: "
            "LIKE '%...%' reads every row unless a trigram index serves it."
        ),
        index=ProposedIndex((name,), index_name, ("gin_trgm_ops",), sql=sql)
        if postgres and state != "missing"
        else None,
        evidence=tuple(Evidence(file, line, code) for file, line, code in sites),
        advice=advice,
    )


def _cannot_tell(schema: ModelSchema, usage: Usage) -> Finding:
    return Finding(
        kind="cannot_tell",
        severity="low",
        model=schema.label,
        fields=(),
        database=schema.database,
        message=(
            f"order_by() with a value computed at run time on {usage.model._meta.object_name}: "
            "which column it sorts by cannot be told from the code."
        ),
        evidence=(Evidence(usage.file, usage.line, usage.code),),
    )
