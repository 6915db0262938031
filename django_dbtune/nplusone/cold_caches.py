"""Local-memory caches standing in empty while a proof re-runs a page: the re-run repeats
what a process's first request did, not what the first run left in the cache."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cold_local_caches() -> Iterator[None]:
    """Each local-memory cache empty for the code run inside, as on a process's first
    request: a re-run then repeats what the first run did, not what it left in the cache
    (Wagtail's renditions and template fragments). The caches are stood in for in this
    thread, never cleared: nothing cached is lost. The cache that holds sessions is kept,
    so a logged-in page stays logged in."""
    from django.conf import settings
    from django.core.cache import caches
    from django.core.cache.backends import locmem

    sessions = None
    if settings.SESSION_ENGINE.startswith("django.contrib.sessions.backends.cache"):
        sessions = settings.SESSION_CACHE_ALIAS
    kept = {}
    for alias, params in settings.CACHES.items():
        cache = caches[alias]
        if isinstance(cache, locmem.LocMemCache) and alias != sessions:
            kept[alias] = cache
            caches[alias] = locmem.LocMemCache(f"{STAND_IN}{alias}", params)
    try:
        yield
    finally:
        for alias, cache in kept.items():
            caches[alias] = cache
            for registry in ("_caches", "_expire_info", "_locks"):  # LocMemCache's, by name
                getattr(locmem, registry).pop(f"{STAND_IN}{alias}", None)


STAND_IN = "dbtune-proof-"
