"""Production findings in the Django cache (``STORE = "cache"``): django-redis, which every
process and host of a site can reach.

Each finding is four keys: what it is (added once, with when it was first seen), when it was
last seen, and two counters, times seen and cost (in thousandths), which ``incr`` adds to
atomically from every process. None of them expires. What a Redis restart loses depends on
its persistence (``appendonly``): with it, only the batches the processes had not written.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.utils import timezone

from django_dbtune.errors import DbtuneError

if TYPE_CHECKING:
    from django_dbtune.models import ProductionFinding
    from django_dbtune.production.store import Record

PREFIX = "dbtune:production:"


class CacheStoreError(DbtuneError):
    """The cache cannot list its keys (only django-redis can)."""


def write_cache(records: list[Record], alias: str) -> None:
    cache = caches[alias]
    now = timezone.now().isoformat()
    for record in records:
        base = f"{PREFIX}{record.key}"
        about = {
            "kind": record.kind,
            "route": record.route,
            "message": record.message,
            "fix": record.fix,
            "call_site": record.call_site,
            "queryset_site": record.queryset_site,
            "plan": record.plan,
            "relations": list(record.relations),
            "first_seen": now,
        }
        cache.add(f"{base}:about", json.dumps(about), timeout=None)
        cache.set(f"{base}:last", now, timeout=None)
        for name, amount in (("seen", record.seen), ("cost", round(record.cost * 1000))):
            cache.add(f"{base}:{name}", 0, timeout=None)
            cache.incr(f"{base}:{name}", amount)


def read_cache(alias: str) -> list[ProductionFinding]:
    """Every finding, as (unsaved) rows of the database store's model."""
    from django_dbtune.models import ProductionFinding

    cache: Any = caches[alias]
    if not hasattr(cache, "iter_keys"):
        raise CacheStoreError(
            f"Cache {alias!r} cannot list its keys, so production findings cannot be read "
            "from it: use django-redis (django_redis.cache.RedisCache) for "
            "DBTUNE['PRODUCTION']['STORE'] = 'cache', or the database store."
        )
    found = []
    for key in cache.iter_keys(f"{PREFIX}*:about"):
        base = key.removesuffix(":about")
        values = cache.get_many([key, f"{base}:last", f"{base}:seen", f"{base}:cost"])
        about = values.get(key)
        if about is None:
            continue  # (evicted meanwhile)
        fields = json.loads(about)
        first = datetime.fromisoformat(fields.pop("first_seen"))
        last = values.get(f"{base}:last")
        found.append(
            ProductionFinding(
                key=base.removeprefix(PREFIX),
                seen=int(values.get(f"{base}:seen") or 0),
                cost=int(values.get(f"{base}:cost") or 0) / 1000,
                first_seen=first,
                last_seen=datetime.fromisoformat(last) if last else first,
                **fields,
            )
        )
    return found
