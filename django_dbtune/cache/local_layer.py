"""Which cache backends can have a :class:`~django_dbtune.cache.local.Local` layer, and this
process's layer for the query cache's backend (``DBTUNE["CACHE_LOCAL"]``)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from django.core.cache import BaseCache, caches
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_dbtune.cache.local import CHECK_SECONDS, Local
from django_dbtune.cache.tables import key_prefix
from django_dbtune.conf import conf

_POOLS = ("ConnectionPool", "BlockingConnectionPool")
"""redis-py's pools of connections to one server (Sentinel's finds its primary per
connection; a cluster has several)."""

_POOLS_OWN = (
    "maint_notifications",
    "orig_",
    "himport",
    "event_dispatcher",
    "protocol",
    "cache",
    "retry",
    "health_check_interval",
)
"""What a pool hands its own connections, beside the server's address and credentials:
maintenance handlers (redis-py 6+, RESP3 only), client-side caching, and a retry policy or
health check, which would make the connection again (or PING it) outside its subscription."""


def layer_for(backend: BaseCache, prefix: str, entries: int) -> Local | None:
    """A local layer for ``backend``'s primary, or None where it cannot follow the server:
    not Redis through redis-py's pool of one server, or a key function that does not keep
    ``prefix`` at the start of every key."""
    client = _primary_client(backend)
    if client is None:
        return None
    pool: Any = getattr(client, "connection_pool", None)
    kwargs = dict(getattr(pool, "connection_kwargs", None) or {})
    if not ("host" in kwargs or "path" in kwargs) or type(pool).__name__ not in _POOLS:
        return None
    make_key = getattr(backend, "make_key", None)
    if make_key is None:
        return None
    redis_prefix = make_key(prefix)
    tails = ("g:t", "epoch", "catalog", "g:Main\x1fA-b.C_d")
    if not all(make_key(prefix + tail) == redis_prefix + tail for tail in tails):
        return None  # a key function that hashes, reorders or changes case
    kwargs = {key: value for key, value in kwargs.items() if not key.startswith(_POOLS_OWN)}
    kwargs["protocol"] = 2  # the messages come as a subscription's
    # The PING that proves the connection delivers, and a connect, must not wait long.
    for name in ("socket_timeout", "socket_connect_timeout"):
        kwargs[name] = min(kwargs.get(name) or CHECK_SECONDS, CHECK_SECONDS)
    kind = pool.connection_class
    return Local(lambda: kind(**kwargs), prefix, redis_prefix, make_key, entries)


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
_MISSING = object()


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
