"""System checks for django-dbtune's settings. Ids are stable and documented in docs/checks.rst."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from django_dbtune.conf import problems


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    value = getattr(settings, "DBTUNE", {})
    messages: list[CheckMessage] = [
        Error(problem.message, hint=problem.hint, id=problem.id) for problem in problems(value)
    ]
    if not messages:
        root = value.get("PROJECT_ROOT")
        if root is not None and not Path(root).is_dir():
            messages.append(
                Warning(
                    f"DBTUNE['PROJECT_ROOT'] is {str(root)!r}, which is not a folder.",
                    hint="Call sites will be shown as absolute paths.",
                    id="dbtune.W001",
                )
            )
    messages.extend(_legacy_nplusone_settings())
    return messages


def check_cache(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Models offer .cached() while the cache is off: every .cached() read goes to the
    database, which is easy to miss. (Silent while the setting itself is wrong.)"""
    from django.apps import apps

    from django_dbtune.cache import CachedQuerySetMixin
    from django_dbtune.conf import conf

    if problems(getattr(settings, "DBTUNE", {})) or conf.CACHE_ENABLED:
        return []
    models = sorted(
        model._meta.label
        for model in apps.get_models()
        if any(
            # The class the manager builds, not a queryset: a manager's get_queryset() may
            # read the database (Wagtail's does), which may not exist yet under migrate.
            issubclass(getattr(manager, "_queryset_class", object), CachedQuerySetMixin)
            for manager in model._meta.managers
        )
    )
    if not models:
        return []
    named = models[:3] if len(models) <= 3 else [*models[:3], "others"]
    listed = f"{', '.join(named[:-1])} and {named[-1]}" if len(named) > 1 else named[0]
    return [
        Warning(
            f"{listed} {'offers' if len(models) == 1 else 'offer'} .cached(), but the query "
            "cache is off: those reads go to the database.",
            hint='Set DBTUNE["CACHE_ENABLED"] = True (writes then retire cache entries).',
            id="dbtune.W003",
        )
    ]


def check_connections(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """Connection settings that cost time on every request (``check --database ALIAS``)."""
    from django_dbtune.advisor.health import connection_findings

    ids = {"connection_per_request": "dbtune.W004", "connection_health_checks": "dbtune.W005"}
    return [
        Warning(finding.message, hint=finding.advice, id=ids[finding.kind])
        for alias in databases or ()
        for finding in connection_findings(alias)
    ]


_LEGACY = {
    "NPLUSONE_RAISE": 'DBTUNE["NPLUSONE_RAISE"]',
    "NPLUSONE_WHITELIST": 'DBTUNE["NPLUSONE_ALLOW"] (rules like {"relation": "app.Model.field"})',
}


def _legacy_nplusone_settings() -> list[CheckMessage]:
    """nplusone's settings still work, so projects can swap the app first and tidy later."""
    return [
        Warning(
            f"settings.{name} is nplusone's setting; django-dbtune honours it for now.",
            hint=f"Move it to {new}; the old name will stop working in a later release.",
            id="dbtune.W002",
        )
        for name, new in _LEGACY.items()
        if hasattr(settings, name)
    ]
