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
