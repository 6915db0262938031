"""Searches no B-tree serves, and the GIN index that does, where one does.

``contains``/``icontains`` on a text column is ``LIKE '%x%'``: a trigram index (pg_trgm's
``gin_trgm_ops``) serves it. ``contains``, ``overlap`` and ``has_key`` on an array, JSON or
hstore column are the operators ``@>``, ``&&`` and ``?``: a plain GIN index on the column
serves them, and ``gin_trgm_ops`` on such a column is SQL PostgreSQL rejects. On any other
column (numbers, dates, UUIDs, keys) ``icontains`` casts the value to text, which no index
on the column serves: nothing is suggested.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, models

from django_dbtune.advisor.ranking import rank
from django_dbtune.advisor.schema_rules import proposed_index
from django_dbtune.findings import Evidence, Finding, ProposedIndex
from django_dbtune.schema import ModelSchema, column_of
from django_dbtune.schema.innodb import database_name

if TYPE_CHECKING:
    from django_dbtune.advisor.candidates import Candidate

TRIGRAM = "trigram"
CONTAINMENT = "containment"

TEXT_FIELDS = (models.CharField, models.TextField)
"""Text columns (EmailField, SlugField, URLField... are CharFields)."""
CONTAINMENT_FIELDS = frozenset({"ArrayField", "HStoreField", "JSONField"})
"""Fields whose contains/overlap/has_key lookups are GIN operators. Matched by class name
(subclasses included) so that django.contrib.postgres, which needs psycopg, is not imported."""


def search_kind(model_field: Any, insensitive: bool) -> str | None:
    """The GIN index a contains-style search on this field needs (``TRIGRAM`` or
    ``CONTAINMENT``), or None when no index on the column serves it."""
    if isinstance(model_field, TEXT_FIELDS):
        return TRIGRAM
    classes = {klass.__name__ for klass in type(model_field).__mro__}
    if classes & CONTAINMENT_FIELDS and not insensitive:
        return CONTAINMENT  # icontains on JSON compares its text: no GIN operator
    return None


class Searches:
    """What PostgreSQL offers for these searches: the pg_trgm extension, read once per
    database."""

    def __init__(self) -> None:
        self._states: dict[str, str | None] = {}

    def state(self, schema: ModelSchema) -> str | None:
        """pg_trgm's: "installed", "available", "missing", or None off PostgreSQL or when
        the database cannot be read."""
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
        """Whether an index the table has, declared or only in the database, serves the
        search: for containment a GIN index on the column with its default operator class;
        for a trigram search one with ``gin_trgm_ops`` (or GiST's ``gist_trgm_ops``) on the
        column, or on ``upper(column)`` for ``icontains``, which compares ``UPPER(...)``."""
        column = column_of(candidate.model._meta.get_field(candidate.names[0]))
        if candidate.search == CONTAINMENT:
            return any(
                index.method == "gin" and index.key_parts[:1] == (column,) and not index.opclasses
                for index in schema.indexes
                if not index.partial
            )
        wanted = f"upper({column})" if candidate.insensitive else column
        return any(
            key == wanted and opclass in TRIGRAM_OPCLASSES
            for index in schema.indexes
            if not index.partial
            for key, opclass in zip(index.key_parts, index.opclasses, strict=False)
        )


TRIGRAM_OPCLASSES = frozenset({"gin_trgm_ops", "gist_trgm_ops"})


def search_finding(schema: ModelSchema, candidate: Candidate, state: str | None) -> Finding:
    if candidate.search == CONTAINMENT:
        return _containment_finding(schema, candidate)
    return _trigram_finding(schema, candidate, state)


def _finding(
    schema: ModelSchema,
    candidate: Candidate,
    searched: str,
    index: ProposedIndex | None,
    advice: str,
) -> Finding:
    """A search finding: ``searched`` says how the column is searched and what serves it."""
    model = candidate.model
    name = candidate.names[0]
    sites = sorted({(u.file, u.line, u.code) for u in candidate.usages})
    places = f"{len(sites)} place{'s' if len(sites) != 1 else ''}"
    ranked = rank(candidate.usages, schema)
    return Finding(
        kind="unindexed_filter",
        severity=ranked.severity,
        model=schema.label,
        fields=(name,),
        database=schema.database,
        message=(
            f"{model._meta.object_name}.{name} is searched {searched.format(places=places)} "
            f"{ranked.sentence}"
        ),
        index=index,
        evidence=tuple(Evidence(file, line, code) for file, line, code in sites),
        advice=advice,
        **ranked.size,
    )


def _trigram_finding(schema: ModelSchema, candidate: Candidate, state: str | None) -> Finding:
    model = candidate.model
    name = candidate.names[0]
    column = column_of(model._meta.get_field(name))
    lookup = "icontains" if candidate.insensitive else "contains"
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
    connection = connections[schema.database]
    postgres = connection.vendor == "postgresql"
    if connection.vendor == "mysql":
        advice = (
            f"{database_name(connection)} has no index for LIKE '%x%' (an index serves a "
            "prefix only). Full-text search is its answer: a FULLTEXT index, read by "
            "MATCH(...) AGAINST(...) in the query (words, not any substring); on PostgreSQL "
            "a trigram GIN index (pg_trgm) serves the LIKE itself."
        )
    index = ProposedIndex((name,), index_name, ("gin_trgm_ops",), sql=sql)
    searched = (
        f"with {lookup} in {{places}}: LIKE '%...%' reads every row unless a trigram index "
        "serves it."
    )
    if connection.vendor == "mysql":
        searched = f"with {lookup} in {{places}}: LIKE '%...%' reads every row."
    return _finding(
        schema, candidate, searched, index if postgres and state != "missing" else None, advice
    )


def _containment_finding(schema: ModelSchema, candidate: Candidate) -> Finding:
    model = candidate.model
    name = candidate.names[0]
    index_name = proposed_index(model, [name]).name.removesuffix("_idx") + "_gin"
    connection = connections[schema.database]
    index = None
    if connection.vendor == "postgresql":
        from django.contrib.postgres.indexes import GinIndex

        gin = GinIndex(fields=[name], name=index_name)
        # Django renders the statement, as it will from the GinIndex in Meta.indexes.
        sql = str(gin.create_sql(model, connection.schema_editor()))
        index = ProposedIndex((name,), index_name, sql=sql)
        advice = (
            "Declare it in Meta.indexes as django.contrib.postgres.indexes.GinIndex("
            f'fields=["{name}"], name="{index_name}"): a plain GIN index, no operator class.'
        )
    else:
        advice = f"On PostgreSQL a GIN index serves it; {database_name(connection)} has none."
    searched = (
        "by containment (contains, overlap or has_key) in {places}: only a GIN index on the "
        "column serves it."
    )
    return _finding(schema, candidate, searched, index, advice)
