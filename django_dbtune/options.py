"""The shape of one ``DBTUNE`` option: its default, what it accepts, and its help (which the
system checks and the docs read)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    default: Any
    accepts: Callable[[Any], bool]
    type_name: str
    help: str
    explain: Callable[[Any], str | None] | None = None
    """What exactly is wrong with a value it does not accept (None: the type_name says it)."""


def is_str_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)


def is_table_map(value: Any) -> bool:
    """A dict of table name to a list of table names."""
    return isinstance(value, Mapping) and all(
        isinstance(key, str) and is_str_list(tables) for key, tables in value.items()
    )
