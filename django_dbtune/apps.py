from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class DbtuneConfig(AppConfig):
    name = "django_dbtune"
    verbose_name = "django-dbtune"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_dbtune.cache import hooks
        from django_dbtune.checks import (
            check_cache,
            check_concurrent_index_migrations,
            check_connections,
            check_deploy,
            check_production,
            check_services,
            check_settings,
        )

        checks.register(check_settings)
        checks.register(check_cache)
        checks.register(check_services)
        checks.register(check_production)
        checks.register(check_concurrent_index_migrations)
        checks.register(check_deploy, checks.Tags.security, deploy=True)
        checks.register(check_connections, checks.Tags.database)
        # Writes are watched only while the cache is on (in every process that writes, so
        # an entry stored by another process dies when this one writes), and the hooks
        # follow DBTUNE when it changes (override_settings).
        hooks.follow_settings()
