"""One process's production mode: which units of work are sampled (requests, tasks,
commands), the detection around each, and the batch they all add to.

A sampled unit runs inside the N+1 detector (which captures its queries); what it found goes
to the process's batch, written when due and once more when the process exits. Nothing here
ever raises into the work it watches: a failure is logged once, and the work goes on.
"""

from __future__ import annotations

import atexit
import json
import logging
import random
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ContextDecorator, asynccontextmanager, contextmanager, suppress
from dataclasses import asdict
from typing import Any

from asgiref.sync import sync_to_async

from django_dbtune.conf import conf
from django_dbtune.production.store import Batch, Record, write
from django_dbtune.production_options import Production

logger = logging.getLogger("django_dbtune.production")


class Sampler:
    def __init__(self) -> None:
        self.batch = Batch(size=1)
        atexit.register(self.flush, None, True)

    @contextmanager
    def watching(self, route: Callable[[], str], path: str | None = None) -> Iterator[None]:
        """Runs the block, sampled or not; ``route`` names it once it has run (a request's
        URL pattern is known only then)."""
        settings = _settings()
        if settings is None or not _sampled(settings):
            yield
            self.flush(settings)
            return
        from django_dbtune.nplusone import detect

        try:
            detector = detect(url=path)
            report = detector.__enter__()
        except Exception as error:  # the detector could not start: the work runs plain
            failed(error, "left a unit of work unrecorded")
            detector = None
        if detector is None:
            yield
            return
        try:
            try:
                yield
            except BaseException:  # the work's own error goes on; the detection just ends
                with suppress(Exception):
                    detector.__exit__(*sys.exc_info())
                raise
            try:
                detector.__exit__(None, None, None)
                from django_dbtune.production.sampled import records_of

                self.add(records_of(route(), report, settings), settings)
            except Exception as error:
                failed(error, f"left {_named(route)} unrecorded")
        finally:
            detector.release()
        self.flush(settings)

    @asynccontextmanager
    async def awatching(
        self, route: Callable[[], str], path: str | None = None
    ) -> AsyncIterator[None]:
        """``watching`` for async code (an ASGI request): the detection's async entry and
        exit, and the store's writes and the slow queries' plans in a thread."""
        settings = _settings()
        if settings is None or not _sampled(settings):
            yield
            await sync_to_async(self.flush)(settings)
            return
        from django_dbtune.nplusone import detect

        try:
            detector = detect(url=path)
            report = await detector.__aenter__()
        except Exception as error:  # the detector could not start: the work runs plain
            failed(error, "left a unit of work unrecorded")
            detector = None
        if detector is None:
            yield
            return
        try:
            try:
                yield
            except BaseException:
                with suppress(Exception):
                    await detector.__aexit__(*sys.exc_info())
                raise
            try:
                await detector.__aexit__(None, None, None)
                from django_dbtune.production.sampled import records_of

                found = await sync_to_async(records_of)(route(), report, settings)
                self.add(found, settings)
            except Exception as error:
                failed(error, f"left {_named(route)} unrecorded")
        finally:
            detector.release()
        await sync_to_async(self.flush)(settings)

    def add(self, records: list[Record], settings: Production) -> None:
        for record in records:
            logger.info("%s", json.dumps(asdict(record)))
        span_events(records)
        self.batch.size = settings.BATCH
        self.batch.add(records)

    def flush(self, settings: Production | None, now: bool = False) -> None:
        """Writes the batch when due (``now``: whatever it holds, as the process exits)."""
        settings = _settings(running=False) if now else settings
        if settings is None or not (
            self.batch.due(settings.FLUSH_SECONDS) or (now and self.batch.records)
        ):
            return
        records, dropped = self.batch.take()
        if dropped:
            logger.warning(
                "Production mode dropped %d findings: the batch of %d was full (BATCH).",
                dropped,
                settings.BATCH,
            )
        try:
            write(records, settings)
        except Exception as error:  # the store is down: this batch is lost, and said so
            failed(error, "left a batch unrecorded")


def _named(route: Callable[[], str]) -> str:
    """The unit of work's name for a failure's message, which must not fail in turn."""
    try:
        return route()
    except Exception:
        return "a unit of work"


def _settings(running: bool = True) -> Production | None:
    """``DBTUNE["PRODUCTION"]`` (None while ``ENABLED`` is off, unless not ``running``: the
    batch a process holds is written as it exits); None too, said once in the log, when
    ``DBTUNE`` is wrong: a server that runs no system checks (gunicorn) must still serve."""
    try:
        return conf.PRODUCTION if conf.ENABLED or not running else None
    except Exception as error:
        failed(error, "is off until DBTUNE is fixed (manage.py check names the mistake)")
        return None


def _sampled(settings: Production) -> bool:
    if random.random() >= settings.SAMPLE_RATE:
        return False
    from django_dbtune.nplusone.state import detection_now

    # Work already inside a detection (dbtune_nplusone reproducing a page, a test's
    # detect()) is that detection's: it is not production's to count.
    return detection_now() is None


_tracing: Any = None
"""OpenTelemetry's ``trace`` module once looked for (False: not installed)."""


def span_events(records: list[Record]) -> None:
    """Each finding as an event of the current OpenTelemetry span (where opentelemetry-api
    is installed and a span is recording), so a tracing backend shows it on the request."""
    global _tracing
    if _tracing is None:
        try:
            from opentelemetry import trace

            _tracing = trace
        except ImportError:
            _tracing = False
    if not _tracing or not records:
        return
    span = _tracing.get_current_span()
    if not span.is_recording():
        return
    for record in records:
        span.add_event(
            "dbtune.finding",
            {
                "dbtune.kind": record.kind,
                "dbtune.route": record.route,
                "dbtune.message": record.message,
                "dbtune.fix": record.fix,
                "dbtune.call_site": record.call_site,
                "dbtune.queryset_site": record.queryset_site,
                "dbtune.relations": list(record.relations),
                "dbtune.cost": record.cost,
            },
        )


_sampler: Sampler | None = None


def sampler() -> Sampler:
    """The process's one sampler (its batch is what every request and task adds to)."""
    global _sampler
    if _sampler is None:
        _sampler = Sampler()
    return _sampler


def failed(error: Exception, outcome: str) -> None:
    """Logs a failure of production mode's own, once per place it was raised."""
    from django_dbtune.nplusone.failures import first_from_its_place

    if not first_from_its_place(error):
        return
    logger.error(
        "Production mode failed (%s: %s) and %s; the request or task went on. Set "
        "DBTUNE['PRODUCTION'] = None to turn it off until it is fixed. (Logged once.)",
        type(error).__name__,
        error,
        outcome,
        exc_info=error,
    )


class production_sample(ContextDecorator):
    """Production mode around work that is not a request: a Celery task, a management
    command, a job. Sampled as requests are (``SAMPLE_RATE``), its findings are named by
    ``name`` (``task send_digest``)::

        @production_sample("task send_digest")
        def send_digest(): ...
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._block: Any = None

    def _recreate_cm(self) -> production_sample:
        return production_sample(self.name)  # one per call: a decorated function may run
        # in several threads at once

    def __enter__(self) -> production_sample:
        self._block = sampler().watching(lambda: self.name)
        self._block.__enter__()
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        block, self._block = self._block, None
        return block.__exit__(*exc)  # type: ignore[no-any-return]
