"""The cache backend as the query cache sees it: table generations, one epoch, entries.

Every table has a generation token in the cache. An entry remembers the tokens of the
tables it read (and the epoch) as they were *before* its query ran; it is served only while
they are all unchanged. A write replaces the tokens of the tables it wrote: one ``set_many``,
no key scan. Tokens are random, so a token the cache evicted and made again never matches
an old entry.

The epoch is one more token that every entry carries. When an invalidation cannot reach the
backend, this process replaces the epoch as soon as it can reach it again, so nothing stored
before the outage is served after it; until then it does not use the cache at all.

Every backend call is guarded: an error or a timeout sends the caller to the database, is
logged once per interval, and opens a breaker so a dead server is not asked again for
``CACHE_BREAKER_SECONDS``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.cache import BaseCache, caches
from django.core.exceptions import ImproperlyConfigured

from django_dbtune.cache import local_layer, no_wait, primary
from django_dbtune.cache.local_layer import forget_locally
from django_dbtune.cache.reachable import unreachable
from django_dbtune.cache.snapshot import Snapshot, Stored, as_stored
from django_dbtune.cache.tables import IN_GROUP, key_prefix, table_key
from django_dbtune.cache.tokens import new_token, set_forever
from django_dbtune.conf import OPTIONS, conf

logger = logging.getLogger("django_dbtune.cache")

LOG_INTERVAL = 60.0
"""Seconds between two log lines about the same kind of backend failure."""

_FAILED = object()
"""What reading an entry gives when the backend failed (None: nothing stored)."""

LOCK_TIMEOUT = 30
"""Seconds after which a stampede lock whose holder died frees itself."""


REPAIR_FIRST = 1.0
"""Seconds after a missed invalidation before a timer first tries to make it good."""
REPAIR_LAST = 4.0
"""The longest wait between two tries (each failed try doubles it): once the backend is back,
the processes that did not see it fail serve the old rows until this process's next try, so
this bounds that time for every outage, however long (a try is one call)."""


_exit_repair = False
"""Whether the try at exit is registered (once per process)."""


class Store:
    """One process's view of the backend (the breaker and the missed-invalidation flag are
    per process; the tokens and entries live in the backend, shared)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._logged_at: dict[str, float] = {}
        self._missed = False
        """An invalidation could not be written: the epoch must change before any read."""
        self._misses = 0
        """How many times that happened: an epoch replaced meanwhile settles only those."""
        self._repairing: threading.Timer | None = None

    # --- keys ---------------------------------------------------------------------------

    @staticmethod
    def generation_key(group: str, table: str) -> str:
        """The key of ``table``'s generation in ``group``, or in the group that
        :func:`in_group` named with it (a table an entry read on another database)."""
        if IN_GROUP in table:
            group, _, table = table.partition(IN_GROUP)
        return f"{key_prefix()}:g:{group}:{table_key(table)}"

    @staticmethod
    def epoch_key() -> str:
        return f"{key_prefix()}:epoch"

    @staticmethod
    def catalog_key() -> str:
        return f"{key_prefix()}:catalog"

    @staticmethod
    def entry_key(digest: str) -> str:
        return f"{key_prefix()}:e:{digest}"

    # --- the backend, guarded ----------------------------------------------------------------

    def backend(self) -> BaseCache:
        """The backend, once this thread's stores sent without waiting are applied (so that
        what follows comes after them)."""
        self.settle_stores()
        return caches[conf.CACHE_ALIAS]

    def settle_stores(self) -> None:
        """Read the replies to this thread's stores sent without waiting (before its next
        call to the backend, and at the end of each request); a failed one is reported."""
        if (failure := no_wait.settle()) is not None:
            self.failed("store an entry", failure)

    def usable(self) -> bool:
        """The breaker is closed and no missed invalidation is waiting to be made good."""
        self.settle_stores()
        if time.monotonic() < self._open_until:
            return False
        if self._missed:
            return self._recover()
        return True

    def failed(self, what: str, error: BaseException) -> None:
        """The backend failed a call. When it could not be reached, another process may have
        lost an invalidation meanwhile (and ended, or gone quiet, before making it good): so
        this process too retires every entry (a new epoch) as soon as it answers again. Any
        other error (a value that does not pickle) only opens the breaker."""
        now = time.monotonic()
        if not self._missed and unreachable(error):
            self._missed_one()
        try:
            seconds = conf.CACHE_BREAKER_SECONDS
        except ImproperlyConfigured:  # wrong itself: a failure must still never raise
            seconds = OPTIONS["CACHE_BREAKER_SECONDS"].default
        with self._lock:
            self._open_until = now + seconds
            last = self._logged_at.get(what)
            if last is not None and now - last < LOG_INTERVAL:
                return
            self._logged_at[what] = now
        logger.warning(
            "The query cache could not %s (%s: %s); the database answers instead for the "
            "next %g s. (Logged once per %d s.)",
            what,
            type(error).__name__,
            error,
            seconds,
            LOG_INTERVAL,
        )

    def _missed_one(self) -> None:
        """An invalidation did not reach the backend, or may not have (another process's).
        It is made good (a new epoch) at this process's next read or write through the
        cache, or by a timer, whichever comes first: a process that neither reads nor writes
        again (a worker between jobs) must not leave the old rows served."""
        global _exit_repair
        with self._lock:
            self._missed = True
            self._misses += 1
            if not _exit_repair:  # a process ending before its timer fired tries once more
                _exit_repair = True
                atexit.register(self._repair_at_exit)
        self._schedule_repair(REPAIR_FIRST)

    def _schedule_repair(self, seconds: float) -> None:
        with self._lock:
            if self._repairing is not None and self._repairing.is_alive():
                return
            timer = threading.Timer(seconds, self._repair, (seconds,))
            timer.daemon = True
            timer.name = "django-dbtune cache repair"
            self._repairing = timer
        try:
            timer.start()
        except RuntimeError:  # no thread now (a thread limit, the interpreter ending)
            with self._lock:
                self._repairing = None  # the next use of the cache repairs it instead

    def _repair_at_exit(self) -> None:
        try:
            if self._missed:
                self._recover()
        except Exception:  # settings gone: nothing to repair for
            pass

    def _repair(self, waited: float) -> None:
        with self._lock:
            self._repairing = None
        try:
            if self._missed and not self._recover():
                self._schedule_repair(min(waited * 2, REPAIR_LAST))
        except Exception:  # settings gone (the process is ending): nothing to repair for
            pass

    def _recover(self) -> bool:
        # The catalog's token too: the missed call may have been a change of views,
        # triggers or functions that other processes must read again.
        with self._lock:
            misses = self._misses
        try:
            self.retire_everything(catalog=True)
        except Exception as error:
            self.failed("replace its epoch after a missed invalidation", error)
            return False
        with self._lock:  # one missed meanwhile (another thread) waits for the next epoch
            if self._misses == misses:
                self._missed = False
        logger.warning(
            "The query cache missed an invalidation while its backend was unreachable; "
            "every entry written before has been retired."
        )
        return True

    # --- reads ---------------------------------------------------------------------------

    def lookup(
        self, entry: str, group: str, tables: Iterable[str]
    ) -> tuple[Snapshot, Stored | None] | None:
        """One round trip for the epoch, the generations of ``tables`` (made where missing)
        and the entry: (the snapshot read, and (the entry's tables, its value, the seconds
        its computation took) when it is still valid). None: use the database.

        ``tables`` is a guess that saves a round trip; the entry knows which tables it read.
        When the guess lacks some of them, their generations are read in a second round trip.
        """
        if not self.usable():
            return None
        snapshot = self.snapshot(group, tables, entry)
        if snapshot is None:
            return None
        stored, snapshot.entry = snapshot.entry, None
        for _ in range(2):  # once more from the backend for a dead copy in memory
            valid = snapshot.validate(stored)
            if valid is None:  # the entry read tables the guess lacked
                missing = [table for table in stored[1] if table not in snapshot.tokens]
                if not self.extend(snapshot, group, missing):
                    return None
                valid = snapshot.validate(stored)
            if valid or snapshot.fetched is not False:
                break
            stored, snapshot.fetched = self._read(entry), True
        if valid and snapshot.fetched and (layer := local_layer.current()) is not None:
            layer.put_entry(entry, stored, stored[5])
        return snapshot, (as_stored(stored) if valid else None)

    def snapshot(
        self, group: str, tables: Iterable[str], entry: str | None = None
    ) -> Snapshot | None:
        """The epoch and the generations of ``tables`` now (and ``entry``, unchecked)."""
        tables = list(tables)
        generations = [self.generation_key(group, table) for table in tables]
        epoch_key, catalog_key = self.epoch_key(), self.catalog_key()
        keys = [epoch_key, catalog_key, *generations]
        try:
            layer = local_layer.current()
            found, moment = layer.read(keys, entry) if layer is not None else (None, -1)
            served = found is not None  # from memory
            if layer is not None and (lost := layer.lost()) is not None:
                raise lost  # its connection dropped: a message may be lost, as in an outage
            if found is None:
                backend = self.backend()  # a CACHE_ALIAS missing from CACHES fails here
                found = primary.get_many(backend, keys if entry is None else [*keys, entry])
            tokens: Sequence[Any] = [found.get(key) for key in (epoch_key, *generations)]
            if None in tokens:
                tokens = self._settle(self.backend(), [epoch_key, *generations], tokens)
            if layer is not None and moment >= 0:  # read from the backend just now
                kept = dict(zip((epoch_key, *generations), tokens, strict=True))
                kept[catalog_key] = found.get(catalog_key) or ""  # none yet is an answer too
                layer.keep(moment, kept)
        except Exception as error:
            self.failed("read", error)
            return None
        snapshot = Snapshot(
            str(tokens[0]),
            dict(zip(tables, map(str, tokens[1:]), strict=True)),
            str(found.get(catalog_key) or ""),
        )
        snapshot.entry = found.get(entry) if entry is not None else None
        snapshot.fetched = None if layer is None else not served
        return snapshot

    def extend(self, snapshot: Snapshot, group: str, tables: Iterable[str]) -> bool:
        """Read the generations of more tables into ``snapshot`` (False: the backend failed).
        Each is as new as the query that follows, which is all a store under them needs."""
        more = self.snapshot(group, tables)
        if more is None:
            return False
        if more.epoch != snapshot.epoch:
            snapshot.epoch = ""  # the epoch changed in between: nothing stored now is served
        snapshot.tokens.update(more.tokens)
        return True

    @staticmethod
    def _settle(backend: BaseCache, keys: list[str], tokens: Sequence[Any]) -> list[str]:
        """Make the tokens that are missing. ``add`` never replaces a token a writer set in
        the meantime; that one is read back instead."""
        settled: list[str] = []
        for key, token in zip(keys, tokens, strict=True):
            if token is None:
                token = new_token()
                if not backend.add(key, token, timeout=None):
                    token = primary.get(backend, key)
                    if token is None:  # evicted at once: an entry stored under it dies
                        token = new_token()
            settled.append(str(token))
        return settled

    def store(
        self,
        entry: str,
        snapshot: Snapshot,
        tables: Iterable[str],
        value: Any,
        timeout: int,
        seconds: float = 0.0,
    ) -> bool:
        """Store ``value``, read from ``tables`` in ``seconds``, under their generations in
        ``snapshot``. Whether it was stored."""
        if time.monotonic() < self._open_until or self._missed or not snapshot.epoch:
            return False
        tables = tuple(sorted(tables))
        tokens = tuple(snapshot.tokens[table] for table in tables)
        stored = (snapshot.epoch, tables, tokens, value, seconds, time.time() + timeout)
        try:
            backend = self.backend()
            # Not waiting for the reply: a store that lands late is dead already, and this
            # thread's next call to the backend reads the reply first.
            if not no_wait.send_set(backend, entry, stored, timeout):
                backend.set(entry, stored, timeout=timeout)
            if (layer := local_layer.current()) is not None:
                layer.put_entry(entry, stored, stored[5])
        except Exception as error:
            self.failed("store an entry", error)
            return False
        return True

    # --- the stampede lock ------------------------------------------------------------------

    def acquire(self, entry: str) -> bool:
        """Whether this reader computes ``entry`` (False: another one does; wait for it)."""
        try:
            return bool(self.backend().add(f"{entry}:lock", 1, timeout=LOCK_TIMEOUT))
        except Exception as error:
            self.failed("take a lock", error)
            return True  # nobody to wait for: compute it here

    def release(self, entry: str) -> None:
        try:
            self.backend().delete(f"{entry}:lock")
        except Exception as error:
            self.failed("release a lock", error)

    def wait_for(self, entry: str, snapshot: Snapshot, seconds: float) -> Stored | None:
        """The entry once the reader holding its lock stores it under the generations of
        ``snapshot`` (as :meth:`stored_entry`), or None after ``seconds`` or a failure."""
        deadline = time.monotonic() + seconds
        backoff = 0.005
        while time.monotonic() < deadline:
            time.sleep(backoff)
            backoff = min(backoff * 2, 0.05)
            stored = self._read(entry)
            if stored is _FAILED:
                return None
            if snapshot.validate(stored):
                return as_stored(stored)
        return None

    def stored_entry(self, entry: str, snapshot: Snapshot) -> Stored | None:
        """The entry when it is stored and valid under ``snapshot``: (the tables it read, its
        value, the seconds its computation took); None otherwise."""
        stored = self._read(entry)
        if stored is _FAILED or not snapshot.validate(stored):
            return None
        return as_stored(stored)

    def _read(self, entry: str) -> Any:
        """What the backend holds under ``entry`` (None when nothing), or ``_FAILED``."""
        try:
            return primary.get(self.backend(), entry)
        except Exception as error:
            self.failed("read", error)
            return _FAILED

    # --- writes --------------------------------------------------------------------------

    def invalidate(self, group: str, tables: Iterable[str]) -> None:
        """Give ``tables`` new generations. Never raises: a failure retires the epoch later.

        Tried even while the breaker is open: the breaker spares this process's reads, but a
        skipped invalidation would leave every other process serving the old rows. A miss
        of earlier is made good here too, as soon as the backend answers (a process that
        only writes never reads through the cache to do it)."""
        keys = {self.generation_key(group, table): new_token() for table in tables}
        if not keys:
            return
        try:
            set_forever(self.backend(), keys)
        except Exception as error:
            self._missed_one()
            self.failed("invalidate tables", error)
            return
        finally:  # this process reads the new tokens next, not its memory's
            forget_locally(list(keys))
        if self._missed:
            self._recover()

    def publish_catalog_change(self) -> None:
        """Views, triggers or functions changed (this process ran the DDL, or a migration):
        every process reads its catalog again at its next cached read, and every entry
        stored so far is retired, since it was stored under what the catalog said before.
        Never raises: a failure is a missed invalidation, made good by a new epoch."""
        try:
            self.retire_everything(catalog=True)
        except Exception as error:
            self._missed_one()
            self.failed("publish a change of views, triggers or functions", error)

    def retire_everything(self, catalog: bool = False) -> None:
        """A new epoch: every entry stored so far is dead. With ``catalog``
        (``dbtune_cache clear``), every process reads its views, triggers and functions
        again too, for those made by hand."""
        tokens = {self.epoch_key(): new_token()}
        if catalog:
            tokens[self.catalog_key()] = new_token()
        try:
            set_forever(self.backend(), tokens)
        finally:
            forget_locally(list(tokens))

    def retire_everything_quietly(self) -> None:
        """:meth:`retire_everything` for a write whose tables are unknown. Never raises: a
        failure is a missed invalidation, made good as soon as the backend answers."""
        try:
            self.retire_everything()
        except Exception as error:
            self._missed_one()
            self.failed("retire every entry after a write to tables it cannot name", error)


store = Store()
