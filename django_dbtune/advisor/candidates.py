"""From the queries the code writes to the indexes it lacks.

One candidate per call site: equality columns first (as written), then the first range or
prefix-search column, else the sort columns with their direction. Candidates of one model
where one is a leading prefix of another become one index. Nothing is suggested where the
first equality column already leads an index: it narrows the rows already, and whether a
wider index pays is for the planner to judge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import connections, models

from django_dbtune.advisor.code_scan import Usage
from django_dbtune.advisor.equality import equality_columns, piles_up
from django_dbtune.advisor.own_columns import (
    call_of,
    column_field,
    indexable,
    nulls_placed,
    sort_prefix,
)
from django_dbtune.advisor.partials import (
    constants_of,
    has_partial,
    partial_fields,
    partial_index,
)
from django_dbtune.advisor.ranking import rank
from django_dbtune.advisor.schema_rules import proposed_index
from django_dbtune.advisor.searches import TEXT_FIELDS, Searches, search_finding, search_kind
from django_dbtune.advisor.source import attribute_evidence
from django_dbtune.findings import (
    Evidence,
    Finding,
    ProposedIndex,
    condition_code,
    python_literal,
)
from django_dbtune.schema import ModelSchema, column_of, field_columns, leads_with
from django_dbtune.schema.innodb import (
    PREFIX_LENGTH,
    database_name,
    is_mariadb,
    prefix_index_sql,
    prefix_only,
)

PATTERN_OPCLASS = {"CharField": "varchar_pattern_ops", "TextField": "text_pattern_ops"}


@dataclass
class Candidate:
    model: type[models.Model]
    fields: tuple[str, ...]
    """Field names, ``-`` for descending."""
    pattern: bool = False
    usages: list[Usage] = field(default_factory=list)
    from_meta_ordering: bool = False
    search: str | None = None
    """A search only a GIN index serves (``searches.TRIGRAM`` or ``CONTAINMENT``)."""
    insensitive: bool = False
    nulls: tuple[tuple[str, bool], ...] = ()
    """Sort columns whose NULLs ``Meta.ordering`` places unlike a plain B-tree (see
    :func:`.own_columns.nulls_placed`)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name.lstrip("-") for name in self.fields)


def candidates_for(usage: Usage) -> list[Candidate]:
    """The composite index that would serve this call site, and one index per field it
    filters where a composite cannot help (``exclude()``, ``Q`` objects)."""
    usage = indexable(usage)
    found = [
        Candidate(usage.model, (name,), False, [usage]) for name in dict.fromkeys(usage.single)
    ]
    for name, insensitive in dict.fromkeys(usage.contains):
        kind = search_kind(column_field(usage.model, name), insensitive)
        if kind is not None:
            found.append(
                Candidate(
                    usage.model, (name,), False, [usage], search=kind, insensitive=insensitive
                )
            )
    main = _composite(usage)
    return [*found, main] if main else found


def _composite(usage: Usage) -> Candidate | None:
    model = usage.model
    equality = equality_columns(usage)
    sort, from_meta = list(usage.sort), False
    nulls: tuple[tuple[str, bool], ...] = ()
    if not usage.explicit_sort and model._meta.ordering:
        sort = sort_prefix(model, model._meta.ordering)
        from_meta = bool(sort)
        nulls = nulls_placed(model, model._meta.ordering)
    pattern = False
    if usage.ranges:
        tail = [usage.ranges[0]]
        if sort and sort[0].lstrip("-") == usage.ranges[0]:
            tail = [sort[0]]
    elif usage.patterns and isinstance(model._meta.get_field(usage.patterns[0]), TEXT_FIELDS):
        # A prefix search on a number or a date casts it to text: no index on it serves it.
        tail, pattern = [usage.patterns[0]], True
    else:
        tail = [name for name in sort if name.lstrip("-") not in equality]
    fields = tuple(equality + tail)
    if not fields:
        return None
    # A prefix search's column takes an operator class, which Django declares only for
    # plain fields, not for the expression that places NULLs: the search is what it serves.
    names = set() if pattern else {name.lstrip("-") for name in tail}
    nulls = tuple((name, first) for name, first in nulls if name in names)
    return Candidate(model, fields, pattern, [usage], from_meta and not usage.ranges, nulls=nulls)


