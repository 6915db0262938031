"""``manage.py dbtune_cache clear|stats``: retire every entry, or show what the cache holds."""

from __future__ import annotations

import json
from typing import Any

from django.apps import apps
from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from django_dbtune.cache import primary
from django_dbtune.cache.invalidation import database_group
from django_dbtune.cache.store import store
from django_dbtune.cache.tables import key_prefix
from django_dbtune.cache.tally import FLUSH_SECONDS, tally, totals
from django_dbtune.cache.tally import reset as reset_counts
from django_dbtune.conf import conf


class Command(BaseCommand):
    help = (
        "The query cache. 'clear' retires every cached entry at once (a new epoch token; "
        "no key is scanned or deleted, the old entries expire by their timeout), and has "
        "every process read the views, triggers and functions of its databases again (run "
        "it after changing those by hand). 'stats' "
        "shows the cache it uses, whether it answers, which tables have a generation "
        "token, per database group, and what every process counted: per model and "
        "@cached function its hits, misses, reads sent to the database, stores and entry "
        "size; per table its invalidations."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["clear", "stats"], help="What to do.")
        parser.add_argument(
            "--reset",
            action="store_true",
            help="with stats: zero the counts of every process after showing them.",
        )
        parser.add_argument(
            "--format",
            choices=["text", "json"],
            default="text",
            help="text for people or JSON for machines (default: text).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if conf.CACHE_ALIAS not in _cache_aliases():
            raise CommandError(
                f'DBTUNE["CACHE_ALIAS"] is {conf.CACHE_ALIAS!r}, which is not in '
                f"settings.CACHES ({', '.join(_cache_aliases())})."
            )
        if options["reset"] and options["action"] != "stats":
            raise CommandError("--reset goes with stats: it zeroes the counts stats shows.")
        if options["action"] == "clear":
            try:
                store.retire_everything(catalog=True)
            except Exception as error:
                raise CommandError(
                    f"The cache {conf.CACHE_ALIAS!r} did not answer ({type(error).__name__}: "
                    f"{error}); nothing was retired."
                ) from None
            one_process = _one_process(caches[conf.CACHE_ALIAS])
            if options["format"] == "json":
                retired = {"cache": conf.CACHE_ALIAS, "retired": True}
                self.stdout.write(json.dumps({**retired, "this_process_only": one_process}))
            elif one_process:
                self.stdout.write(
                    f"Cache {conf.CACHE_ALIAS!r} keeps its entries in this process's memory: "
                    "only this command's own entries are retired. Every other process (the "
                    "server) keeps its own, and this command cannot reach them; restart it, "
                    "or use a shared cache (Redis) when the site runs several processes."
                )
            else:
                self.stdout.write(
                    f"Every entry in cache {conf.CACHE_ALIAS!r} is retired, and every process "
                    "reads the database's views, triggers and functions again."
                )
            return
        self._stats(options["format"], options["reset"])

    def _stats(self, output: str, reset: bool) -> None:
        backend = store.backend()
        # With the tables of many-to-many relations, which Django makes the models of.
        models = apps.get_models(include_auto_created=True)
        tables = sorted({model._meta.db_table for model in models})
        groups = sorted({database_group(alias) for alias in connections})
        keys = {
            (group, table): store.generation_key(group, table)
            for group in groups
            for table in tables
        }
        tally.flush()  # this process's own (a shell that read through the cache)
        counted: dict[str, dict[str, int]] = {}
        try:
            found = primary.get_many(backend, [store.epoch_key(), *keys.values()])
            counted = totals()
            reachable, error = True, None
        except Exception as exc:
            found, reachable, error = {}, False, f"{type(exc).__name__}: {exc}"
        seen_by_group = {
            group: sorted(t for t in tables if keys[(group, t)] in found) for group in groups
        }
        data: dict[str, Any] = {
            "enabled": conf.CACHE_ENABLED,
            "cache": conf.CACHE_ALIAS,
            "backend": f"{type(backend).__module__}.{type(backend).__qualname__}",
            "prefix": f"{key_prefix()}:",
            "timeout": conf.CACHE_TIMEOUT,
            "reachable": reachable,
            "error": error,
            "epoch": found.get(store.epoch_key()),
            "groups": seen_by_group,
            "reads": {
                subject: _figures(counts)
                for subject, counts in sorted(counted.items())
                if not subject.startswith("table ")
            },
            "invalidations": {
                subject.removeprefix("table "): counts.get("invalidations", 0)
                for subject, counts in sorted(counted.items())
                if subject.startswith("table ")
            },
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
            self._reads_as_text(data["reads"], data["invalidations"])
        if not reachable:
            raise CommandError("The cache did not answer.", returncode=1)
        if reset:
            reset_counts()
            if output == "text":
                self.stdout.write("The counts are reset.")

    def _reads_as_text(self, reads: dict[str, Any], invalidations: dict[str, int]) -> None:
        if not reads and not invalidations:
            self.stdout.write(
                f"No reads or invalidations counted yet (processes add theirs at most every "
                f"{FLUSH_SECONDS:.0f} s, and when they exit)."
            )
            return
        if reads:
            self.stdout.write("")
            width = max(len(name) for name in reads)
            self.stdout.write(
                f"{'reads of':<{width}}  {'hits':>8}  {'misses':>8}  {'database':>8}  "
                f"{'stores':>8}  {'hit rate':>8}  {'entry size':>10}"
            )
            for name, row in reads.items():
                rate = f"{row['hit_rate']:.0%}" if row["hit_rate"] is not None else "-"
                size = row["entry_bytes"]
                shown = f"~{size:,} B" if size is not None else "-"
                self.stdout.write(
                    f"{name:<{width}}  {row['hits']:>8}  {row['misses']:>8}  "
                    f"{row['database']:>8}  {row['stores']:>8}  {rate:>8}  {shown:>10}"
                )
        if invalidations:
            self.stdout.write("")
            self.stdout.write("Invalidations by table:")
            for table, count in invalidations.items():
                self.stdout.write(f"  {table}: {count}")


def _figures(counts: dict[str, int]) -> dict[str, Any]:
    """One model's or function's counts, with its hit rate and the mean size of the entries
    sampled (None when there is nothing to say)."""
    hits, misses, database = counts["hits"], counts["misses"], counts["database"]
    reads = hits + misses + database
    sampled = counts["sampled_stores"]
    return {
        "hits": hits,
        "misses": misses,
        "database": database,
        "stores": counts["stores"],
        "hit_rate": hits / reads if reads else None,
        "entry_bytes": counts["sampled_bytes"] // sampled if sampled else None,
    }


def _one_process(backend: Any) -> bool:
    """Whether the backend lives in this process's memory (Django's local-memory and dummy
    caches): a command cannot reach what a server process keeps."""
    return isinstance(backend, LocMemCache | DummyCache)


def _cache_aliases() -> list[str]:
    from django.conf import settings

    return list(settings.CACHES)
