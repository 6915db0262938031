"""System checks for django-dbtune's settings. Ids are stable and documented in docs/checks.rst."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.cache import caches
from django.core.checks import CheckMessage, Error, Warning
from django.utils.module_loading import import_string

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
    from django_dbtune.advisor.connection_settings import connection_findings

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


_IGNORING = {"django_redis": "DJANGO_REDIS", "django_valkey": "DJANGO_VALKEY"}
"""Backends that can swallow their errors, by package: the prefix of their global switch."""


def _ignores_exceptions(cache: Any) -> str | None:
    """The package (django-redis, django-valkey) that swallows this cache's errors (its
    option, or its global setting); None when none does."""
    if not isinstance(cache, dict):
        return None
    package = str(cache.get("BACKEND", "")).partition(".")[0]
    switch = _IGNORING.get(package)
    if switch is None:
        return None
    options = cache.get("OPTIONS")
    if isinstance(options, dict) and "IGNORE_EXCEPTIONS" in options:
        ignores = bool(options["IGNORE_EXCEPTIONS"])
    else:
        ignores = bool(getattr(settings, f"{switch}_IGNORE_EXCEPTIONS", False))
    return package.replace("_", "-") if ignores else None


def check_services(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """What the settings point at: a cache that is not there or never keeps anything, a
    workload file that cannot be written. (Silent while the setting itself is wrong.)"""
    from django_dbtune.conf import conf

    value = getattr(settings, "DBTUNE", {})
    if problems(value) or not conf.ENABLED:
        return []
    messages: list[CheckMessage] = []
    alias = conf.CACHE_ALIAS
    if conf.cache_active or "CACHE_ALIAS" in value:
        backend = settings.CACHES.get(alias, {}).get("BACKEND", "")
        if alias not in settings.CACHES:
            messages.append(
                Error(
                    f"DBTUNE['CACHE_ALIAS'] is {alias!r}, which is not in settings.CACHES; "
                    ".cached() reads go to the database.",
                    hint=f"Name one of {', '.join(map(repr, settings.CACHES))}, or add "
                    f"{alias!r} to CACHES.",
                    id="dbtune.E005",
                )
            )
        elif conf.cache_active and backend.endswith(".DummyCache"):
            messages.append(
                Warning(
                    f"The query cache keeps its entries in {alias!r}, a DummyCache: it keeps "
                    "nothing, so no .cached() read is ever served from it.",
                    hint="Point DBTUNE['CACHE_ALIAS'] at a real cache (django-redis in "
                    "production, LocMemCache for one process).",
                    id="dbtune.W006",
                )
            )
        elif conf.cache_active and (package := _ignores_exceptions(settings.CACHES[alias])):
            messages.append(
                Warning(
                    f"The query cache keeps its entries in {alias!r}, which {package} "
                    "tells to ignore exceptions (IGNORE_EXCEPTIONS): an invalidation that "
                    "fails is dropped without a word, and the entries it should have "
                    "retired are served until CACHE_TIMEOUT.",
                    hint="Give the query cache a CACHES alias of its own without "
                    "IGNORE_EXCEPTIONS (the same server is fine) and name it in "
                    "DBTUNE['CACHE_ALIAS']; the query cache handles failures itself.",
                    id="dbtune.W011",
                )
            )
    if conf.cache_active:
        messages.extend(_ungrouped_copies(conf.CACHE_DATABASE_GROUPS))
        if conf.CACHE_LOCAL and alias in settings.CACHES:
            messages.extend(_no_local_layer(alias))
    path = conf.WORKLOAD_FILE
    if path is not None and not _writable(Path(path)):
        messages.append(
            Warning(
                f"DBTUNE['WORKLOAD_FILE'] is {str(path)!r}, which this process cannot write.",
                hint="Requests go on but record nothing; name a file in a folder the site "
                "can write, or set it to None.",
                id="dbtune.W007",
            )
        )
    return messages


def check_production(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Production mode set up so that it records nothing, or stores what nothing can read.
    (Silent while the setting itself is wrong.)"""
    from django_dbtune.conf import conf

    value = getattr(settings, "DBTUNE", {})
    if problems(value) or conf.PRODUCTION is None:
        return []
    messages: list[CheckMessage] = []
    middleware = "django_dbtune.middleware.ProductionMiddleware"
    if not conf.ENABLED and any(_is(name, middleware) for name in settings.MIDDLEWARE):
        messages.append(
            Warning(
                "ProductionMiddleware is in MIDDLEWARE and DBTUNE['PRODUCTION'] is set, but "
                "DBTUNE['ENABLED'] is off: production mode samples nothing.",
                hint="ENABLED is the switch for all that django-dbtune does while the site "
                "runs: set it to True in the production settings (and leave "
                "NPlusOneMiddleware out of MIDDLEWARE there).",
                id="dbtune.W014",
            )
        )
    store = conf.PRODUCTION
    if store.STORE == "cache" and store.CACHE not in settings.CACHES:
        messages.append(
            Error(
                f"DBTUNE['PRODUCTION']['CACHE'] is {store.CACHE!r}, which is not in "
                "settings.CACHES: every batch of findings is lost.",
                hint=f"Name one of {', '.join(map(repr, settings.CACHES))}, or add "
                f"{store.CACHE!r} to CACHES.",
                id="dbtune.E006",
            )
        )
    elif store.STORE == "cache" and not hasattr(caches[store.CACHE], "iter_keys"):
        messages.append(
            Warning(
                f"Production mode stores its findings in the cache {store.CACHE!r}, which "
                "cannot list its keys: manage.py dbtune_findings and the admin cannot read "
                "them.",
                hint="Use django-redis (django_redis.cache.RedisCache) for that cache, or "
                "DBTUNE['PRODUCTION']['STORE'] = 'database'.",
                id="dbtune.W015",
            )
        )
    return messages


