"""Reads from the cache's primary server, never from a read replica.

django-redis, django-valkey and Django's own ``RedisCache`` take a list of servers: the
first is written to, reads go to one of the others (django-redis's Sentinel client reads a
replica too). A replica answers with what it had received when asked, so generation tokens
read there can be older than a write that just committed, and the entry stored under them
would be served although the database moved on. Tokens and entries are therefore read
through the backend's own client for the primary (with the backend's own keys and
serializer): with django-redis's default and Sentinel clients, its keys made and its values
decoded here, as it does, on the redis-py client of its primary (its ``get_many`` spent about
50 µs more per hit, on a loopback Redis, checking each value for an integer by raising an
exception and making each key through three calls). Any other backend (local memory,
Memcached, a sharded client, a cluster client) is read through the cache API as it is
configured: a cluster client reads each slot's primary unless told to read replicas
(django-valkey's ``read_from_replicas``: leave it off).
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from django.core.cache import BaseCache
from django.core.cache.backends.base import default_key_func

Reader = Callable[[Any, Sequence[str]], dict[str, Any]]
"""Reads keys from a backend's primary: ``reader(backend, keys)``."""

_readers: dict[tuple[type, type], Reader] = {}
"""By the classes of a backend and of its client: how to read its primary. Nothing here
holds a backend: Django makes one per thread, with its own connection pool."""


def get_many(backend: BaseCache, keys: Sequence[str]) -> dict[str, Any]:
    """``backend.get_many(keys)``, answered by the primary."""
    kind = (type(backend), type(getattr(backend, "client", None)))
    made = _readers.get(kind)
    if made is None:
        made = _readers[kind] = reader(backend)
    return made(backend, keys)


def get(backend: BaseCache, key: str) -> Any:
    """``backend.get(key)``, answered by the primary (None when nothing is stored)."""
    return get_many(backend, [key]).get(key)


def reader(backend: BaseCache) -> Reader:
    """How to read ``backend``'s primary: django-redis's and django-valkey's clients take the
    primary's connection as an argument; Django's ``RedisCache`` is read with its own key
    function and serializer through the primary's client."""
    client = getattr(backend, "client", None)
    if client is not None and type(client) in django_redis_clients():
        return _from_django_redis_primary
    if client is not None and _reads_replicas(client):
        return _from_replicated_primary
    # Any subclass: a project's own client (metrics, say) still reads replicas in get_many.
    made_by = django_cache_client()
    inner = getattr(backend, "_cache", None)
    if made_by is not None and isinstance(inner, made_by) and hasattr(inner, "_serializer"):
        return _from_django_primary
    return _through_the_api


def _from_django_redis_primary(backend: Any, keys: Sequence[str]) -> dict[str, Any]:
    """django-redis's ``get_many`` on its primary, as it makes keys and decodes values."""
    client = backend.client
    if backend.key_func is default_key_func:
        start = f"{backend.key_prefix}:{backend.version}:"
        made = {start + key: key for key in keys}
    else:
        made = {str(client.make_key(key)): key for key in keys}
    values = client.get_client(write=True).mget(list(made))
    decode = _pickled if _plain_pickles(client) else client.decode
    return {
        made[key]: decode(value)
        for key, value in zip(made, values, strict=True)
        if value is not None
    }


def _pickled(value: bytes) -> Any:
    """django-redis's ``decode`` with its default serializer and no compressor: an integer
    is stored as its digits, anything else pickled (with protocol 2 or later, which starts
    with the byte 0x80)."""
    if value[:1] == b"\x80":
        return pickle.loads(value)
    return int(value)


_PICKLES, _AS_IS = "django_redis.serializers.pickle", "django_redis.compressors.identity"


def _plain_pickles(client: Any) -> bool:
    """django-redis's own pickle serializer, at protocol 2 or later (``PICKLE_VERSION``: 0
    and 1 write no leading 0x80), and no compressor."""
    serializer, compressor = type(client._serializer), type(client._compressor)
    protocol = getattr(client._serializer, "_pickle_version", None)
    return (
        (serializer.__module__, serializer.__name__) == (_PICKLES, "PickleSerializer")
        and (compressor.__module__, compressor.__name__) == (_AS_IS, "IdentityCompressor")
        and isinstance(protocol, int)
        and (protocol < 0 or protocol >= 2)
    )


def _from_replicated_primary(backend: Any, keys: Sequence[str]) -> dict[str, Any]:
    return backend.get_many(keys, client=backend.client.get_client(write=True))  # type: ignore[no-any-return]


def _through_the_api(backend: Any, keys: Sequence[str]) -> dict[str, Any]:
    return backend.get_many(keys)  # type: ignore[no-any-return]


_CLIENTS = (
    # (module, class of the clients with a primary and replicas, its subclasses that have none)
    ("django_redis.client", "DefaultClient", ("ShardClient",)),
    ("django_valkey.base_client", "BaseClient", ("ShardClient", "DefaultClusterClient")),
)


@cache
def _replicated_clients() -> tuple[tuple[type, tuple[str, ...]], ...]:
    """(client class, the names of its subclasses without replicas) of django-redis and
    django-valkey, as installed."""
    found = []
    for name, base, without in _CLIENTS:
        try:
            module = importlib.import_module(name)
        except ImportError:  # not installed: its backends cannot be in use
            continue
        kind = getattr(module, base, None)
        if isinstance(kind, type):
            found.append((kind, without))
    return tuple(found)


def _reads_replicas(client: Any) -> bool:
    """A client with a primary and replicas: the default, Sentinel, herd and hash clients
    (not a sharded one, whose servers hold different keys and which has no primary to name;
    nor django-valkey's cluster client, read as configured)."""
    names = {kind.__name__ for kind in type(client).__mro__}
    return any(
        isinstance(client, kind) and names.isdisjoint(without)
        for kind, without in _replicated_clients()
    )


@cache
def django_redis_clients() -> tuple[type, ...]:
    """django-redis's clients that read and write one primary with plain ``GET``/``SET``
    of ``encode(value)`` under ``make_key(key)``, by exact class (its herd client packs
    values; its sharded client picks a server per key; a subclass may change either)."""
    try:
        module = importlib.import_module("django_redis.client")
    except ImportError:  # not installed: none of its backends is in use
        return ()
    return (module.DefaultClient, module.SentinelClient)


@cache
def django_cache_client() -> type | None:
    """The client class of Django's own ``RedisCache`` (None: a Django without it)."""
    try:
        from django.core.cache.backends.redis import RedisCacheClient
    except ImportError:
        return None
    return RedisCacheClient


def _from_django_primary(backend: Any, keys: Sequence[str]) -> dict[str, Any]:
    inner = backend._cache
    made = {backend.make_and_validate_key(key): key for key in keys}
    values = inner.get_client(None, write=True).mget(list(made))
    loads = inner._serializer.loads
    return {
        made[key]: loads(value)
        for key, value in zip(made, values, strict=True)
        if value is not None
    }
