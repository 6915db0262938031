"""Test helpers that keep an index from silently going unused.

    from django_dbtune.testing import assert_no_seq_scan, assert_uses_index

    def test_the_broken_pages_report_uses_its_index(db):
        broken = PageResult.objects.filter(status_code=404).order_by("-crawled_at")
        assert_uses_index(broken, "crawler_pag_status__fdbde7_idx")

Each EXPLAINs the queryset on its database (plain ``EXPLAIN``: nothing runs) and fails with
the plan when the planner does not do what it says. A test database holds a few rows, where
a sequential scan is the right plan; so on PostgreSQL the check plans as for a large table,
with ``enable_seqscan = off`` for that one statement (``large_table=False`` plans with the
real statistics). SQLite's ``EXPLAIN QUERY PLAN`` is read as it is.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import connections, transaction

from django_dbtune.errors import DbtuneError

__all__ = ["assert_no_seq_scan", "assert_uses_index"]


def assert_uses_index(
    queryset: Any, index_name: str | None = None, *, large_table: bool = True
) -> None:
    """Fail unless the plan reads ``index_name`` (or, without a name, some index of the
    queryset's own table)."""
    plan = QueryPlan.of(queryset, large_table)
    table = queryset.model._meta.db_table
    used = plan.indexes.get(table, set()) if index_name is None else plan.all_indexes()
    if (index_name is None and used) or (index_name is not None and index_name in used):
        return
    wanted = f"index {index_name!r}" if index_name else f"an index on {table}"
    raise AssertionError(f"The query does not use {wanted}.\n{plan.report()}")


def assert_no_seq_scan(queryset: Any, *, large_table: bool = True) -> None:
    """Fail when the plan reads any table by a sequential (full) scan."""
    plan = QueryPlan.of(queryset, large_table)
    if plan.scans:
        tables = ", ".join(sorted(plan.scans))
        raise AssertionError(f"The query scans every row of {tables}.\n{plan.report()}")


class QueryPlan:
    """A query's plan: the text, and the tables it reads through an index or in full."""

    def __init__(self, sql: str, text: str, note: str) -> None:
        self.sql = sql
        self.text = text
        self.note = note
        self.indexes: dict[str, set[str]] = {}
        """Per table, the indexes the plan reads it through."""
        self.scans: set[str] = set()
        """Tables read by a full scan."""

    def all_indexes(self) -> set[str]:
        return set().union(*self.indexes.values()) if self.indexes else set()

    def report(self) -> str:
        return f"SQL: {self.sql}\nPlan{self.note}:\n{self.text}"

    @classmethod
    def of(cls, queryset: Any, large_table: bool) -> QueryPlan:
        sql, params = queryset.query.sql_with_params()
        return cls.explain(connections[queryset.db], sql, params, large_table)

    @classmethod
    def explain(cls, connection: Any, sql: str, params: Any, large_table: bool) -> QueryPlan:
        """The plan of a SELECT (plain EXPLAIN: nothing runs)."""
        if connection.vendor == "postgresql":
            return cls._postgresql(connection, sql, params, large_table)
        if connection.vendor == "sqlite":
            return cls._sqlite(connection, sql, params)
        raise DbtuneError(
            f"assert_uses_index and assert_no_seq_scan read PostgreSQL and SQLite plans; "
            f"database {connection.alias!r} is {connection.vendor}."
        )

    @classmethod
    def _postgresql(cls, connection: Any, sql: str, params: Any, large_table: bool) -> QueryPlan:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            if large_table:
                cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            document = cursor.fetchone()[0]
            cursor.execute(f"EXPLAIN {sql}", params)
            text = "\n".join(row[0] for row in cursor.fetchall())
            if large_table:
                cursor.execute("SET LOCAL enable_seqscan = DEFAULT")
        note = (
            " (with enable_seqscan = off, as for a large table; large_table=False plans with "
            "the real statistics)"
            if large_table
            else ""
        )
        plan = cls(sql, text, note)
        if isinstance(document, str):
            document = json.loads(document)
        nodes = [document[0]["Plan"]]
        while nodes:
            node = nodes.pop()
            nodes.extend(node.get("Plans", []))
            table = node.get("Relation Name")
            if node.get("Node Type") == "Seq Scan" and table:
                plan.scans.add(str(table))
            if "Index Name" in node:
                # A Bitmap Index Scan names no relation: its table is the Bitmap Heap Scan's.
                owner = table or _bitmap_table(document[0]["Plan"], node)
                plan.indexes.setdefault(str(owner), set()).add(str(node["Index Name"]))
        return plan

    @classmethod
    def _sqlite(cls, connection: Any, sql: str, params: Any) -> QueryPlan:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            details = [str(row[-1]) for row in cursor.fetchall()]
        plan = cls(sql, "\n".join(details), " (EXPLAIN QUERY PLAN)")
        for detail in details:
            words = detail.split()
            if len(words) < 2 or words[0] not in ("SCAN", "SEARCH"):
                continue
            table = words[1]
            if "INDEX" in words:
                name = words[words.index("INDEX") + 1]
                plan.indexes.setdefault(table, set()).add(name)
            elif "PRIMARY" in words:
                plan.indexes.setdefault(table, set()).add("PRIMARY KEY")
            elif words[0] == "SCAN":
                plan.scans.add(table)
        return plan


def _bitmap_table(node: dict[str, Any], target: dict[str, Any]) -> str:
    """The table of the Bitmap Heap Scan above ``target``."""
    stack = [(node, "")]
    while stack:
        current, table = stack.pop()
        if current is target:
            return table
        table = str(current.get("Relation Name") or table)
        stack.extend((child, table) for child in current.get("Plans", []))
    return ""
