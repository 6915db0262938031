"""pytest plugin: N+1 detection and workload recording for a test suite.

An edge, like the middleware: it combines the N+1 detector with the workload recorder the
index advisor reads. Registered by entry point, so installing django-dbtune is enough.
Nothing happens unless asked: ``--dbtune-nplusone=raise|warn`` for every test, the
``dbtune_nplusone`` marker or fixture for one test (``dbtune_allow_nplusone`` exempts a
test); ``--dbtune-record=PATH`` records the run's query shapes.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

_FINDINGS = pytest.StashKey[list[Any]]()
_RECORDER = pytest.StashKey[Any]()


class NPlusOneWarning(UserWarning):
    """An N+1 query or unused eager load found in a test run with --dbtune-nplusone=warn."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("django-dbtune")
    group.addoption(
        "--dbtune-nplusone",
        choices=("raise", "warn"),
        default=None,
        help="Detect N+1 queries and unused eager loads in every test: 'raise' fails the "
        "test, 'warn' reports a warning. Tests marked dbtune_allow_nplusone are skipped.",
    )
    group.addoption(
        "--dbtune-record",
        metavar="PATH",
        default=None,
        help="Record the workload of the test run (query shapes, counts, times, call sites; "
        "no parameter values) into this JSON-lines file, for manage.py suggest_indexes "
        "--workload PATH.",
    )
    group.addoption(
        "--dbtune-no-proof",
        action="store_true",
        default=False,
        help="Do not prove fixes. By default a test with findings runs again, once as it is "
        "and once with each fix applied, in a transaction rolled back, and each finding says "
        "whether its fix lowered the queries.",
    )
    group.addoption(
        "--dbtune-nplusone-baseline",
        metavar="PATH",
        default=None,
        help="A baseline file of known findings: only new ones are reported. Defaults to "
        'DBTUNE["NPLUSONE_BASELINE"].',
    )
    group.addoption(
        "--dbtune-nplusone-update-baseline",
        action="store_true",
        default=False,
        help="Record every finding of this run in the baseline file instead of reporting "
        "them (adopt the detector on a large project, then fail only on new findings).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dbtune_nplusone(raise_=True, threshold=None, allow=(), unused_eager_loads=None): "
        "detect N+1 queries in this test (django-dbtune).",
    )
    config.addinivalue_line(
        "markers", "dbtune_allow_nplusone: do not detect N+1 queries in this test (django-dbtune)."
    )
    if config.getoption("--dbtune-nplusone-update-baseline"):
        if not config.getoption("--dbtune-nplusone"):
            raise pytest.UsageError(
                "--dbtune-nplusone-update-baseline needs --dbtune-nplusone=warn (or raise) "
                "to know which tests to watch."
            )
        config.stash[_FINDINGS] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """A baseline to update must have a place before the run, not after it."""
    config = session.config
    if _FINDINGS not in config.stash:
        return
    try:
        path = _baseline(config)
    except Exception:  # no Django settings to read DBTUNE from
        path = None
    if path is None:
        raise pytest.UsageError(_NEEDS_A_FILE)
    if not path.parent.is_dir():
        raise pytest.UsageError(
            f"--dbtune-nplusone-update-baseline: the folder {path.parent} does not exist "
            f"(the baseline file {path.name} is written there); make it first."
        )


_NEEDS_A_FILE = (
    "--dbtune-nplusone-update-baseline needs a file: pass --dbtune-nplusone-baseline "
    'PATH or set DBTUNE["NPLUSONE_BASELINE"].'
)

_MARKER_OPTIONS = {
    "raise_": "True or False",
    "threshold": "a whole number of 2 or more",
    "allow": "a list of allow rules",
    "unused_eager_loads": "True, False or None",
}


def _marker_options(marker: pytest.Mark) -> dict[str, Any]:
    """The marker's keyword arguments, checked: a misspelt or positional one fails the
    test with what the marker takes, never silently or from inside detect()."""
    known = ", ".join(f"{name}= ({wanted})" for name, wanted in _MARKER_OPTIONS.items())
    if marker.args:
        pytest.fail(
            f"@pytest.mark.dbtune_nplusone takes keyword arguments only ({known}); got "
            f"{', '.join(map(repr, marker.args))}.",
            pytrace=False,
        )
    for name, value in marker.kwargs.items():
        bad = (
            name not in _MARKER_OPTIONS
            or (name == "raise_" and not isinstance(value, bool))
            or (name == "unused_eager_loads" and value is not None and not isinstance(value, bool))
            or (name == "threshold" and (type(value) is not int or value < 2))
        )
        if bad:
            pytest.fail(
                f"@pytest.mark.dbtune_nplusone({name}={value!r}): it takes {known}.",
                pytrace=False,
            )
    return dict(marker.kwargs)


