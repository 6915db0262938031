"""Drift: indexes the models declare that the database lacks, and the reverse."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from django.db import connections

from django_dbtune.advisor.source import field_evidence, index_evidence
from django_dbtune.findings import Evidence, Finding
from django_dbtune.schema import IndexInfo, ModelSchema, column_of, leads_with
from django_dbtune.schema.innodb import reversible_drop


def drift(schema: ModelSchema) -> Iterator[Finding]:
    """Compare declared and actual indexes: by name where the models name them (Meta.indexes,
    constraints), else by key parts, uniqueness and partialness (Django's generated names
    are not kept, and the indexes it generates are whole, on columns)."""
    if schema.actual is None:
        return
    actual = list(schema.actual)
    by_name = {index.name: index for index in actual}
    unnamed: list[IndexInfo] = []
    not_found: list[IndexInfo] = []
    for index in schema.declared:
        if index.name:
            if index.name in by_name:
                actual.remove(by_name[index.name])
            else:
                not_found.append(index)
        else:
            unnamed.append(index)
    for index in not_found:
        # The same index under another name (an index_together that became Meta.indexes,
        # or a name given by hand): it serves queries; only a migration naming it fails.
        twin = next((a for a in actual if index.columns and _same(a, index)), None)
        if twin is None:
            yield _missing(schema, index)
        else:
            actual.remove(twin)
            yield _renamed(schema, index, twin)
    pool = Counter(_signature(index) for index in actual)
    for index in unnamed:
        signature = _signature(index)
        if pool[signature]:
            pool[signature] -= 1
        else:
            yield _missing(schema, index)
    for index in actual:
        signature = _signature(index)
        if pool[signature]:
            pool[signature] -= 1
            yield _unknown(schema, index)


def _signature(index: IndexInfo) -> tuple[tuple[str, ...], bool, bool]:
    return index.key_parts, index.unique, index.partial


def _same(found: IndexInfo, declared: IndexInfo) -> bool:
    return _signature(found) == _signature(declared) and found.opclasses == declared.opclasses


def _renamed(schema: ModelSchema, index: IndexInfo, twin: IndexInfo) -> Finding:
    evidence = index_evidence(schema.model, index.name) if index.name else None
    return Finding(
        kind="renamed_in_database",
        severity="low",
        model=schema.label,
        fields=_fields(schema, index.columns),
        database=schema.database,
        message=(
            f"The models declare index {index.name} on ({', '.join(index.columns)}); database "
            f"{schema.database!r} has the same index as {twin.name}. Queries are served, but a "
            "migration that renames or removes it by name will fail on this database."
        ),
        evidence=(evidence,) if evidence else (),
        advice=(
            f'A migration with RenameIndex("{schema.model._meta.model_name}", '
            f'new_name="{index.name}", old_name="{twin.name}") makes the names agree.'
        ),
    )


def _fields(schema: ModelSchema, columns: tuple[str, ...]) -> tuple[str, ...]:
    names = {column_of(f): f.name for f in schema.model._meta.local_concrete_fields}
    return tuple(names.get(column, column) for column in columns)


def _missing(schema: ModelSchema, index: IndexInfo) -> Finding:
    fields = _fields(schema, index.columns)
    what = f"index {index.name}" if index.name else f"the {index.origin} index"
    evidence: Evidence | None = (
        index_evidence(schema.model, index.name)
        if index.name
        else field_evidence(schema.model, fields[0])
        if fields
        else None
    )
    return Finding(
        kind="missing_in_database",
        severity="medium",
        model=schema.label,
        fields=fields,
        database=schema.database,
        message=(
            f"The models declare {what} on ({', '.join(index.columns) or 'an expression'}) "
            f"but database {schema.database!r} has no such index."
        ),
        evidence=(evidence,) if evidence else (),
        advice=(
            "Run 'manage.py migrate'; if showmigrations says it ran, the migration was faked "
            "or the index was dropped by hand."
        ),
    )


def _unknown(schema: ModelSchema, index: IndexInfo) -> Finding:
    columns = ", ".join(index.key_parts) or "an expression"
    advice = "Declare it in Meta.indexes so that migrations manage it, or drop it."
    message = (
        f"Database {schema.database!r} has {'unique ' if index.unique else ''}index "
        f"{index.name} on ({columns}), which the models do not declare: migrations will "
        "never manage it."
    )
    longer = next(
        (
            other
            for other in schema.actual or []
            if other.name != index.name
            and other.usable
            and index.usable  # (a FULLTEXT, GIN or pattern index serves other queries)
            and not index.unique
            and len(other.key_parts) > len(index.key_parts)
            and leads_with(other.key_parts, index.key_parts)
        ),
        None,
    )
    if longer is not None and index.name:
        # Declaring it would keep an index that serves nothing: InnoDB drops the one it made
        # for a foreign key once another leads with its column, but not one a dump restored.
        connection = connections[schema.database]
        quote = connection.ops.quote_name
        drop = connection.schema_editor().sql_delete_index % {
            "name": quote(index.name),
            "table": quote(schema.table),
        }
        trial = reversible_drop(connection, schema.table, index.name)
        message += (
            f" Index {longer.name} on ({', '.join(longer.key_parts)}) leads with the same "
            "columns and serves every query it could: it only costs writes and space."
        )
        advice = f"{trial + ' ' if trial else ''}Drop it ({drop}), in a migration's RunSQL."
    return Finding(
        kind="unknown_in_database",
        severity="low",
        model=schema.label,
        fields=_fields(schema, index.columns),
        database=schema.database,
        message=message,
        advice=advice,
    )
