"""Whether a cache backend's error says it could not be reached, whichever client raised it."""

from __future__ import annotations

_UNREACHABLE = frozenset(
    {"ConnectionError", "TimeoutError", "ConnectionInterrupted", "ClusterDownError"}
)
"""Exceptions that say the server could not be reached, by class name: the builtins, and
those of redis-py, valkey-py, django-redis and django-valkey alike (none is a dependency)."""


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the backend could not be reached (rather than refused a value)."""
    return isinstance(error, OSError) or any(
        kind.__name__ in _UNREACHABLE for kind in type(error).__mro__
    )