def _baseline(config: pytest.Config) -> Path | None:
    option = config.getoption("--dbtune-nplusone-baseline")
    if option:
        return Path(option)
    from django_dbtune.conf import conf

    return conf.NPLUSONE_BASELINE


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    path = item.config.getoption("--dbtune-record")
    if path is None:
        return (yield from _detect_nplusone(item))
    from django_dbtune.capture import capture_queries
    from django_dbtune.workload import Recorder

    recorder = item.config.stash.get(_RECORDER, None)
    if recorder is None:
        recorder = item.config.stash[_RECORDER] = Recorder(path)
    with capture_queries() as log, recorder.watching():
        try:
            return (yield from _detect_nplusone(item))
        finally:
            recorder.add(log)


def _detect_nplusone(item: pytest.Item) -> Iterator[None]:
    config = item.config
    marker = item.get_closest_marker("dbtune_nplusone")
    mode = config.getoption("--dbtune-nplusone")
    if (
        item.get_closest_marker("dbtune_allow_nplusone")
        or (marker is None and mode is None)
        or "dbtune_nplusone" in getattr(item, "fixturenames", ())  # the test checks itself
    ):
        return (yield)
    from django_dbtune.errors import NPlusOneError
    from django_dbtune.nplusone import describe, detect

    options = _marker_options(marker) if marker is not None else {}
    raise_ = options.pop("raise_", True) if marker is not None else mode == "raise"
    updating = _FINDINGS in config.stash
    baseline: Path | Literal[False] | None = False if updating else _baseline(config)
    with detect(baseline=baseline, reports_inner=True, **options) as report:
        result = yield
    found = report.findings
    if updating:
        config.stash[_FINDINGS].extend(found)
        return result
    if found and not config.getoption("--dbtune-no-proof"):
        found = _proven(item, found, report)
    if found and raise_:
        raise NPlusOneError(describe(found))
    if found:
        # Shown at the test's own line, not at this plugin's.
        line = item.location[1]
        warnings.warn_explicit(
            NPlusOneWarning(describe(found)),
            NPlusOneWarning,
            filename=str(item.path),
            lineno=(line or 0) + 1,
        )
    return result


def _proven(item: pytest.Item, found: list[Any], report: Any) -> list[Any]:
    """The findings with their proofs: the test body run again, as it is and with each fix,
    in a transaction rolled back (its fixtures are not set up again)."""
    from django_dbtune.nplusone.proof import not_rerun, rerun

    if not isinstance(item, pytest.Function) or inspect.iscoroutinefunction(item.obj):
        return [not_rerun(f, "only a plain test function is run again") for f in found]

    def call() -> None:
        item.runtest()

    aliases = {record.alias for record in report.queries.records}
    return rerun(found, call, aliases)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    recorder = config.stash.get(_RECORDER, None)
    if recorder is not None:
        count = recorder.flush()
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"django-dbtune: recorded {count} query shape(s) in {recorder.path}"
            )
    if _FINDINGS not in config.stash:
        return
    path = _baseline(config)
    if path is None:
        raise pytest.UsageError(_NEEDS_A_FILE)
    from django_dbtune.nplusone.allow import write_baseline

    findings: list[Any] = config.stash[_FINDINGS]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    try:
        count = write_baseline(path, findings)
    except OSError as error:  # (the folder was checked at the start; it may have gone)
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        if reporter is not None:
            reporter.write_line(f"django-dbtune: could not write {path}: {error.strerror}.")
        return
    if reporter is not None:
        reporter.ensure_newline()  # not after the progress dots
        distinct = len({tuple(f.baseline_keys or (f.baseline_key,)) for f in findings})
        reporter.write_line(
            f"django-dbtune: wrote {distinct} known N+1 finding(s) to {path}"
            f" ({count} entries: one per relation)"
        )


@pytest.fixture
def dbtune_nplusone() -> Iterator[Any]:
    """The N+1 report of this test so far: ``assert not dbtune_nplusone.findings``."""
    from django_dbtune.nplusone import detect

    with detect(baseline=False) as report:
        yield report
