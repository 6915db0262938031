"""Partial indexes to propose: when the call sites agree on a constant, and when an index the
table has (declared or only in the database) already serves them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models

from django_dbtune.advisor.code_scan import Usage
from django_dbtune.schema import Call, ModelSchema, column_of, field_columns

if TYPE_CHECKING:
    from django_dbtune.advisor.candidates import Candidate


def constants_of(usages: list[Usage]) -> dict[tuple[str, str], list[Any]]:
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
    And each of the candidate's own call sites must compare the field for equality (to that
    constant, which ``constants`` holds): an ``exclude`` or an OR of ``Q`` objects on the
    field is served by no partial index.
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
            and all(name in dict(usage.equality) for usage in candidate.usages)
        ):
            return name, values[0]
    return None


def partial_fields(candidate: Candidate, partial: tuple[str, Any]) -> list[str]:
    rest = [name for name in candidate.fields if name.lstrip("-") != partial[0]]
    return rest or [partial[0]]


def has_partial(schema: ModelSchema, candidate: Candidate, partial: tuple[str, Any]) -> bool:
    """Whether an index the table has, declared or only in the database, serves every
    query the partial index this candidate calls for would: one whose condition
    ``field = constant`` implies, on the candidate's columns."""
    column = column_of(candidate.model._meta.get_field(partial[0]))
    call = Call({column: partial[1]}, frozenset({column}))
    return schema.serves(field_columns(candidate.model, candidate.names), call=call)
