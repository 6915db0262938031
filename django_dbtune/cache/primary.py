"""Reads from the cache's primary server, never from a read replica.

django-redis, django-valkey and Django's own ``RedisCache`` take a list of servers: the
first is written to, reads go to one of the others (django-redis's Sentinel client reads a
replica too). A replica answers with what it had received when asked, so generation tokens
read there can be older than a write that just committed, and the entry stored under them
would be served although the database moved on. Tokens and entries are therefore read
through the backend's own client for the primary (with the backend's own keys and
serializer). Any other backend (local memory, Memcached, a sharded client, a cluster client,
which reads each slot's primary) has no replica to avoid and is read through the cache API.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from django.core.cache import BaseCache

Reader = Callable[[Sequence[str]], dict[str, Any]]


_READER = "_dbtune_primary_reader"
"""Where a backend object (one per thread) keeps its reader once made."""


def get_many(backend: BaseCache, keys: Sequence[str]) -> dict[str, Any]:
    """``backend.get_many(keys)``, answered by the primary."""
    made: Reader | None = backend.__dict__.get(_READER)
    if made is None:
        made = backend.__dict__[_READER] = reader(backend)
    return made(keys)


def get(backend: BaseCache, key: str) -> Any:
    """``backend.get(key)``, answered by the primary (None when nothing is stored)."""
    return get_many(backend, [key]).get(key)


def reader(backend: BaseCache) -> Reader:
    """How to read ``backend``'s primary: django-redis's and django-valkey's clients take the
    primary's connection as an argument; Django's ``RedisCache`` is read with its own key
    function and serializer through the primary's client."""
    client = getattr(backend, "client", None)
    if client is not None and _reads_replicas(client):
        return lambda keys: backend.get_many(keys, client=client.get_client(write=True))  # type: ignore[call-arg]
    inner = getattr(backend, "_cache", None)
    if _is_django_redis_cache_client(inner):
        return lambda keys: _from_django_primary(backend, inner, keys)
    return backend.get_many


@cache
def _replicated_clients() -> tuple[tuple[type, type | None], ...]:
    """(client class, its sharded subclass) of django-redis and django-valkey, as installed."""
    found = []
    for name in ("django_redis.client", "django_valkey.client"):
        try:
            module = importlib.import_module(name)
        except ImportError:  # not installed: its backends cannot be in use
            continue
        default, shard = (
            getattr(module, "DefaultClient", None),
            getattr(module, "ShardClient", None),
        )
        if isinstance(default, type):
            found.append((default, shard if isinstance(shard, type) else None))
    return tuple(found)


def _reads_replicas(client: Any) -> bool:
    """A client with a primary and replicas: the default, Sentinel and herd clients (not the
    sharded one, whose servers hold different keys and which has no primary to name; nor
    django-valkey's cluster client, whose reads go to each slot's primary already)."""
    return any(
        isinstance(client, default) and not (shard is not None and isinstance(client, shard))
        for default, shard in _replicated_clients()
    )


def _is_django_redis_cache_client(inner: Any) -> bool:
    try:
        from django.core.cache.backends.redis import RedisCacheClient
    except ImportError:  # redis-py is not installed: Django's RedisCache cannot be in use
        return False
    return isinstance(inner, RedisCacheClient) and hasattr(inner, "_serializer")


def _from_django_primary(backend: Any, inner: Any, keys: Sequence[str]) -> dict[str, Any]:
    made = {backend.make_and_validate_key(key): key for key in keys}
    values = inner.get_client(None, write=True).mget(list(made))
    loads = inner._serializer.loads
    return {
        made[key]: loads(value)
        for key, value in zip(made, values, strict=True)
        if value is not None
    }
