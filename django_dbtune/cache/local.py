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
  until the connection is back and the tokens have been read again. The store treats a
  lost connection as an outage it noticed (:meth:`Local.lost`): every entry is retired.
- An entry is kept until the timeout it has in the backend, no longer.
- A ``PING`` on the connection every ``CHECK_SECONDS`` of use: the server answers it after
  every message it sent before, so a connection that silently stopped delivering (a network
  partition) is noticed within that time plus the socket timeout.

What it cannot promise: a message is sent when the write reaches the server and read when
this process next reads; a read in another process that starts after the writer heard back
from the server but before the message crossed the network is served the old entry. On
one host that window is the kernel's delivery of a few bytes; across hosts, the difference
between two network paths.

Which backends can have one, and the process's layer: :mod:`.local_layer`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from django_dbtune.cache.reachable import unreachable

logger = logging.getLogger("django_dbtune.cache")

CHANNEL = "__redis__:invalidate"
CHECK_SECONDS = 1.0
"""How often a connection in use proves, with a PING, that it still delivers messages; also
the longest a connect or that PING may take."""
RETRY_SECONDS = 1.0
"""How long after a failed connection the next one is tried (reads use the backend)."""
REFUSED_RETRY_SECONDS = 60.0
"""The same when the server answered but refused (an ACL, a Redis before 6)."""
IO_WAIT = 0.005
"""How long a read waits for another thread using the connection before it reads the
backend instead."""
FORGOTTEN_KEPT = 100_000
"""How many forgotten token names are remembered with the moment they were forgotten."""


