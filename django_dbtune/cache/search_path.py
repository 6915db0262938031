"""A ``search_path`` a project sets by hand on a PostgreSQL connection.

Which schema an unqualified table name means is part of what a read reads: a site that
switches tenants with ``SET search_path TO tenant_a`` reads ``tenant_a.shop_book`` where
another connection reads ``public.shop_book``, from the same SQL. The SQL watcher
(:mod:`.hooks`) tells this module of every ``SET``, ``RESET`` and ``DISCARD`` a connection
runs, and of ``set_config()`` calls; a plain session-wide ``SET search_path TO ...`` outside a
transaction is remembered as written and goes into the keys of the reads that follow
(:func:`.keys.schema_of`). Anything else that may change it (``SET LOCAL``, ``set_config()``,
a ``SET`` inside a transaction that may roll back, ``RESET``, ``DISCARD ALL``) makes the path
unknown, and the connection's reads skip the cache until it is closed. A new connection
starts from the path its settings give it.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

SEARCH_PATH = "_dbtune_search_path"
"""On a connection whose path a statement set: the path as written, or :data:`UNKNOWN`."""

UNKNOWN = "(changed, not known)"

HEADS = ("SET", "RESET", "DISCARD")
"""Statements that may change a session setting (``SELECT set_config(...)`` too)."""

_PLAIN_SET = re.compile(
    r"\s*SET\s+(?:SESSION\s+)?search_path\s*(?:TO|=)\s*(?P<path>.*?)\s*;?\s*\Z",
    re.IGNORECASE | re.DOTALL,
)
_MENTIONED = re.compile(r"search_path|\A\s*(?:RESET|DISCARD)\s+ALL\b", re.IGNORECASE)


def noticed(connection: BaseDatabaseWrapper, sql: str, params: Any) -> None:
    """``sql`` ran on ``connection`` and may have set its path (see :data:`HEADS`)."""
    head = sql.lstrip()[:8].upper()
    if head.startswith("SELECT"):
        if "search_path" in sql.lower():  # SELECT set_config('search_path', ...)
            connection.__dict__[SEARCH_PATH] = UNKNOWN
        return
    if not _MENTIONED.search(sql):  # another setting (SET CONSTRAINTS ALL ..., RESET ROLE)
        return
    plain = _PLAIN_SET.match(sql)
    settled = connection.get_autocommit() and not connection.in_atomic_block
    if plain is not None and settled:
        path = plain["path"]
        connection.__dict__[SEARCH_PATH] = f"{path} {params!r}" if params else path
    else:
        connection.__dict__[SEARCH_PATH] = UNKNOWN


def set_by_hand(connection: BaseDatabaseWrapper) -> str | None:
    """The path a statement set on ``connection`` (:data:`UNKNOWN` when it cannot be told),
    None when none did."""
    return connection.__dict__.get(SEARCH_PATH)


def forget(connection: BaseDatabaseWrapper) -> None:
    """A new connection: it starts from the path its settings give it."""
    connection.__dict__.pop(SEARCH_PATH, None)