def index_findings(
    usages: list[Usage], schemas: dict[str, ModelSchema], warnings: list[str] | None = None
) -> list[Finding]:
    """unindexed_filter, composite_candidate and cannot_tell findings for these models.
    A call site the rules cannot read is left out with a line in ``warnings``."""
    findings: list[Finding] = []
    grouped: dict[tuple[Any, ...], Candidate] = {}
    searches = Searches()
    for usage in usages:
        schema = schemas.get(usage.model._meta.label)
        if schema is None:
            continue
        try:
            _group(indexable(usage), schema, grouped, searches, findings)
        except Exception as error:  # one call site must never end the whole run
            if warnings is not None:
                warnings.append(_left_out(usage, error))
    constants = constants_of(usages)
    named: set[str] = set()  # index names handed out in this run
    for candidate in _merge_prefixes(list(grouped.values())):
        schema = schemas[candidate.model._meta.label]
        try:
            if candidate.search:
                findings.append(search_finding(schema, candidate, searches.state(schema)))
                continue
            partial = partial_index(candidate, constants)
            if partial and has_partial(schema, candidate, partial):
                continue
            findings.append(_finding(schema, candidate, partial, named))
        except Exception as error:  # as above: one index left out, never the whole run
            if warnings is not None:
                warnings.append(_left_out(candidate.usages[0], error))
    return findings


def _left_out(usage: Usage, error: Exception) -> str:
    return (
        f"{usage.file}:{usage.line}: left out, the index rules could not read it "
        f"({type(error).__name__}: {error})"
    )


def _group(
    usage: Usage,
    schema: ModelSchema,
    grouped: dict[tuple[Any, ...], Candidate],
    searches: Searches,
    findings: list[Finding],
) -> None:
    """Add the candidates of one call site that no index serves yet to ``grouped``."""
    if usage.dynamic_sort:
        findings.append(_cannot_tell(schema, usage))
    equality = equality_columns(usage)
    call = call_of(usage)  # a partial index whose condition the call implies serves it
    for candidate in candidates_for(usage):
        if _is_low_cardinality(candidate):
            continue
        if candidate.search:
            if not searches.indexed(schema, candidate):
                search_key = (
                    schema.label,
                    candidate.fields,
                    candidate.search,
                    candidate.insensitive,
                )
                grouped.setdefault(search_key, replace(candidate, usages=[])).usages.append(usage)
            continue
        if (
            equality
            and leads_with(candidate.names, equality[:1])
            and schema.serves(field_columns(usage.model, equality[:1]), call=call)
            and not piles_up(usage, candidate.names)
        ):
            # An index already narrows by the first equality column; whether a wider
            # one pays is for the planner to say (the workload advisor), not a guess.
            continue
        columns = field_columns(usage.model, candidate.names)
        if schema.serves(columns, prefix=candidate.pattern, call=call):
            continue
        key: tuple[Any, ...] = (schema.label, candidate.fields, candidate.pattern, candidate.nulls)
        if key in grouped:
            grouped[key].usages.append(usage)
            grouped[key].from_meta_ordering |= candidate.from_meta_ordering
        else:
            grouped[key] = candidate


def _is_low_cardinality(candidate: Candidate) -> bool:
    if len(candidate.names) != 1:
        return False
    return isinstance(candidate.model._meta.get_field(candidate.names[0]), models.BooleanField)


