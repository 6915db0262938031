"""How much an index finding matters: by where its queries run (request paths above the admin
and code no request runs), and by how many rows its table holds (an index on a table of a
few rows saves nothing yet)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django_dbtune.advisor.code_scan import Usage
from django_dbtune.conf import conf
from django_dbtune.findings import Severity
from django_dbtune.schema import ModelSchema, TableRows


@dataclass(frozen=True)
class Rank:
    severity: Severity
    why: str
    rows: TableRows | None = None
    """The table's size, when the size rule read it."""

    @property
    def sentence(self) -> str:
        """What a finding's message ends with: ``Ranked high: <why>.``"""
        return f"Ranked {self.severity}: {self.why}."

    @property
    def size(self) -> dict[str, Any]:
        """The table's size as a finding carries it (``table_rows``, ``table_rows_source``)."""
        rows = self.rows
        return {
            "table_rows": rows.rows if rows else None,
            "table_rows_source": rows.source if rows else None,
        }


def rank(usages: Sequence[Usage], schema: ModelSchema | None = None) -> Rank:
    """How much an index matters by where its queries run, and why: a request path's list
    page or loop above other request code, above staff pages and code no request runs
    (management commands, task queues); then by the size of ``schema``'s table."""
    requests = [u for u in usages if not u.admin and not off_request(u.file)]
    if not requests:
        if all(u.admin for u in usages):
            return by_size("low", "only the admin runs it (staff pages, now and then)", schema)
        why = "no request runs it, only management commands, tasks or the admin"
        return by_size("low", why, schema)
    if any(u.in_loop or u.list_view for u in requests):
        why = "a request runs it behind a list page or once per item of a loop"
        return by_size("high", why, schema)
    return by_size("medium", "a request runs it", schema)


def by_size(severity: Severity, why: str, schema: ModelSchema | None) -> Rank:
    """``severity`` weighed by how many rows the table holds in this database: under
    ``INDEX_SMALL_TABLE_ROWS`` a high finding is medium (a scan of a few pages costs what an
    index lookup does), and the why says so; an unknown size changes nothing. A rank is only
    ever lowered, so nothing the admin or a command runs ends above a request's."""
    small = conf.INDEX_SMALL_TABLE_ROWS
    if not small or schema is None:
        return Rank(severity, why)
    rows = schema.rows(small)
    if severity != "high":
        return Rank(severity, why, rows)
    if rows.rows is None:
        return Rank(severity, f"{why}; table size unknown ({rows.reason})", rows)
    if rows.rows < small:
        return Rank(
            "medium",
            f"{why}, but in this database the table holds {rows.described}, fewer than "
            f"INDEX_SMALL_TABLE_ROWS ({small:,}): an index matters once it grows",
            rows,
        )
    return Rank(severity, f"{why}, on a table of {rows.described}", rows)


OFF_REQUEST = ("management/commands/", "tasks.py", "cron.py")
"""Where code runs outside requests: Django's management commands, Celery's and cron's
conventional modules."""


def off_request(file: str) -> bool:
    path = file.replace("\\", "/")
    return any(path.endswith(end) if end.endswith(".py") else end in path for end in OFF_REQUEST)