class Local:
    """One process's memory of tokens and entries, and the connection that keeps it fresh.

    Two locks: ``_io`` for the connection (never waited on for long: a read that cannot have
    it soon goes to the backend), ``_lock`` for what is remembered (held only for dict work,
    so a write forgetting its tokens never waits for the network)."""

    def __init__(
        self, connect: Any, prefix: str, redis_prefix: str, make_key: Any, entries: int
    ) -> None:
        self._connect = connect
        """Makes a redis-py connection to the primary (not yet connected)."""
        self._prefix = prefix
        """What our own key names start with (``{dbtune}:``)."""
        self._redis_prefix = redis_prefix
        """What the same keys start with in Redis, after the backend's key function."""
        self._make_key = make_key
        self._max_entries = entries
        self._io = threading.Lock()
        self._lock = threading.Lock()
        self._connection: Any = None
        self._socket: Any = None
        """The socket the connection had when it subscribed: another one means redis-py
        connected again by itself, without tracking."""
        self._poll: Any = None
        """Polls that socket: nothing to read there, and nothing left in redis-py's buffer
        (``_drained``), means no message is waiting, told by one system call."""
        self._drained = False
        """redis-py's buffer for the connection is known to be empty: the last drain read
        until nothing was left, and nothing has read from the connection since."""
        self._pid = os.getpid()
        self._tokens: dict[str, Any] = {}
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._moment = 0
        """Counts every forgetting: a token read at moment m is kept only if its name was
        not forgotten after m."""
        self._forgotten: dict[str, int] = {}
        self._all_forgotten = 0
        self._followed: dict[str, bool] = {}
        """Per token name: whether its name in Redis is the prefix's plus the same tail, so
        that a message about it names it (a key function may change more than the start)."""
        self._checked = 0.0
        self._retry_at = 0.0
        self._warned = False
        self._lost: BaseException | None = None

    # --- reads ---------------------------------------------------------------------------

    def read(self, keys: Sequence[str], entry: str | None) -> tuple[dict[str, Any] | None, int]:
        """What memory holds for ``keys`` (tokens) and ``entry``, once the messages received
        so far are applied: all of them, or None (ask the backend). With None, the moment to
        give :meth:`keep` with what the backend answers (-1: keep nothing: not connected, or
        served from memory)."""
        if not self._io.acquire(timeout=IO_WAIT):
            return None, -1
        try:
            if not self._fresh():
                return None, -1
        finally:
            self._io.release()
        with self._lock:
            tokens = self._tokens
            if any(key not in tokens for key in keys):
                return None, self._moment
            found = {key: tokens[key] for key in keys}
            if entry is None:
                return found, -1
            kept = self._entries.get(entry)
            if kept is None:
                return None, self._moment
            if kept[0] <= time.time():  # past its timeout, as in the backend
                del self._entries[entry]
                return None, self._moment
            self._entries.move_to_end(entry)
        # A copy for each reader: a value the cache does not rebuild (a list of values()
        # rows, an aggregate's dict) must not be shared with whoever changes it.
        found[entry] = pickle.loads(kept[1])
        return found, -1

    def keep(self, moment: int, tokens: dict[str, Any]) -> None:
        """Keep tokens the backend answered to a read sent at ``moment``: those forgotten
        since are left out, their value may be older than the write."""
        if moment < 0 or not self._io.acquire(timeout=IO_WAIT):
            return
        try:
            if self._connection is None or not self._drain():
                return
        finally:
            self._io.release()
        with self._lock:
            if self._all_forgotten > moment:
                return
            forgotten = self._forgotten
            for key, token in tokens.items():
                if token is not None and forgotten.get(key, -1) <= moment and self._follows(key):
                    self._tokens[key] = token

    def _follows(self, key: str) -> bool:
        known = self._followed.get(key)
        if known is None:
            tail = key[len(self._prefix) :]
            known = (
                key.startswith(self._prefix) and self._make_key(key) == self._redis_prefix + tail
            )
            self._followed[key] = known
        return known

    def put_entry(self, entry: str, stored: Any, expires: float) -> None:
        """An entry this process stored in the backend, or read there and found valid, that
        the backend drops at ``expires`` (``time.time()``)."""
        kept = (expires, pickle.dumps(stored, pickle.HIGHEST_PROTOCOL))
        with self._lock:
            self._entries[entry] = kept
            self._entries.move_to_end(entry)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def lost(self) -> BaseException | None:
        """The error that dropped the connection since this was last asked, once."""
        lost, self._lost = self._lost, None
        return lost

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
        with self._io:
            self._drop()

    # --- the connection (under ``_io``) --------------------------------------------------

    def _fresh(self) -> bool:
        """Connected, every message received so far applied, and proven to deliver within
        ``CHECK_SECONDS``. False: serve nothing from memory now."""
        if self._pid != os.getpid():  # a forked child: the parent's socket is not ours
            self._pid = os.getpid()
            self._connection = None
            with self._lock:
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
            if connection is not None:
                _disconnect(connection)
            if unreachable(error):  # the backend's own calls fail and say so
                self._retry_at = now + RETRY_SECONDS
                return False
            self._retry_at = now + REFUSED_RETRY_SECONDS
            if not self._warned:
                self._warned = True
                logger.warning(
                    "The query cache's local copy cannot follow the server's invalidations "
                    "(%s: %s); reads go to the cache backend. CACHE_LOCAL needs Redis 6 or "
                    "later and a user allowed CLIENT and SUBSCRIBE.",
                    type(error).__name__,
                    error,
                )
            return False
        with self._lock:
            self._forget_all()  # read before this connection: may have missed a message
        self._connection = connection
        self._socket = getattr(connection, "_sock", None)
        self._poll = _poller(self._socket)
        self._drained = False
        self._warned = False
        self._checked = time.monotonic()
        return True

    def _drain(self) -> bool:
        """Apply the messages waiting on the socket, without waiting for more."""
        connection = self._connection
        try:
            self._same_socket()
            if self._drained and self._poll is not None and not self._poll.poll(0):
                return True  # nothing arrived (a closed socket polls as readable too)
            self._drained = False
            while connection.can_read(timeout=0):
                self._apply(connection.read_response())
            self._same_socket()
        except Exception as error:
            self._drop(error)
            return False
        self._drained = True
        return True

    def _check(self) -> bool:
        """PING and read up to its answer: every message sent before it is applied then."""
        connection = self._connection
        self._drained = False  # what came after the PONG may sit in redis-py's buffer
        try:
            self._same_socket()
            connection.send_command("PING")
            while True:
                message = connection.read_response()
                if not isinstance(message, list | tuple):  # b"PONG": not subscribed
                    raise ConnectionError("the connection left its subscription")
                if _text(message[0]) == "pong":
                    break
                self._apply(message)
            self._same_socket()
        except Exception as error:
            self._drop(error)
            return False
        self._checked = time.monotonic()
        return True

    def _same_socket(self) -> None:
        if getattr(self._connection, "_sock", None) is not self._socket:
            raise ConnectionError("the connection was made again without its subscription")

    def _apply(self, message: Any) -> None:
        """One message: forget the tokens it names (None: the server was flushed)."""
        if not isinstance(message, list | tuple) or len(message) < 3:
            return
        if _text(message[0]) != "message":
            return
        names = message[2]
        with self._lock:
            if names is None:
                self._forget_all()
                return
            skip = len(self._redis_prefix)
            self._forget([self._prefix + _text(name)[skip:] for name in names])

    def _drop(self, error: BaseException | None = None) -> None:
        if self._connection is not None:
            _disconnect(self._connection)
            if error is not None:
                self._lost = error
        self._connection = self._socket = self._poll = None
        self._drained = False
        with self._lock:
            self._forget_all()
        self._retry_at = time.monotonic() + RETRY_SECONDS


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _poller(sock: Any) -> Any:
    """A poll object watching ``sock`` for something to read (None where the platform has
    no ``poll``, or for a socket it cannot watch: each drain then asks redis-py)."""
    if sock is None or not hasattr(select, "poll"):
        return None
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
    except (OSError, ValueError, TypeError):
        return None
    return poller


def _disconnect(connection: Any) -> None:
    with contextlib.suppress(Exception):  # already gone
        connection.disconnect()
