"""The ``DBTUNE`` options of the detectors, the advisor and the middleware (part of
:data:`django_dbtune.conf.OPTIONS`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django_dbtune.options import Option, is_str_list

ALLOW_KEYS = ("kind", "relation", "call_site", "url")


def _is_allow_rule(rule: Any) -> bool:
    return (
        isinstance(rule, Mapping)
        and bool(rule)
        and all(key in ALLOW_KEYS and isinstance(item, str) for key, item in rule.items())
    )


CORE_OPTIONS: dict[str, Option] = {
    "ENABLED": Option(
        True,
        lambda value: isinstance(value, bool),
        "a boolean",
        "Master switch for everything django-dbtune does by itself while the site runs: "
        "off, the middleware lets requests through untouched, the query cache is off (its "
        "reads go to the database and no write is watched) and the toolbar panels record "
        "nothing. Commands, tests and helpers you call explicitly (detect(), "
        "capture_queries(), the pytest plugin) still work.",
    ),
    "DATABASES": Option(
        None,
        lambda value: value is None or is_str_list(value),
        "a list of database aliases or None",
        "Aliases whose queries are captured. None captures every alias in DATABASES.",
    ),
    "PROJECT_ROOT": Option(
        None,
        lambda value: value is None or isinstance(value, str | os.PathLike),
        "a path or None",
        "Call sites are shown relative to this folder. None uses settings.BASE_DIR, "
        "else the current directory.",
    ),
    "IGNORED_MODULES": Option(
        (),
        is_str_list,
        "a list of module names",
        "Top-level modules skipped, like Django itself, when finding the line that "
        "ran a query (for example a REST framework or your own query helpers).",
    ),
    "NPLUSONE_RAISE": Option(
        False,
        lambda value: isinstance(value, bool),
        "a boolean",
        "NPlusOneMiddleware raises NPlusOneError on a finding instead of logging a warning.",
    ),
    "NPLUSONE_PROVE": Option(
        False,
        lambda value: isinstance(value, bool),
        "a boolean",
        "NPlusOneMiddleware proves each fix by running a GET or HEAD request again with the "
        "fix applied, in a transaction rolled back, once per fix per process (the commands, "
        "the pytest plugin and the toolbar panel always prove).",
    ),
    "NPLUSONE_THRESHOLD": Option(
        2,
        lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= 2,
        "an integer of 2 or more",
        "How many lazy loads of one relation from one line make an N+1 finding.",
    ),
    "NPLUSONE_UNUSED_EAGER_LOADS": Option(
        True,
        lambda value: isinstance(value, bool),
        "a boolean",
        "Report select_related/prefetch_related calls whose data was never read.",
    ),
    "NPLUSONE_ALLOW": Option(
        (),
        lambda value: isinstance(value, list | tuple) and all(_is_allow_rule(r) for r in value),
        'a list of dicts with keys among "kind", "relation", "call_site" and "url"',
        "Findings to leave alone. Each rule is a dict of shell-style patterns that must all "
        'match, for example {"relation": "shop.Book.author"}, {"call_site": "legacy/*"} '
        'or {"url": "/admin/*"}.',
    ),
    "NPLUSONE_BASELINE": Option(
        None,
        lambda value: value is None or isinstance(value, str | os.PathLike),
        "a path or None",
        "A baseline file of known findings (written by the pytest plugin's "
        "--dbtune-nplusone-update-baseline): only findings not in it are reported.",
    ),
    "WORKLOAD_FILE": Option(
        None,
        lambda value: value is None or (isinstance(value, str | os.PathLike) and bool(str(value))),
        "None or a file path",
        "Record the workload of every request CaptureMiddleware sees into this JSON-lines "
        "file (query shapes, counts, times, call sites; no parameter values), for "
        "manage.py suggest_indexes --workload. Processes append to it; meant for "
        "development and staging.",
    ),
    "WORKLOAD_STORE": Option(
        None,
        lambda value: value is None or (isinstance(value, str) and bool(value)),
        "None or the name of a cache in settings.CACHES",
        "Record the workload of every request CaptureMiddleware sees into this cache "
        "(django-redis), which every process and host of the site can write to, instead of "
        "WORKLOAD_FILE; manage.py suggest_indexes --workload-store reads it.",
    ),
    "WORKLOAD_PARAMS": Option(
        False,
        lambda value: isinstance(value, bool),
        "a boolean",
        "Keep one parameter set per query shape in recorded workloads (they may be personal "
        "data; off by default). Lets the advisor plan with real values.",
    ),
    "PRODUCTION_DATABASES": Option(
        (),
        is_str_list,
        "a list of database aliases",
        "Aliases on which suggest_indexes --allow-build is refused: building a trial index "
        "takes locks and I/O a production database should not pay for a proof.",
    ),
    "UNUSED_INDEX_MIN_DAYS": Option(
        7,
        lambda value: (
            isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        ),
        "a number of days",
        "index_health advises removing an index no query used only when the database's "
        "statistics cover at least this many days and the index is at least this old: "
        "less, and a weekly job or a quiet week could make a needed index look unused.",
    ),
    "INDEX_SMALL_TABLE_ROWS": Option(
        1000,
        lambda value: (
            value is None
            or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        ),
        "a whole number of rows, or None",
        "An index finding on a table of fewer rows, as this database counts or estimates "
        "them, is never ranked high: a scan of a few pages costs what an index lookup does. "
        "0 or None turns the size rule off (ranks by where the queries run alone).",
    ),
}
