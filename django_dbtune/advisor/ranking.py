"""How much an index finding matters, by where its queries run: request paths above the
admin and code no request runs."""

from __future__ import annotations

from collections.abc import Sequence

from django_dbtune.advisor.code_scan import Usage
from django_dbtune.findings import Severity


def rank(usages: Sequence[Usage]) -> tuple[Severity, str]:
    """How much an index matters by where its queries run, and why: a request path's list
    page or loop above other request code, above staff pages and code no request runs
    (management commands, task queues)."""
    requests = [u for u in usages if not u.admin and not off_request(u.file)]
    if not requests:
        if all(u.admin for u in usages):
            return "low", "only the admin runs it (staff pages, now and then)"
        return "low", "no request runs it, only management commands, tasks or the admin"
    if any(u.in_loop or u.list_view for u in requests):
        return "high", "a request runs it behind a list page or once per item of a loop"
    return "medium", "a request runs it"


OFF_REQUEST = ("management/commands/", "tasks.py", "cron.py")
"""Where code runs outside requests: Django's management commands, Celery's and cron's
conventional modules."""


def off_request(file: str) -> bool:
    path = file.replace("\\", "/")
    return any(path.endswith(end) if end.endswith(".py") else end in path for end in OFF_REQUEST)