def _merge_prefixes(candidates: list[Candidate]) -> list[Candidate]:
    """Fold each candidate into a longer one of the same model that it is a prefix of."""
    ordered = sorted(candidates, key=lambda c: (bool(c.search), -len(c.fields)))
    kept: list[Candidate] = []
    for candidate in ordered:
        wider = next(
            (
                other
                for other in kept
                if other.model is candidate.model
                and not candidate.search
                and not other.search
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


def _free_name(schema: ModelSchema, name: str, variant: str, named: set[str]) -> str:
    """``name``, or when an index of the table has it already, or this run named another
    index so (Django names an index after its table and fields only, so a partial or
    operator-class index takes the name of the plain one on the same fields), the same name
    with another hash: a migration that reuses a name fails. The name is added to
    ``named``."""
    taken = named | {index.name for index in schema.indexes if index.name}
    if name in taken:
        digest = hashlib.md5(f"{name}{variant}".encode(), usedforsecurity=False).hexdigest()
        name = f"{name.removesuffix('_idx')[:-6]}{digest[:6]}_idx"
    named.add(name)
    return name


def _finding(
    schema: ModelSchema,
    candidate: Candidate,
    partial: tuple[str, Any] | None,
    named: set[str],
) -> Finding:
    model = candidate.model
    name = model._meta.object_name
    connection = connections[schema.database]
    postgres = connection.vendor == "postgresql"
    fields = list(candidate.fields)
    condition = None
    whole = None  # the partial index this database cannot build: a whole one instead
    if partial and not connection.features.supports_partial_indexes:
        whole, partial = partial, None
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
    free = _free_name(schema, index.name, f"{condition}{opclasses}", named)
    nulls = candidate.nulls if postgres else ()
    proposal: ProposedIndex | None = ProposedIndex(
        index.fields, free, opclasses, condition, condition_lookup=partial, nulls=nulls
    )
    sites = sorted({(u.file, u.line, u.code) for u in candidate.usages})
    evidence = [Evidence(file, line, code) for file, line, code in sites]
    ordering = attribute_evidence(model, "ordering") if candidate.from_meta_ordering else None
    if ordering and ordering not in evidence:  # a bare admin's changelist names it already
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
    if whole:
        message += _whole_instead(candidate, whole, database_name(connection))
    prefix_only_fields = [
        name for name in candidate.names if prefix_only(connection, model._meta.get_field(name))
    ]
    mariadb = is_mariadb(connection)  # (unknown: the advice that builds on both)
    if prefix_only_fields and proposal is not None and mariadb and len(candidate.names) == 1:
        message += (
            f" MariaDB indexes the TEXT column {candidate.names[0]} by a prefix: the first"
            " characters that fit its longest key (768 under utf8mb4), which it picks itself."
        )
    elif prefix_only_fields and proposal is not None:
        proposal, advice = _prefix_index(schema, candidate, free, prefix_only_fields)
        message += (
            f" {database_name(connection)} indexes a TEXT column by a prefix only"
            f" ({', '.join(prefix_only_fields)}), which models.Index cannot declare: its"
            " migration would fail there"
            + (
                " (MariaDB gives one TEXT column alone the longest prefix its key takes,"
                " and then no room is left for another column)."
                if mariadb
                else "."
            )
        )
    if candidate.pattern and connection.vendor == "mysql":
        message += (
            f" Django's startswith is LIKE BINARY on {database_name(connection)}, which no index"
            f" on {candidate.names[-1]} serves under its case-insensitive collation."
        )
        advice = (
            f"Where case does not matter, filter with {candidate.names[-1]}__istartswith: a"
            f" LIKE that an index on ({', '.join(candidate.names)}) serves."
        )
        proposal = None
    if nulls:
        placed = ", ".join(f"{n} {'first' if first else 'last'}" for n, first in nulls)
        message += (
            f" Meta.ordering places the NULLs of {placed}, which no plain index gives in order"
            " on PostgreSQL: the index places them so too."
        )
    piled = next(filter(None, (piles_up(u, candidate.names) for u in candidate.usages)), None)
    if piled and schema.serves(field_columns(model, candidate.names[:1]), prefix=False):
        parent = getattr(model._meta.get_field(candidate.names[0]).related_model, "__name__", "")
        message += (
            f" The index on {candidate.names[0]} reads every {name} of one {parent}, whatever"
            f" its {piled}; those asked for are few once the others pile up."
        )
    ranked = rank(candidate.usages, schema)
    return Finding(
        kind=kind,
        severity=ranked.severity,
        model=schema.label,
        fields=tuple(candidate.fields),
        database=schema.database,
        message=f"{message} {ranked.sentence}",
        index=proposal,
        evidence=tuple(evidence),
        advice=advice,
        **ranked.size,
    )


def _prefix_index(
    schema: ModelSchema, candidate: Candidate, name: str, prefixed: list[str]
) -> tuple[ProposedIndex, str]:
    """MariaDB's index keeping a prefix of each TEXT column, as SQL for a RunSQL."""
    connection = connections[schema.database]
    model = candidate.model
    columns = [
        (column_of(model._meta.get_field(field)), field in prefixed) for field in candidate.names
    ]
    sql = prefix_index_sql(connection, schema.table, name, columns)
    quote = connection.ops.quote_name
    undo = f"DROP INDEX {quote(name)} ON {quote(schema.table)}"
    advice = (
        f"Add it in a migration: migrations.RunSQL({sql!r}, {undo!r}), keeping the first"
        f" {PREFIX_LENGTH} characters (choose as many as tell the values apart); or make"
        f" {', '.join(prefixed)} a CharField, which an index in Meta.indexes takes whole."
    )
    return ProposedIndex(tuple(candidate.fields), name, sql=sql), advice


def _whole_instead(candidate: Candidate, whole: tuple[str, Any], database: str) -> str:
    """Why a whole index is proposed where every call site pins one column to a constant."""
    partial = (
        f"Index(fields={partial_fields(candidate, whole)!r}, condition={condition_code(*whole)})"
    ).replace("'", '"')
    where = "leads with" if candidate.names[:1] == (whole[0],) else "has among its columns"
    return (
        f" Every call site compares {whole[0]} to {python_literal(whole[1])}: on PostgreSQL a"
        f" partial index, {partial}, would hold only those rows; {database} has no partial"
        f" indexes (Django builds one whole, without its condition), so this one {where}"
        f" {whole[0]}."
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
