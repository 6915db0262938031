"""Table names as the query cache keys them: one name however a statement spells a table,
a table of another database group, every table at once, and following tables step by step
(database cascades, what triggers write, what views read)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django_dbtune.conf import conf

_names: dict[str, str] = {}


EVERY_TABLE = "*"
"""Stands for every table: a write whose tables cannot be named."""

IN_GROUP = "\x1f"
"""Between a database group and a table in :func:`in_group`'s names (no table name has it)."""


def in_group(group: str, table: str) -> str:
    """``table`` of database group ``group``, as an entry read on another group records
    it (a prefetch routed to another database): its generation is that group's, the one
    a write there replaces."""
    return f"{group}{IN_GROUP}{table}"


def followed(tables: Iterable[str], follows: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """``tables`` and every table ``follows`` leads to from them (by :func:`table_key`),
    step by step: database cascades, what triggers write, what views read."""
    found = list(dict.fromkeys(tables))
    if not follows:
        return tuple(found)
    seen = {table_key(table) for table in found}
    for table in found:  # grows while it is read: the steps further on
        for other in follows.get(table_key(table), ()):
            if table_key(other) not in seen:
                seen.add(table_key(other))
                found.append(other)
    return tuple(found)


def key_prefix() -> str:
    """What every key of the query cache starts with: the prefix in braces, a Redis Cluster
    hash tag, so that an entry and the generations it is checked against share one slot
    and are read with one command."""
    return f"{{{conf.CACHE_PREFIX}}}"


def table_key(table: str) -> str:
    """The name a table's generation goes by, however a statement spells it: without its
    schema and quotes, case-folded (``public.app_book``, ``"APP_BOOK"`` and ``app_book`` are
    one). Tables that differ only there share a generation: a write to one retires the
    entries of both, never fewer."""
    name = _names.get(table)
    if name is None:
        if len(_names) > 4096:
            _names.clear()
        group, _, bare = table.rpartition(IN_GROUP)
        name = bare.rpartition(".")[2].strip('"`[]').casefold()
        name = _names[table] = in_group(group, name) if group else name
    return name