def check_deploy(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``check --deploy``: the N+1 detector is for development; with ``DEBUG`` off it runs
    on every request, and with ``NPLUSONE_RAISE`` a page with an N+1 answers 500."""
    from django_dbtune.conf import conf

    if settings.DEBUG or problems(getattr(settings, "DBTUNE", {})) or not conf.ENABLED:
        return []
    middleware = "django_dbtune.middleware.NPlusOneMiddleware"
    found = {
        "dbtune.W008": conf.NPLUSONE_RAISE,
        "dbtune.W009": any(_is(name, middleware) for name in settings.MIDDLEWARE),
    }
    return [Warning(*_DEPLOY[id_], id=id_) for id_, on in found.items() if on]


_DEPLOY = {
    "dbtune.W008": (
        "NPLUSONE_RAISE is on with DEBUG off: every page with an N+1 query fails with "
        "NPlusOneError (HTTP 500).",
        "Turn DBTUNE['NPLUSONE_RAISE'] on in development and test settings only.",
    ),
    "dbtune.W009": (
        "NPlusOneMiddleware is in MIDDLEWARE with DEBUG off: the N+1 detector runs on every "
        "request of the site.",
        "It is meant for development and staging: leave it out of production settings, or "
        "set DBTUNE['ENABLED'] = False there.",
    ),
}


def check_concurrent_index_migrations(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``AddIndexConcurrently`` (``suggest_indexes --write --concurrently``) runs only on
    PostgreSQL: a migration with it fails ``migrate`` on another database, a SQLite test
    database included."""
    from django.db import router
    from django.db.migrations.loader import MigrationLoader

    # By engine name: a database whose driver is not installed here fails no check.
    engines = {alias: str(db.get("ENGINE", "")) for alias, db in settings.DATABASES.items()}
    others = [alias for alias, engine in engines.items() if not _postgresql(engine)]
    if not others:
        return []
    try:
        loader = MigrationLoader(None, ignore_no_migrations=True)
    except Exception:  # migrations Django cannot load: migrate itself says why
        return []
    messages: list[CheckMessage] = []
    for (app_label, name), migration in sorted(loader.disk_migrations.items()):
        concurrent = [
            type(operation).__name__
            for operation in migration.operations
            if type(operation).__name__ in ("AddIndexConcurrently", "RemoveIndexConcurrently")
        ]
        aliases = [alias for alias in others if router.allow_migrate(alias, app_label)]
        if concurrent and aliases:
            vendors = sorted({_vendor(engines[alias]) for alias in aliases})
            messages.append(
                Warning(
                    f"Migration {app_label}.{name} uses {concurrent[0]}, which only "
                    f"PostgreSQL runs; database {aliases[0]!r} is {'/'.join(vendors)}, so "
                    "migrate (and a test run) fails there.",
                    hint="Test on PostgreSQL, or write the index with AddIndex "
                    "(suggest_indexes --write without --concurrently).",
                    id="dbtune.W010",
                )
            )
    return messages


def _ungrouped_copies(groups: dict[str, str]) -> list[CheckMessage]:
    """Aliases that name one database on two servers (a read replica, most likely) and
    that the query cache keeps apart: a write through one leaves what was cached through
    the other in place. Silent for an alias ``CACHE_DATABASE_GROUPS`` names: the user
    said which group it is in."""
    from django_dbtune.cache.invalidation import database_group, database_identity

    messages: list[CheckMessage] = []
    first: dict[tuple[str, str], str] = {}
    for alias, database in settings.DATABASES.items():
        name = str(database.get("NAME") or "")
        if not name or _vendor(database.get("ENGINE", "")) == "sqlite":
            continue  # SQLite: a file is one database wherever it is opened from
        same = first.setdefault((database.get("ENGINE", ""), name), alias)
        if same == alias or alias in groups or database_group(alias) == database_group(same):
            continue
        if database_identity(database) == database_identity(settings.DATABASES[same]):
            continue  # one server (an empty PORT is the default one): the same group
        group = database_group(same)
        messages.append(
            Warning(
                f"DATABASES[{alias!r}] names database {name!r} as {same!r} does, on "
                f"another server ({_server(database)} against "
                f"{_server(settings.DATABASES[same])}); the query cache keeps them apart, so "
                f"if {alias!r} is a replica of {same!r}, what is cached through {alias!r} "
                f"is not retired by writes through {same!r}.",
                hint=f"Set DBTUNE['CACHE_DATABASE_GROUPS'] = {{{alias!r}: {group!r}}} if it "
                f"is a replica, or {{{alias!r}: {alias!r}}} if it is another database.",
                id="dbtune.W012",
            )
        )
    return messages


def _server(database: dict[str, Any]) -> str:
    host = database.get("HOST") or "localhost"
    return f"{host}:{database['PORT']}" if database.get("PORT") else str(host)


def _writable(path: Path) -> bool:
    """Whether a file could be appended to at ``path`` (made, with its folders, if need be).
    A path the system refuses to look at (no permission, a name too long) is not."""
    try:
        if path.exists():
            return path.is_file() and os.access(path, os.W_OK)
        folder = path.parent
        while not folder.exists():
            folder = folder.parent
        return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
    except (OSError, ValueError):
        return False


def _postgresql(engine: str) -> bool:
    return engine.endswith((".postgresql", ".postgis")) or "postgres" in engine


def _vendor(engine: str) -> str:
    """``django.db.backends.sqlite3`` -> ``sqlite``, as a connection's ``vendor`` says."""
    return engine.rsplit(".", 1)[-1].removesuffix("3")


def _is(name: str, dotted: str) -> bool:
    """Whether a MIDDLEWARE entry is ``dotted`` or a subclass of it."""
    if name == dotted:
        return True
    try:
        return issubclass(import_string(name), import_string(dotted))
    except Exception:  # a module that fails to import is Django's to report, not this check's
        return False


def _no_local_layer(alias: str) -> list[CheckMessage]:
    """CACHE_LOCAL asked for a backend whose invalidations it cannot follow."""
    from django_dbtune.cache import local_layer

    try:
        layer = local_layer.current()
    except Exception:  # a backend that cannot be made: its own error says so
        return []
    if layer is not None:
        return []
    return [
        Warning(
            f"DBTUNE['CACHE_LOCAL'] is on, but {alias!r} is not one Redis server reached "
            "through django-redis's default client or Django's RedisCache, with a key "
            "function that keeps the query cache's prefix at the start of every key: nothing "
            "is kept in process memory and every read goes to the backend.",
            hint="Turn CACHE_LOCAL off, or point CACHE_ALIAS at such a cache (the local "
            "copy follows the server's invalidation messages, which only that set-up sends "
            "where it can follow them).",
            id="dbtune.W013",
        )
    ]
