"""Production findings, kept in the process until flushed to the database.

A process adds what each sampled request found to a bounded batch (the same finding twice
is one entry, counted twice), and writes the batch at most every ``FLUSH_SECONDS``: each
entry is an ``UPDATE`` adding its counts to the row every process shares, or the row's
``INSERT`` when it is the first. What a process holds and has not written is lost if it
dies: at most one batch.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from django.db import IntegrityError, router, transaction
from django.db.models import F
from django.utils import timezone

from django_dbtune.production.cache_store import read_cache, write_cache
from django_dbtune.production_options import Production

if TYPE_CHECKING:
    from django_dbtune.models import ProductionFinding


@dataclass(frozen=True)
class Record:
    """One finding of one sampled request."""

    kind: str
    route: str
    message: str
    fix: str = ""
    call_site: str = ""
    queryset_site: str = ""
    plan: str = ""
    relations: tuple[str, ...] = ()
    cost: float = 0.0
    seen: int = 1

    @property
    def key(self) -> str:
        identity = "\0".join((self.kind, self.route, self.call_site, self.message, self.fix))
        return hashlib.sha256(identity.encode()).hexdigest()


@dataclass
class Batch:
    """What one process found and has not written yet."""

    size: int
    records: dict[str, Record] = field(default_factory=dict)
    dropped: int = 0
    """Findings left out since the last write, the batch being full."""
    written_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, records: list[Record]) -> None:
        with self.lock:
            for record in records:
                known = self.records.get(record.key)
                if known is not None:
                    self.records[record.key] = replace(
                        known, seen=known.seen + record.seen, cost=known.cost + record.cost
                    )
                elif len(self.records) < self.size:
                    self.records[record.key] = record
                else:
                    self.dropped += 1

    def due(self, seconds: float) -> bool:
        return bool(self.records) and (
            len(self.records) >= self.size or time.monotonic() - self.written_at >= seconds
        )

    def take(self) -> tuple[list[Record], int]:
        """The records to write, and how many findings were dropped since the last take."""
        with self.lock:
            taken, dropped = list(self.records.values()), self.dropped
            self.records.clear()
            self.dropped = 0
            self.written_at = time.monotonic()
            return taken, dropped


def write(records: list[Record], settings: Production | None = None) -> None:
    """Adds ``records`` to what every process shares: the table, or the cache."""
    if settings is not None and settings.STORE == "cache":
        write_cache(records, settings.CACHE)
        return
    from django_dbtune.models import ProductionFinding

    alias = router.db_for_write(ProductionFinding)
    now = timezone.now()
    rows = ProductionFinding.objects.using(alias)
    for record in records:
        added = {"seen": F("seen") + record.seen, "cost": F("cost") + record.cost}
        if rows.filter(key=record.key).update(**added, last_seen=now):
            continue
        try:
            with transaction.atomic(using=alias):
                rows.create(
                    key=record.key,
                    kind=record.kind,
                    route=record.route[:255],
                    message=record.message,
                    fix=record.fix,
                    call_site=record.call_site[:255],
                    queryset_site=record.queryset_site[:255],
                    plan=record.plan,
                    relations=list(record.relations),
                    seen=record.seen,
                    cost=record.cost,
                    first_seen=now,
                    last_seen=now,
                )
        except IntegrityError:  # another process inserted it meanwhile
            rows.filter(key=record.key).update(**added, last_seen=now)


def stored(settings: Production | None) -> list[ProductionFinding]:
    """Every finding every process wrote, from the store ``settings`` names."""
    if settings is not None and settings.STORE == "cache":
        return read_cache(settings.CACHE)
    from django_dbtune.models import ProductionFinding

    return list(ProductionFinding.objects.using(router.db_for_read(ProductionFinding)))
