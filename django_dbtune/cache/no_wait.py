"""Stores that do not wait for Redis's reply.

A miss stores its entry and returns: the ``SET`` is written to a connection taken from the
backend's own pool (with the backend's own key function and serializer, so the backend reads
it back as its own), and its reply is read later, by :func:`settle`, which the query cache
calls before this thread's next call to the backend. So the round trip of a store overlaps
with whatever the thread does next, and the thread's next read through the cache (on any
connection) comes after the store has been applied: a thread always reads its own stores.

Safe because an entry is only ever served while the generations it was stored under are
current: a store that lands late, after a write replaced them, stores a dead entry. A reply
that turns out to be an error is reported when it is read, as the store's failure.

Only for backends whose writes this module knows to make exactly as they do: django-redis's
default and Sentinel clients, and Django's own ``RedisCache``. Every other backend (and these,
when their pool cannot lend a connection) is written through the cache API, waiting.
"""

from __future__ import annotations

import atexit
import importlib
import os
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

from django.core.cache import BaseCache

from django_dbtune.cache.primary import django_cache_client, django_redis_clients

Sender = Callable[[Any, str, Any, int], bool]
"""Sends ``SET key value`` with a timeout in seconds to a backend without reading the reply
(False: it was not sent, write through the cache API)."""

_senders: dict[tuple[type, type], Sender | None] = {}
"""By the classes of a backend and of its client: how to send (nothing that holds a backend,
which Django makes per thread)."""


class _Owed:
    """A connection whose replies are not read yet, the pool it was taken from, and the
    process that took it."""

    __slots__ = ("connection", "pid", "pool", "replies")

    def __init__(self, connection: Any, pool: Any) -> None:
        self.connection = connection
        self.pool = pool
        self.replies = 0
        self.pid = os.getpid()

    def __del__(self) -> None:
        # Its thread ended with the replies unread: the stores were sent, the connection
        # is closed (its replies no longer mean anything) and goes back to its pool.
        if self.connection is not None and self.pid == os.getpid():
            try:
                self.connection.disconnect()
                self.pool.release(self.connection)
            except Exception:  # the interpreter is ending: nothing to give back to
                pass


_thread = threading.local()
"""``owed``: this thread's :class:`_Owed`, while it has one."""


def send_set(backend: BaseCache, key: str, value: Any, timeout: int) -> bool:
    """Store ``value`` under ``key`` for ``timeout`` seconds without waiting for the reply.
    False when it was not sent (a backend this module cannot write, a pool that could run
    short of connections, a connection that broke): the caller writes through the cache API. A
    reply is checked by :func:`settle`."""
    kind = (type(backend), type(getattr(backend, "client", None)))
    if kind in _senders:
        send = _senders[kind]
    else:
        send = _senders[kind] = _sender(backend)
    return send is not None and send(backend, key, value, timeout)


def settle() -> BaseException | None:
    """Read this thread's unread replies and give their connection back to its pool. The
    error a reply was (or reading it raised), None when every store was applied, or when
    the connection was closed meanwhile (django-redis's ``CLOSE_CONNECTION`` closes its
    pool's connections at the end of each request: those stores are lost, not failed).
    Never raises."""
    owed: _Owed | None = getattr(_thread, "owed", None)
    if owed is None:
        return None
    _thread.owed = None
    connection, owed.connection = owed.connection, None
    if owed.pid != os.getpid():  # forked with it: the replies are the parent's to read
        return None
    failure: BaseException | None = None
    try:
        if getattr(connection, "_sock", None) is not None:  # closed meanwhile: none to read
            for _ in range(owed.replies):
                connection.read_response(disable_decoding=True)  # an error reply raises
    except Exception as error:  # the rest are not read: the connection is not lent again
        failure = error
        connection.disconnect()
    finally:
        try:
            owed.pool.release(connection)
        except Exception as error:
            failure = failure or error
    return failure


def _sender(backend: BaseCache) -> Sender | None:
    """How to send a store to ``backend``'s primary with its own key and serializer."""
    client = getattr(backend, "client", None)
    if client is not None and type(client) in django_redis_clients():
        return _send_django_redis
    inner = getattr(backend, "_cache", None)
    if inner is not None and type(inner) is django_cache_client():
        return _send_django
    return None


def _send_django_redis(backend: Any, key: str, value: Any, timeout: int) -> bool:
    client = backend.client
    pool = client.get_client(write=True).connection_pool
    return _send(pool, client.make_key(key), lambda: client.encode(value), timeout)


def _send_django(backend: Any, key: str, value: Any, timeout: int) -> bool:
    inner = backend._cache
    pool = inner._get_connection_pool(write=True)
    made = backend.make_and_validate_key(key)
    return _send(pool, made, lambda: inner._serializer.dumps(value), timeout)


def _send(pool: Any, key: str, encode: Callable[[], Any], timeout: int) -> bool:
    if not _roomy(pool):
        return False  # a connection kept until the next call could starve the pool
    owed: _Owed | None = getattr(_thread, "owed", None)
    if owed is not None and (owed.pool is not pool or owed.pid != os.getpid()):
        settle()  # replies owed to another backend (the cache's alias changed): read first
        owed = None
    if owed is None:
        owed = _thread.owed = _Owed(_take(pool), pool)
    try:
        owed.connection.send_command("SET", key, encode(), "PX", int(timeout * 1000))
    except Exception:
        # A connection that broke (the stores sent on it before are lost with it: only
        # misses later): this store goes through the cache API, with its client's retries.
        _thread.owed = None
        connection, owed.connection = owed.connection, None
        connection.disconnect()
        pool.release(connection)
        return False
    owed.replies += 1
    return True


ROOMY = 100
"""The fewest connections a pool must be able to lend for stores not to wait (redis-py's
own default bound): below that, or in a pool that waits for a free connection, a thread's
next call could find none while the thread keeps one for its replies."""


def _roomy(pool: Any) -> bool:
    blocking = getattr(_redis_module(), "BlockingConnectionPool", None)
    if blocking is not None and isinstance(pool, blocking):
        return False
    return bool(getattr(pool, "max_connections", 0) >= ROOMY)


def _take(pool: Any) -> Any:
    """A connection from ``pool`` (redis-py 5 wants a command name, 6 and later warn on it)."""
    try:
        return pool.get_connection()
    except TypeError:
        return pool.get_connection("SET")


@cache
def _redis_module() -> Any:
    try:
        return importlib.import_module("redis")
    except ImportError:  # pragma: no cover - the backends this module writes need it
        return None


atexit.register(settle)
