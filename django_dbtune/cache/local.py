"""A copy in process memory of the generation tokens and entries this process read or
stored, kept fresh by the Redis server itself (``DBTUNE["CACHE_LOCAL"]``).

The process holds one connection of its own to the cache's Redis primary, with client-side
caching in broadcast mode: ``CLIENT TRACKING ON BCAST PREFIX <token prefixes>``, the
invalidation messages redirected to that connection's own ``__redis__:invalidate``
subscription. Whenever any client writes a token (a table's generation, the epoch, the
catalog token), the server sends this connection the token's name. Before every read, the
messages already received are taken off the socket without waiting, and the tokens they
name are forgotten; the read is served from memory only when every token it needs (and the
entry) is still there, and an entry is valid under the tokens exactly as in the backend.

What keeps it fresh:

- A token read from the backend is kept only if nothing forgot it (a message, a write of
  this process, a lost connection) between the moment its read was sent and the moment it
  is kept: an old value read just before a write cannot outlive the write's message.
- This process's own writes forget their tokens at once: it never waits for its own message.
- A lost connection (or a server flush) forgets every token: nothing is served from memory
  until the connection is back and the tokens have been read again.
- A ``PING`` on the connection every ``CHECK_SECONDS`` of use: the server answers it after
  every message it sent before, so a connection that silently stopped delivering (a network
  partition) is noticed within that time plus the socket timeout.

What it cannot promise: a message is sent when the write reaches the server and read when
this process next reads; a read in another process that starts after the writer heard back
from the server but before the message crossed the network is served the old entry. On
one host that window is the kernel's delivery of a few bytes; across hosts, the difference
between two network paths.

Only for a single Redis primary reached through redis-py (django-redis's default client,
Django's ``RedisCache``) with a key function that keeps the query cache's prefix at the
start of every key: elsewhere :func:`layer_for` gives None and reads go to the backend.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from django.core.cache import BaseCache, caches
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_dbtune.cache.reachable import unreachable
from django_dbtune.cache.tables import key_prefix
from django_dbtune.conf import conf

logger = logging.getLogger("django_dbtune.cache")

CHANNEL = "__redis__:invalidate"
CHECK_SECONDS = 1.0
"""How often a connection in use proves, with a PING, that it still delivers messages."""
RETRY_SECONDS = 1.0
"""How long after a failed connection the next one is tried (reads use the backend)."""
FORGOTTEN_KEPT = 100_000
"""How many forgotten token names are remembered with the moment they were forgotten."""


class Local:
    """One process's memory of tokens and entries, and the connection that keeps it fresh."""

    def __init__(self, connect: Any, prefix: str, redis_prefix: str, entries: int) -> None:
        self._connect = connect
        """Makes a redis-py connection to the primary (not yet connected)."""
        self._prefix = prefix
        """What our own key names start with (``{dbtune}:``)."""
        self._redis_prefix = redis_prefix
        """What the same keys start with in Redis, after the backend's key function."""
        self._max_entries = entries
        self._lock = threading.Lock()
        self._connection: Any = None
        self._pid = os.getpid()
        self._tokens: dict[str, Any] = {}
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._moment = 0
        """Counts every forgetting: a token read at moment m is kept only if its name was
        not forgotten after m."""
        self._forgotten: dict[str, int] = {}
        self._all_forgotten = 0
        self._checked = 0.0
        self._retry_at = 0.0
        self._warned = False

    # --- reads ---------------------------------------------------------------------------

    def read(self, keys: Sequence[str], entry: str | None) -> tuple[dict[str, Any] | None, int]:
        """What memory holds for ``keys`` (tokens) and ``entry``, once the messages received
        so far are applied: all of them, or None (ask the backend). With None, the moment to
        give :meth:`keep` with what the backend answers (-1: keep nothing: not connected, or
        served from memory)."""
        with self._lock:
            if not self._fresh():
                return None, -1
            tokens = self._tokens
            found = {key: tokens[key] for key in keys if key in tokens}
            if len(found) < len(keys):
                return None, self._moment
            if entry is None:
                return found, -1
            pickled = self._entries.get(entry)
            if pickled is None:
                return None, self._moment
            self._entries.move_to_end(entry)
        # A copy for each reader: a value the cache does not rebuild (a list of values()
        # rows, an aggregate's dict) must not be shared with whoever changes it.
        found[entry] = pickle.loads(pickled)
        return found, -1

    def keep(self, moment: int, tokens: dict[str, Any]) -> None:
        """Keep tokens the backend answered to a read sent at ``moment``: those forgotten
        since are left out, their value may be older than the write."""
        if moment < 0:
            return
        with self._lock:
            if self._connection is None or not self._drain():
                return
            if self._all_forgotten > moment:
                return
            forgotten = self._forgotten
            for key, token in tokens.items():
                if token is not None and forgotten.get(key, -1) <= moment:
                    self._tokens[key] = token

    def put_entry(self, entry: str, stored: Any) -> None:
        """An entry this process stored in the backend, or read there and found valid."""
        pickled = _pickled(stored)
        with self._lock:
            self._put(entry, pickled)

    def _put(self, entry: str, pickled: bytes) -> None:
        self._entries[entry] = pickled
        self._entries.move_to_end(entry)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    # --- forgetting ----------------------------------------------------------------------

    def forget(self, keys: Sequence[str]) -> None:
        """This process wrote these tokens: forget them now, not when its message comes."""
        with self._lock:
            self._forget(keys)

    def _forget(self, keys: Sequence[str]) -> None:
        self._moment += 1
        for key in keys:
            self._tokens.pop(key, None)
            self._forgotten[key] = self._moment
        if len(self._forgotten) > FORGOTTEN_KEPT:
            self._forget_all()

    def _forget_all(self) -> None:
        self._moment += 1
        self._tokens.clear()
        self._forgotten.clear()
        self._all_forgotten = self._moment

    def close(self) -> None:
        with self._lock:
            self._drop()

    # --- the connection ------------------------------------------------------------------

    def _fresh(self) -> bool:
        """Connected, every message received so far applied, and proven to deliver within
        ``CHECK_SECONDS``. False: serve nothing from memory now."""
        if self._pid != os.getpid():  # a forked child: the parent's socket is not ours
            self._pid = os.getpid()
            self._connection = None
            self._forget_all()
        if self._connection is None and not self._open():
            return False
        if not self._drain():
            return False
        if time.monotonic() - self._checked > CHECK_SECONDS:
            return self._check()
        return True

    def _open(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        connection = None
        try:
            connection = self._connect()
            connection.connect()
            connection.send_command("CLIENT", "ID")
            own_id = connection.read_response()
            prefixes: list[str] = []
            for name in ("g:", "epoch", "catalog"):
                prefixes += ["PREFIX", self._redis_prefix + name]
            connection.send_command(
                "CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST", *prefixes
            )
            connection.read_response()
            connection.send_command("SUBSCRIBE", CHANNEL)
            connection.read_response()
        except Exception as error:
            self._retry_at = now + RETRY_SECONDS
            if connection is not None:
                _disconnect(connection)
            if self._warned or unreachable(error):  # the backend's own failure says so
                return False
            self._warned = True
            logger.warning(
                "The query cache's local copy could not follow the server's invalidations "
                "(%s: %s); reads go to the cache backend.",
                type(error).__name__,
                error,
            )
            return False
        self._forget_all()  # anything read before this connection may have missed a message
        self._connection = connection
        self._warned = False
        self._checked = time.monotonic()
        return True

    def _drain(self) -> bool:
        """Apply the messages waiting on the socket, without waiting for more."""
        connection = self._connection
        try:
            while connection.can_read(timeout=0):
                if not self._apply(connection.read_response()):
                    return False
        except Exception:
            self._drop()
            return False
        return True

    def _check(self) -> bool:
        """PING and read up to its answer: every message sent before it is applied then."""
        connection = self._connection
        try:
            connection.send_command("PING")
            while True:
                message = connection.read_response()
                if _text(message[0]) == "pong":
                    break
                if not self._apply(message):
                    return False
        except Exception:
            self._drop()
            return False
        self._checked = time.monotonic()
        return True

    def _apply(self, message: Any) -> bool:
        """One message: forget the tokens it names (None: the server was flushed)."""
        if not isinstance(message, list | tuple) or len(message) < 3:
            return True
        if _text(message[0]) != "message":
            return True
        names = message[2]
        if names is None:
            self._forget_all()
            return True
        skip = len(self._redis_prefix)
        self._forget([self._prefix + _text(name)[skip:] for name in names])
        return True

    def _drop(self) -> None:
        if self._connection is not None:
            _disconnect(self._connection)
        self._connection = None
        self._forget_all()
        self._retry_at = time.monotonic() + RETRY_SECONDS


def _pickled(stored: Any) -> bytes:
    return pickle.dumps(stored, pickle.HIGHEST_PROTOCOL)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _disconnect(connection: Any) -> None:
    with contextlib.suppress(Exception):  # already gone
        connection.disconnect()


# --- which backends it serves ----------------------------------------------------------------


def layer_for(backend: BaseCache, prefix: str, entries: int) -> Local | None:
    """A local layer for ``backend``'s primary, or None where it cannot follow the server:
    not Redis through redis-py, a Sentinel or cluster pool, or a key function that does not
    keep ``prefix`` at the start of every key."""
    client = _primary_client(backend)
    if client is None:
        return None
    pool: Any = getattr(client, "connection_pool", None)
    kwargs = dict(getattr(pool, "connection_kwargs", None) or {})
    if not ("host" in kwargs or "path" in kwargs) or type(pool).__name__ != "ConnectionPool":
        return None  # Sentinel finds its primary per connection; a cluster has several
    make_key = getattr(backend, "make_key", None)
    if make_key is None:
        return None
    redis_prefix = make_key(prefix)
    if not all(make_key(prefix + tail) == redis_prefix + tail for tail in ("g:t", "epoch")):
        return None  # a key function that hashes or reorders: no prefix to follow
    # The server's address and credentials, not what the pool hands its own connections
    # (redis-py 6+: maintenance handlers, which need RESP3); the messages come as a
    # subscription's, in RESP2.
    kwargs = {key: value for key, value in kwargs.items() if not key.startswith(_POOLS_OWN)}
    kwargs["protocol"] = 2
    # The PING that proves the connection delivers must not wait for ever on a stalled one.
    kwargs["socket_timeout"] = min(kwargs.get("socket_timeout") or CHECK_SECONDS, CHECK_SECONDS)
    kind = pool.connection_class
    return Local(lambda: kind(**kwargs), prefix, redis_prefix, entries)


_POOLS_OWN = ("maint_notifications", "orig_", "himport", "event_dispatcher", "protocol", "cache")


def _primary_client(backend: BaseCache) -> Any:
    """The redis-py client of ``backend``'s primary: django-redis's default client, or
    Django's ``RedisCache``. None for anything else."""
    client: Any = getattr(backend, "client", None)
    if type(client).__name__ == "DefaultClient" and hasattr(client, "get_client"):
        return client.get_client(write=True)
    inner: Any = getattr(backend, "_cache", None)
    if type(inner).__name__ == "RedisCacheClient" and hasattr(inner, "get_client"):
        return inner.get_client(write=True)
    return None


# --- the process's layer ---------------------------------------------------------------------

_layers: dict[tuple[Any, ...], Local | None] = {}
_layers_lock = threading.Lock()


def current() -> Local | None:
    """This process's layer for the query cache's backend, while ``CACHE_LOCAL`` is on and
    the backend can have one."""
    if not conf.CACHE_LOCAL:
        return None
    key = (conf.CACHE_ALIAS, key_prefix(), conf.CACHE_LOCAL_ENTRIES)
    layer = _layers.get(key, _MISSING)
    if layer is not _MISSING:
        return layer  # type: ignore[return-value]
    with _layers_lock:
        if key not in _layers:
            backend = caches[conf.CACHE_ALIAS]
            _layers[key] = layer_for(backend, key_prefix() + ":", conf.CACHE_LOCAL_ENTRIES)
        return _layers[key]


_MISSING = object()


@receiver(setting_changed)
def _close_layers(*, setting: str, **kwargs: Any) -> None:
    """Another backend, prefix or size: the layers made for the old ones let go."""
    if setting in ("DBTUNE", "CACHES"):
        with _layers_lock:
            for layer in _layers.values():
                if layer is not None:
                    layer.close()
            _layers.clear()


def forget_locally(keys: Sequence[str]) -> None:
    """This process wrote these tokens (or tried to): its layer forgets them now. Never
    raises: a layer that cannot be made holds nothing to forget."""
    try:
        layer = current()
    except Exception:
        return
    if layer is not None:
        layer.forget(keys)
