"""Rules that need only the models: unindexed foreign keys, redundant and duplicate indexes."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connections, models

from django_dbtune.advisor.ranking import by_size
from django_dbtune.advisor.source import field_evidence, index_evidence
from django_dbtune.findings import Evidence, Finding, ProposedIndex, Severity
from django_dbtune.schema import IndexInfo, ModelSchema, column_of, has_db_index, leads_with
from django_dbtune.schema.innodb import reversible_drop

FK_ADVICE = (
    "Declare it in Meta.indexes rather than setting db_index=True on the field: changing "
    "db_index makes Django drop and re-create the foreign key constraint (ticket #34417)."
)
FK_WHY = "every join through the key, and every delete of a row it points to, reads rows by it"


def proposed_index(model: type[models.Model], fields: list[str]) -> ProposedIndex:
    """An index as Django would name it: explicit, deterministic, at most 30 characters."""
    index = models.Index(fields=fields)
    index.set_name_with_model(model)
    return ProposedIndex(tuple(fields), index.name)


def missing_fk_indexes(schema: ModelSchema) -> Iterator[Finding]:
    """Foreign keys whose column leads no usable index: every join and lookup by it scans."""
    model = schema.model
    for model_field in model._meta.local_concrete_fields:
        column = column_of(model_field)
        if not model_field.many_to_one or schema.covers(column):
            continue
        evidence = field_evidence(model, model_field.name)
        covered_later = [index for index in schema.indexes if column in index.columns[1:]]
        why = (
            f"it is only a non-leading column of {_describe(covered_later[0])}"
            if covered_later
            else "db_index=False"
            if not has_db_index(model_field)
            else "no index leads with it"
        )
        ranked = by_size("high", FK_WHY, schema)
        yield Finding(
            kind="missing_fk_index",
            severity=ranked.severity,
            model=schema.label,
            fields=(model_field.name,),
            database=schema.database,
            message=(
                f"Foreign key {model._meta.object_name}.{model_field.name} "
                f"({column}) has no index that leads with it ({why}): joins and "
                f"lookups through it scan the whole table. {ranked.sentence}"
            ),
            index=proposed_index(model, [model_field.name]),
            evidence=(evidence,) if evidence else (),
            advice=FK_ADVICE,
            **ranked.size,
        )


def redundant_indexes(schema: ModelSchema) -> Iterator[Finding]:
    """Indexes another index makes useless: an exact copy, or a leading prefix of it."""
    if schema.auto_created:
        return  # Django's own many-to-many tables: nothing the project can change.
    indexes = [index for index in schema.declared if index.usable]
    reported: set[int] = set()
    for i, index in enumerate(indexes):
        for j, other in enumerate(indexes):
            if i == j or j in reported or index.origin == "primary key":
                continue
            # By every key part: (a, lower(b)) serves what (a) does, and is no copy of it.
            if not leads_with(other.key_parts, index.key_parts):
                continue  # the other index does not serve every query this one does
            if len(index.key_parts) == len(other.key_parts):
                # Of two copies the later one is reported, unless only it enforces uniqueness.
                if i > j and not (index.unique and not other.unique):
                    reported.add(i)
                    yield _finding(schema, "duplicate_index", "medium", index, other)
                    break
            elif not index.unique:
                reported.add(i)
                yield _finding(schema, "redundant_index", "low", index, other)
                break


def _describe(index: IndexInfo) -> str:
    columns = ", ".join(index.key_parts)
    if index.name:
        return f"index {index.name} ({columns})"
    return f"the {index.origin} index ({columns})"


def _name_in_database(schema: ModelSchema, index: IndexInfo, other: IndexInfo) -> str | None:
    """The name the database gave an index the models declare unnamed (``db_index``), when
    exactly one of the table's indexes has its key parts (an identical one: ambiguous)."""
    names = [
        actual.name
        for actual in schema.actual or []
        if actual.name
        and actual.name != other.name
        and actual.key_parts == index.key_parts
        and actual.unique == index.unique
    ]
    return names[0] if len(names) == 1 else None


def _finding(
    schema: ModelSchema, kind: str, severity: Severity, index: IndexInfo, other: IndexInfo
) -> Finding:
    model = schema.model
    fields = tuple(
        next(f.name for f in model._meta.local_concrete_fields if column_of(f) == column)
        for column in index.columns
    )
    same = "is identical to" if kind == "duplicate_index" else "is a leading prefix of"
    message = (
        f"{_describe(index).capitalize()} {same} {_describe(other)}, which serves every "
        "query it could; it only costs writes and space."
    )
    if index.origin == "foreign key":
        advice = (
            f"This is Django's automatic index on the foreign key {fields[0]}. Keeping it is "
            f"harmless; to drop it, set db_index=False on {fields[0]} (Django then drops and "
            "re-creates the foreign key constraint, ticket #34417)."
        )
    elif index.origin == "Meta.indexes":
        advice = f"Remove it from {model._meta.object_name}.Meta.indexes."
    else:
        advice = f"Remove the {index.origin} declaration that creates it."
    name = index.name or _name_in_database(schema, index, other)
    if name and index.origin != "foreign key":
        trial = reversible_drop(connections[schema.database], schema.table, name)
        advice = f"{trial} {advice}" if trial else advice
    evidence: Evidence | None = (
        index_evidence(model, index.name) if index.name else field_evidence(model, fields[0])
    )
    return Finding(
        kind=kind,
        severity=severity,
        model=schema.label,
        fields=fields,
        database=schema.database,
        message=message,
        evidence=(evidence,) if evidence else (),
        advice=advice,
    )
