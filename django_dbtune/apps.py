from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class DbtuneConfig(AppConfig):
    name = "django_dbtune"
    verbose_name = "django-dbtune"

    def ready(self) -> None:
        from django_dbtune.cache import invalidation
        from django_dbtune.checks import check_cache, check_connections, check_settings

        checks.register(check_settings)
        checks.register(check_cache)
        checks.register(check_connections, checks.Tags.database)
        # Writes are watched whether or not anything is cached yet: an entry stored by
        # another process must die when this one writes.
        invalidation.connect()
