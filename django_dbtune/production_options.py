"""Production mode's ``DBTUNE["PRODUCTION"]`` option (part of
:data:`django_dbtune.conf.OPTIONS`), and what it resolves to."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django_dbtune.options import Option


@dataclass(frozen=True)
class Production:
    """``DBTUNE["PRODUCTION"]`` with its defaults filled in."""

    SAMPLE_RATE: float = 0.01
    """The share of requests that run the N+1 detector and the query capture."""
    SLOW_QUERY_MS: float = 500.0
    """A query at least this long is a slow-query finding."""
    REPEATED_QUERIES: int = 5
    """The same statement with the same values this many times in one request is a finding."""
    FLUSH_SECONDS: float = 10.0
    """A process writes what it found to the store at most this often (and when the batch is
    full)."""
    BATCH: int = 200
    """The findings a process keeps before it writes them: beyond, new ones are dropped and
    counted."""
    STORE: str = "database"
    """Where every process adds its findings: ``database`` (the table
    ``dbtune_production_finding``) or ``cache`` (the Django cache ``CACHE``, django-redis)."""
    CACHE: str = "default"
    """With ``STORE = "cache"``: which of settings.CACHES."""


_NUMBERS: dict[str, Callable[[Any], bool]] = {
    "SAMPLE_RATE": lambda v: 0 <= v <= 1,
    "SLOW_QUERY_MS": lambda v: v > 0,
    "REPEATED_QUERIES": lambda v: isinstance(v, int) and v >= 2,
    "FLUSH_SECONDS": lambda v: v >= 0,
    "BATCH": lambda v: isinstance(v, int) and v >= 1,
}


_WORDS: dict[str, Callable[[Any], bool]] = {
    "STORE": lambda v: v in ("database", "cache"),
    "CACHE": lambda v: isinstance(v, str) and bool(v),
}

_WANTED = {
    "SAMPLE_RATE": "a number from 0 to 1",
    "SLOW_QUERY_MS": "a number of milliseconds above 0",
    "REPEATED_QUERIES": "a whole number, 2 or more",
    "FLUSH_SECONDS": "a number of seconds, 0 or more",
    "BATCH": "a whole number, 1 or more",
    "STORE": '"database" or "cache"',
    "CACHE": "the name of one of settings.CACHES",
}
"""What each key takes, as the system check says it."""


def _accepts(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, Mapping) and all(
        (
            key in _NUMBERS
            and isinstance(item, int | float)
            and not isinstance(item, bool)
            and _NUMBERS[key](item)
        )
        or (key in _WORDS and _WORDS[key](item))
        for key, item in value.items()
    )


def _explain(value: Any) -> str | None:
    """The first key of ``value`` that is wrong, and why (appended to ``DBTUNE['PRODUCTION']``)."""
    if not isinstance(value, Mapping):
        return f" must be None or a dict, not {type(value).__name__}."
    for key, item in value.items():
        if key not in _WANTED:
            close = difflib.get_close_matches(str(key).upper(), _WANTED, n=1)
            known = f"Did you mean {close[0]!r}?" if close else f"Keys: {', '.join(_WANTED)}."
            return f" has an unknown key {key!r}. {known}"
        if not _accepts({key: item}):
            return f"[{key!r}] must be {_WANTED[key]}, not {item!r}."
    return None


def production(value: Mapping[str, Any] | None) -> Production | None:
    return None if value is None else Production(**value)


PRODUCTION_OPTIONS: dict[str, Option] = {
    "PRODUCTION": Option(
        None,
        _accepts,
        "None or a dict with keys among "
        + ", ".join([*_NUMBERS, *_WORDS])
        + ' (numbers in range; STORE "database" or "cache"; CACHE a cache alias)',
        "Production mode, off by default: ProductionMiddleware runs the N+1 detector and the "
        "query capture on SAMPLE_RATE of the requests (default 0.01) and stores what they "
        "find (N+1 queries, unused eager loads, statements repeated REPEATED_QUERIES times "
        "(default 5), queries over SLOW_QUERY_MS (default 500)) in the database, for "
        "manage.py dbtune_findings; never a parameter value or a SQL literal. A process "
        "writes at most every FLUSH_SECONDS (default 10) and keeps at most BATCH findings "
        "(default 200) in between, to the database (STORE 'database', the default) or to "
        "the Django cache CACHE (STORE 'cache': django-redis).",
        _explain,
    ),
}
