"""Production mode's stored findings, read for the commands that show them."""

from __future__ import annotations

import re
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError, router

from django_dbtune.conf import conf
from django_dbtune.models import ProductionFinding
from django_dbtune.production.cache_store import CacheStoreError
from django_dbtune.production.store import stored


def production_findings(kinds: list[str] | None = None) -> list[ProductionFinding]:
    """What every process stored, the most costly first; a clear error when the store
    cannot be read."""
    try:
        rows = stored(conf.PRODUCTION)
    except CacheStoreError as error:
        raise CommandError(str(error)) from None
    except DatabaseError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else error
        alias = router.db_for_read(ProductionFinding)
        raise CommandError(
            f"Cannot read production findings on database {alias!r} ({first}); has "
            "'manage.py migrate django_dbtune' run there?"
        ) from None
    except Exception as error:  # the cache's own errors (Redis down): no common class
        raise CommandError(f"Cannot read production findings: {error}") from None
    if kinds:
        rows = [row for row in rows if row.kind in kinds]
    return sorted(rows, key=lambda row: -row.cost)


def as_dict(row: ProductionFinding) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "route": row.route,
        "message": row.message,
        "fix": row.fix,
        "fix_label": fix_label(row),
        "fix_proven": False,
        "call_site": row.call_site,
        "queryset_site": row.queryset_site,
        "plan": row.plan,
        "relations": list(row.relations or ()),
        "seen": row.seen,
        "cost": row.cost,
        "first_seen": row.first_seen.isoformat(timespec="seconds"),
        "last_seen": row.last_seen.isoformat(timespec="seconds"),
        "reproduce": reproduce_command(row),
        "reproduce_note": LOGIN_NOTE if reproduce_command(row) else "",
    }


def reproduce_command(row: ProductionFinding) -> str:
    """The command that runs a page of the route locally and proves the fix (N+1 and
    unused eager loads); the path is the user's to fill in (only the route is stored)."""
    if row.kind not in ("n_plus_one", "unused_select_related", "unused_prefetch_related"):
        return ""
    method, _, route = row.route.partition(" ")
    route = route.split(" [", 1)[0]  # (a catch-all pattern's template)
    if method not in ("GET", "HEAD") or route == "(no route)":
        return ""
    if not re.search(r"[<>^$()\[\]{}\\*+?|]", route):
        path = route  # a pattern without parameters is its only path
    elif not re.search(r"[\^$()\[\]{}\\*+?|]", route.replace("<", "").replace(">", "")):
        path = f"<a path of {route}>"
    else:
        path = f"<a path matching {route}>"
    return f"manage.py dbtune_nplusone {path}"


LOGIN_NOTE = "(add --user USERNAME for a page behind a login)"
"""Said after a reproduce command: whether the sampled requests were logged in is not kept."""


def fix_label(row: ProductionFinding) -> str:
    """Production never runs a page again with the fix, so its fix is a suggestion; for a
    page that can be requested locally, the reproduce command is what proves it."""
    if reproduce_command(row):
        return "suggested fix (not tried: the reproduce command proves it)"
    return "suggested fix (not tried)"
