"""The apps and database a model-checking command looks at, as each such command takes them."""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from django_dbtune.advisor import suggest


def add_app_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "app_labels",
        nargs="*",
        metavar="app_label",
        help="Apps to check (default: the project's own apps, those under "
        "DBTUNE['PROJECT_ROOT'] and not in an installed package).",
    )
    parser.add_argument(
        "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default 'default')."
    )


def checked_apps(app_labels: list[str], database: str) -> list[str]:
    """The labels to check (the project's own apps when none are named), or a clear error."""
    if database not in connections:
        raise CommandError(f"There is no database {database!r} in settings.DATABASES.")
    labels = app_labels or suggest.project_app_labels()
    for label in labels:
        try:
            config = apps.get_app_config(label)
        except LookupError:
            raise CommandError(f"No installed app with label {label!r}.") from None
        if app_labels and not list(config.get_models()):
            raise CommandError(f"App {label!r} has no models.")
    return labels
