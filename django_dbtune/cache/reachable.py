"""Whether a cache backend's error says it could not be reached, whichever client raised it."""

from __future__ import annotations

_UNREACHABLE = frozenset(
    {
        "ConnectionError",
        "TimeoutError",
        "ConnectionInterrupted",
        "ClusterDownError",
        "ClusterError",  # redirects that went round until a failover ended ("TTL exhausted")
        # A cluster client that reached no node raises its own kind (not a ConnectionError):
        # "Redis Cluster cannot be connected. Please provide at least one reachable node".
        "RedisClusterException",
        "ValkeyClusterException",
    }
)
"""Exceptions that say the server could not be reached, by class name: the builtins, and
those of redis-py, valkey-py, django-redis and django-valkey alike (none is a dependency).
A cluster client's own exception also means a misconfigured cluster: taking that as out of
reach only retires entries for nothing, while the other way round a process that saw the
cluster down would serve what an invalidation lost meanwhile should have retired."""


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the backend could not be reached (rather than refused a value)."""
    return isinstance(error, OSError) or any(
        kind.__name__ in _UNREACHABLE for kind in type(error).__mro__
    )
