"""Test helpers that keep an index from silently going unused.

    from django_dbtune.testing import assert_no_seq_scan, assert_uses_index

    def test_the_broken_pages_report_uses_its_index(db):
        broken = PageResult.objects.filter(status_code=404).order_by("-crawled_at")
        assert_uses_index(broken, "crawler_pag_status__fdbde7_idx")

Each EXPLAINs the queryset on its database (plain ``EXPLAIN``: nothing runs) and fails with
the plan when the planner does not do what it says. A test database holds a few rows, where
a sequential scan is the right plan; so on PostgreSQL the check plans as for a large table,
with ``enable_seqscan = off`` for that one statement, and on MariaDB with
``max_seeks_for_key = 1`` (``large_table=False`` plans with the real statistics). SQLite's
``EXPLAIN QUERY PLAN`` and MySQL's ``EXPLAIN FORMAT=JSON`` are read as they are.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

from django_dbtune.advisor import planner
from django_dbtune.advisor.planner import Plan, PlannerError
from django_dbtune.schema.innodb import is_mariadb

__all__ = ["assert_no_seq_scan", "assert_uses_index"]


def assert_uses_index(
    queryset: Any, index_name: str | None = None, *, large_table: bool = True
) -> None:
    """Fail unless the plan reads ``index_name`` (or, without a name, some index of the
    queryset's own table) to find rows: on PostgreSQL, an index walked in full for its
    order, with no condition on its columns, does not count."""
    sql, plan, note = _explain(queryset, large_table)
    table = queryset.model._meta.db_table
    postgres = connections[queryset.db].vendor == "postgresql"
    used = {
        access.index
        for access in plan.accesses
        if access.index is not None
        and (index_name is not None or access.table == table)
        and not (postgres and access.full)
    }
    if (index_name is None and used) or (index_name is not None and index_name in used):
        return
    wanted = f"index {index_name!r}" if index_name else f"an index on {table}"
    walked = [a.index for a in plan.accesses if a.full and a.index is not None and postgres]
    why = (
        f" (it reads every entry of {', '.join(sorted(set(walked)))}: no condition on its columns)"
        if walked
        else ""
    )
    raise AssertionError(f"The query does not use {wanted}{why}.\n{_report(sql, plan, note)}")


def assert_no_seq_scan(queryset: Any, *, large_table: bool = True) -> None:
    """Fail when the plan reads any table in full: by a sequential scan, or on PostgreSQL
    through a whole index (its order, no condition on its columns, no ``LIMIT``)."""
    sql, plan, note = _explain(queryset, large_table)
    postgres = connections[queryset.db].vendor == "postgresql"
    full = {a.table for a in plan.accesses if a.full and (a.index is None or postgres)}
    if full:
        tables = ", ".join(sorted(full))
        raise AssertionError(f"The query scans every row of {tables}.\n{_report(sql, plan, note)}")


def _explain(queryset: Any, large_table: bool) -> tuple[str, Plan, str]:
    """The queryset's SQL, its plan, and how it was planned (for the failure message)."""
    sql, params = queryset.query.sql_with_params()
    connection = connections[queryset.db]
    try:
        plan = planner.explain(connection, sql, params, large_table=large_table, text=True)
    except PlannerError:
        raise PlannerError(
            f"assert_uses_index and assert_no_seq_scan read PostgreSQL, MariaDB and SQLite "
            f"plans; database {connection.alias!r} is {connection.vendor}."
        ) from None
    if connection.vendor == "sqlite":
        note = " (EXPLAIN QUERY PLAN)"
    elif connection.vendor == "mysql":
        note = " (EXPLAIN FORMAT=JSON"
        if large_table and is_mariadb(connection):
            note += (
                ", with max_seeks_for_key = 1, as for a large table; large_table=False plans "
                "with the real statistics"
            )
        note += ")"
    elif large_table:
        note = (
            " (with enable_seqscan = off, as for a large table; large_table=False plans with "
            "the real statistics)"
        )
    else:
        note = ""
    return sql, plan, note


def _report(sql: str, plan: Plan, note: str) -> str:
    return f"SQL: {sql}\nPlan{note}:\n{plan.text}"
