"""``manage.py dbtune_cache clear|stats``: retire every entry, or show what the cache holds."""

from __future__ import annotations

import json
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from django_dbtune.cache.invalidation import database_group
from django_dbtune.cache.store import store
from django_dbtune.conf import conf


class Command(BaseCommand):
    help = (
        "The query cache. 'clear' retires every cached entry at once (a new epoch token; "
        "no key is scanned or deleted, the old entries expire by their timeout), and has "
        "every process read the views, triggers and functions of its databases again (run "
        "it after changing those by hand). 'stats' "
        "shows the cache it uses, whether it answers, and which tables have a generation "
        "token, per database group."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["clear", "stats"], help="What to do.")
        parser.add_argument(
            "--format",
            choices=["text", "json"],
            default="text",
            help="stats as text for people or JSON for machines (default: text).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if conf.CACHE_ALIAS not in _cache_aliases():
            raise CommandError(
                f'DBTUNE["CACHE_ALIAS"] is {conf.CACHE_ALIAS!r}, which is not in '
                f"settings.CACHES ({', '.join(_cache_aliases())})."
            )
        if options["action"] == "clear":
            try:
                store.retire_everything(catalog=True)
            except Exception as error:
                raise CommandError(
                    f"The cache {conf.CACHE_ALIAS!r} did not answer ({type(error).__name__}: "
                    f"{error}); nothing was retired."
                ) from None
            self.stdout.write(
                f"Every entry in cache {conf.CACHE_ALIAS!r} is retired, and every process "
                "reads the database's views, triggers and functions again."
            )
            return
        self._stats(options["format"])

    def _stats(self, output: str) -> None:
        backend = store.backend()
        tables = sorted({model._meta.db_table for model in apps.get_models()})
        groups = sorted({database_group(alias) for alias in connections})
        keys = {
            (group, table): store.generation_key(group, table)
            for group in groups
            for table in tables
        }
        try:
            found = backend.get_many([store.epoch_key(), *keys.values()])
            reachable, error = True, None
        except Exception as exc:
            found, reachable, error = {}, False, f"{type(exc).__name__}: {exc}"
        seen_by_group = {
            group: sorted(t for t in tables if keys[(group, t)] in found) for group in groups
        }
        data = {
            "enabled": conf.CACHE_ENABLED,
            "cache": conf.CACHE_ALIAS,
            "backend": f"{type(backend).__module__}.{type(backend).__qualname__}",
            "prefix": conf.CACHE_PREFIX,
            "timeout": conf.CACHE_TIMEOUT,
            "reachable": reachable,
            "error": error,
            "epoch": found.get(store.epoch_key()),
            "groups": seen_by_group,
        }
        if output == "json":
            self.stdout.write(json.dumps(data, indent=2))
        else:
            state = "answers" if reachable else f"does not answer ({error})"
            self.stdout.write(f"Cache {data['cache']!r} ({data['backend']}) {state}.")
            self.stdout.write(
                f"Enabled: {data['enabled']}; key prefix {data['prefix']!r}; default "
                f"timeout {data['timeout']} s; epoch {data['epoch'] or '(none yet)'}."
            )
            for group, seen in seen_by_group.items():
                self.stdout.write(
                    f"Database group {group!r}: {len(seen)} of {len(tables)} tables have a "
                    "generation" + (": " + ", ".join(seen) if seen else ".")
                )
        if not reachable:
            raise CommandError("The cache did not answer.", returncode=1)


def _cache_aliases() -> list[str]:
    from django.conf import settings

    return list(settings.CACHES)
