"""The N+1 detector: lazy loads repeated per row, and eager loads nothing read.

``with detect() as report:`` (``async with`` in async code) watches the code inside;
``report.findings`` then lists each problem once per relation and line, with the fix.
``detect(raise_=True)`` raises :class:`~django_dbtune.NPlusOneError` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextvars import Token
from pathlib import Path
from types import TracebackType
from typing import Literal

from django_dbtune.call_sites import call_site_finder
from django_dbtune.capture import QueryLog, capture_queries
from django_dbtune.conf import conf
from django_dbtune.errors import NPlusOneError
from django_dbtune.findings import NPlusOneFinding
from django_dbtune.nplusone import patches
from django_dbtune.nplusone.allow import allowed, read_baseline
from django_dbtune.nplusone.failures import give_up
from django_dbtune.nplusone.read_watch import release_reads
from django_dbtune.nplusone.report import findings as build_findings
from django_dbtune.nplusone.state import Detection, current, pause

__all__ = ["NPlusOneError", "NPlusOneFinding", "Report", "describe", "detect", "pause"]


class Report:
    """What one ``detect()`` found. Read ``findings`` inside the block for the findings so
    far, or after it for all of them."""

    def __init__(self, opened_by: detect, detection: Detection) -> None:
        self._detect: detect | None = opened_by
        self._detection: Detection | None = detection
        self._log: QueryLog | None = detection.log
        self._final: list[NPlusOneFinding] | None = None

    @property
    def queries(self) -> QueryLog:
        """Every query run inside the block (the capture the detector reads)."""
        if self._log is None:
            raise NPlusOneError(
                "This report let go of its queries when its request ended; "
                "CaptureMiddleware keeps them as request.dbtune_queries."
            )
        return self._log

    @property
    def findings(self) -> list[NPlusOneFinding]:
        if self._final is not None:
            return self._final
        assert self._detect is not None
        assert self._detection is not None
        return self._detect._filter(self._detection)

    def __iter__(self) -> Iterator[NPlusOneFinding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<Report: {len(self.findings)} finding(s)>"

    def message(self) -> str:
        return describe(self.findings)

    def settle(self, findings: list[NPlusOneFinding]) -> None:
        """The findings from now on: these, as proven by running the code again."""
        self._final = list(findings)

    def release(self) -> None:
        """Keep the findings only: ``NPlusOneMiddleware`` calls it when its request is done,
        so that the queries and what the detector saw do not live on with the request (a
        cycle of Django's own, which only the garbage collector frees)."""
        if self._final is not None:
            self._detection = self._log = None

    def _close(self) -> None:
        assert self._detect is not None
        assert self._detection is not None
        self._final = self._detect._filter(self._detection)
        self._detect = None  # it refers to this report: a cycle only the collector breaks


def describe(found: list[NPlusOneFinding]) -> str:
    """Findings as one text, for an exception or a warning."""
    if not found:
        return "No N+1 queries or unused eager loads."
    n_plus_one = sum(1 for finding in found if finding.kind == "n_plus_one")
    unused = len(found) - n_plus_one
    parts = [f"{n_plus_one} N+1 quer{'y' if n_plus_one == 1 else 'ies'}"] if n_plus_one else []
    if unused:
        parts.append(f"{unused} unused eager load{'' if unused == 1 else 's'}")
    return "\n\n".join([" and ".join(parts) + ":", *(finding.message for finding in found)])


class detect:
    """Watch the code inside for N+1 queries and unused eager loads.

    ``threshold`` (default ``DBTUNE["NPLUSONE_THRESHOLD"]``, 2) is how many loads of one
    relation from one line make a finding; ``allow`` adds allowlist rules to
    ``DBTUNE["NPLUSONE_ALLOW"]``; ``baseline`` (default ``DBTUNE["NPLUSONE_BASELINE"]``)
    names a file of known findings to leave out (``False``: none); ``url`` is matched by
    ``"url"`` rules. ``reports_inner=True`` says that whoever opens it reports what
    detections opened inside it find: ``NPlusOneMiddleware`` inside it then neither logs
    nor raises (the commands, the pytest plugin and proofs open theirs so).
    """

    def __init__(
        self,
        *,
        raise_: bool = False,
        threshold: int | None = None,
        allow: Iterable[Mapping[str, str]] = (),
        unused_eager_loads: bool | None = None,
        baseline: str | Path | Literal[False] | None = None,
        url: str | None = None,
        reports_inner: bool = False,
    ) -> None:
        if threshold is not None and (not isinstance(threshold, int) or threshold < 2):
            raise ValueError(f"threshold must be an integer of 2 or more, not {threshold!r}.")
        self.raise_ = raise_
        self.threshold = threshold
        self.allow = tuple(dict(rule) for rule in allow)
        self.unused_eager_loads = unused_eager_loads
        self.baseline: Path | Literal[False] | None = (
            Path(baseline) if isinstance(baseline, str | Path) else baseline
        )
        self.url = url
        self.reports_inner = reports_inner
        self._capture: capture_queries | None = None
        self._token: Token[Detection | None] | None = None
        self._report: Report | None = None
        self._outer: Detection | None = None
        """The detection this one was opened inside, if any."""
        self._outer_offset = 0
        self._known: frozenset[str] = frozenset()
        self.handed_on = False
        """Closed inside a detection opened with ``reports_inner=True``, which took its
        findings over and reports them (``dbtune_nplusone``, ``dbtune_report --url``, the
        pytest plugin, a proof): ``NPlusOneMiddleware`` then leaves the reporting to it."""

    def __enter__(self) -> Report:
        capture = self._begin()
        log = capture.__enter__()
        try:
            return self._start(log)
        except BaseException:
            capture.__exit__(None, None, None)
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._capture is not None
        try:
            self._capture.__exit__(exc_type, exc, traceback)
        finally:
            self._finish(exc is None)

    async def __aenter__(self) -> Report:
        capture = self._begin()
        log = await capture.__aenter__()
        try:
            return self._start(log)
        except BaseException:
            await capture.__aexit__(None, None, None)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._capture is not None
        try:
            await self._capture.__aexit__(exc_type, exc, traceback)
        finally:
            self._finish(exc is None)

    def _begin(self) -> capture_queries:
        if self._capture is not None:
            raise NPlusOneError("This detect() is already in use; create another.")
        path = conf.NPLUSONE_BASELINE if self.baseline is None else self.baseline
        self._known = read_baseline(path) if path else frozenset()
        self._capture = capture_queries()
        return self._capture

    def _start(self, log: QueryLog) -> Report:
        """The capture is on: put the hooks in. They come out in ``_finish``, or here if
        anything after installing them fails (the capture's own enter may fail too, for
        example a sync ``with`` in async code: then nothing was installed)."""
        patches.install()
        try:
            detection = Detection(
                log,
                call_site_finder(),
                reads=self._unused_eager_loads(),
                reports_inner=self.reports_inner,
            )
            # Opened inside another detection (the middleware inside dbtune_nplusone or the
            # pytest plugin): hand it everything on close (Detection.take_over).
            self._outer = current.get()
            self._outer_offset = len(self._outer.log.records) if self._outer is not None else 0
            self._token = current.set(detection)
        except BaseException:
            patches.uninstall()
            raise
        self._report = Report(self, detection)
        return self._report

    def _finish(self, clean_exit: bool) -> None:
        assert self._report is not None
        assert self._report._detection is not None
        detection = self._report._detection
        try:
            detection.active = False
            if self._token is not None:
                current.reset(self._token)
            self._report._close()  # this detection's own findings, before it hands them on
            outer = self._outer
            if outer is not None and outer.active:
                outer.take_over(detection, self._outer_offset)
                self.handed_on = outer.reports_inner
            else:
                release_reads(detection)
                detection.discard()
        finally:
            patches.uninstall()
        if self.raise_ and clean_exit and self._report.findings:
            raise NPlusOneError(self._report.message())

    def release(self) -> None:
        """Its report keeps the findings only (see :meth:`Report.release`); nothing when it
        was never entered."""
        if self._report is not None:
            self._report.release()

    def _unused_eager_loads(self) -> bool:
        if self.unused_eager_loads is not None:
            return self.unused_eager_loads
        return conf.NPLUSONE_UNUSED_EAGER_LOADS

    def _filter(self, detection: Detection) -> list[NPlusOneFinding]:
        if detection.failed is not None:
            return []  # it stopped watching part way: what it saw is no finding
        threshold = self.threshold if self.threshold is not None else conf.NPLUSONE_THRESHOLD
        rules = (*conf.NPLUSONE_ALLOW, *self.allow)
        known = self._known

        def keep(finding: NPlusOneFinding) -> bool:
            return not allowed(finding, rules) and finding.baseline_key not in known

        try:
            found = build_findings(
                detection, threshold, self._unused_eager_loads(), self.url, keep
            )
        except Exception as error:
            if not give_up(detection, error):
                raise
            return []
        return sorted(
            found,
            key=lambda f: (
                f.kind != "n_plus_one",
                -f.count,
                f.path.count("__"),
                f.relation,
                f.call_site or "",
            ),
        )
