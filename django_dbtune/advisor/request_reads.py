"""Index advice for one request: its reads whose filter or sort columns no index leads with.

The same rules as the static advisor and the workload (candidates, ``ModelSchema.serves``,
partial indexes serving the reads that imply their condition), applied to the queries one
request captured, each with its plan as the database prints it
and its table's size as the advisor ranks by it.
EXPLAIN runs within a time budget, so a page of 500 queries stays usable; what is left over
is counted, not planned. Returns plain data, ready for the toolbar's store.
"""

from __future__ import annotations

import time
from typing import Any

from django.apps import apps
from django.db import connections

from django_dbtune.advisor import planner
from django_dbtune.advisor.candidates import candidates_for
from django_dbtune.advisor.own_columns import call_of
from django_dbtune.advisor.schema_rules import proposed_index
from django_dbtune.advisor.sql_reads import use_of
from django_dbtune.advisor.workload_candidates import usage_from
from django_dbtune.capture import QueryLog
from django_dbtune.conf import conf
from django_dbtune.schema import field_columns, model_schemas

EXPLAIN_BUDGET = 0.5
"""Seconds spent on EXPLAIN per request; what is left over is counted, not planned."""
MAX_SHAPES = 30


def no_reads() -> dict[str, Any]:
    """What a request with nothing to check reports."""
    return {"queries": [], "checked": 0, "left_out": 0, "budget_ms": EXPLAIN_BUDGET * 1000}


def unindexed_reads(log: QueryLog) -> dict[str, Any]:
    """The reads of ``log`` whose filter or sort columns no index leads with (plain data)."""
    stats = no_reads()
    # A proxy shares its concrete model's table, which only the concrete model describes.
    tables = {m._meta.db_table: m for m in apps.get_models() if not m._meta.proxy}
    shapes: dict[tuple[str, str], list[Any]] = {}
    for record in log:
        if record.kind == "read" and record.error is None:
            shapes.setdefault((record.alias, record.sql), []).append(record)
    deadline = time.perf_counter() + EXPLAIN_BUDGET
    schemas: dict[tuple[str, str], Any] = {}
    for number, ((alias, sql), records) in enumerate(shapes.items()):
        if time.perf_counter() > deadline or len(stats["queries"]) >= MAX_SHAPES:
            stats["left_out"] = len(shapes) - number
            break
        connection = connections[alias]
        found = use_of(sql, connection.vendor, tables)
        if found is None:
            continue
        model = found.model
        stats["checked"] += 1
        key = (alias, model._meta.label)
        if key not in schemas:
            labels = [model._meta.app_label]
            schemas[key] = next(
                (s for s in model_schemas(labels, alias) if s.model is model), None
            )
        schema = schemas[key]
        if schema is None:
            continue
        usage = usage_from(model, found.use, records[0].call_site or "(unknown)", sql)
        # A partial index serves the reads whose constants (the SQL's, and the parameters
        # every run of this request passed alike) imply its condition.
        call = call_of(usage, found.constants(record.params for record in records))
        missing = [
            c
            for c in candidates_for(usage)
            if not c.search
            and not schema.serves(field_columns(model, c.names), prefix=c.pattern, call=call)
        ]
        if not missing:
            continue
        candidate = max(missing, key=lambda c: len(c.fields))
        small = conf.INDEX_SMALL_TABLE_ROWS
        rows = schema.rows(small) if small else None
        try:
            plan = planner.explain(connection, sql, records[0].params, text=True).text
        except Exception as error:  # the plan is a hint, never an error page
            plan = f"(EXPLAIN failed: {type(error).__name__})"
        stats["queries"].append(
            {
                "model": model._meta.label,
                "table": model._meta.db_table,
                "sql": sql,
                "count": len(records),
                "ms": round(sum(r.duration for r in records) * 1000, 2),
                "call_sites": sorted({r.call_site or "(unknown)" for r in records}),
                "fields": list(candidate.fields),
                "index": proposed_index(model, list(candidate.fields)).as_code(),
                "plan": plan,
                # The table's size, as the advisor ranks by it (None: unknown, or the rule
                # is off).
                "table_rows": rows.described if rows and rows.rows is not None else None,
                "small": bool(rows and rows.rows is not None and rows.rows < small),
            }
        )
    return stats
