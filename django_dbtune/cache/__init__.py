"""The query cache: opt-in per query, fresh after every kind of write.

    class Book(models.Model):
        objects = CachedManager()

    Book.objects.filter(author=a).select_related("author").cached()   # or .cached(timeout=60)

    @cached(depends_on=[Book, "shop.Author"])
    def best_sellers(limit): ...

    invalidate(Book)   # by hand, for writes nothing can see (another program's)

Where things live: ``queryset.py`` (``.cached()``), ``decorator.py`` (``@cached``),
``keys.py`` (what an entry is keyed by), ``readthrough.py`` (hit, miss, lock),
``store.py`` (table generations, the epoch), ``hooks.py`` (where writes are seen, and
when the hooks are installed), ``invalidation.py`` (what a write does), ``rows.py`` (model
instances as cache entries), ``events.py`` (what the toolbar panel shows).
"""

from __future__ import annotations

from django_dbtune.cache.decorator import cached
from django_dbtune.cache.invalidation import invalidate
from django_dbtune.cache.queryset import CachedManager, CachedQuerySet, CachedQuerySetMixin

__all__ = ["CachedManager", "CachedQuerySet", "CachedQuerySetMixin", "cached", "invalidate"]
