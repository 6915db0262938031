"""django-dbtune's settings: one ``DBTUNE = {...}`` dict, read lazily and resolved once.

Each option is validated and converted the first time it is read and kept until a
``setting_changed`` signal for a setting it depends on (``DBTUNE``, ``DATABASES``,
``BASE_DIR``, nplusone's ``NPLUSONE_*``), so ``override_settings`` just works and a hot path
(a cache hit, a query record) reads an attribute, not a validator. The same table of options
drives the system checks (``checks.py``) and the docs.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from django_dbtune.cache_options import CACHE_OPTIONS
from django_dbtune.core_options import CORE_OPTIONS
from django_dbtune.options import Option
from django_dbtune.production_options import PRODUCTION_OPTIONS, Production, production

OPTIONS: dict[str, Option] = {**CORE_OPTIONS, **CACHE_OPTIONS, **PRODUCTION_OPTIONS}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the DBTUNE setting, as the system checks report it."""

    id: str
    key: str | None
    message: str
    hint: str | None = None


def type_error(key: str, value: Any) -> str:
    explain = OPTIONS[key].explain
    detail = explain(value) if explain is not None else None
    if detail is not None:
        return f"DBTUNE[{key!r}]{detail}"
    return f"DBTUNE[{key!r}] must be {OPTIONS[key].type_name}, not {value!r}."


def problems(value: object) -> list[Problem]:
    """Everything wrong with a DBTUNE value (the setting as the user wrote it)."""
    if not isinstance(value, Mapping):
        return [
            Problem(
                "dbtune.E001",
                None,
                f"DBTUNE must be a dict, not {type(value).__name__}.",
                'Write DBTUNE = {"ENABLED": True, ...} in your settings.',
            )
        ]
    found: list[Problem] = []
    for key, item in value.items():
        option = OPTIONS.get(key)
        if option is None:
            close = difflib.get_close_matches(str(key).upper(), OPTIONS, n=1)
            found.append(
                Problem(
                    "dbtune.E002",
                    str(key),
                    f"DBTUNE has an unknown key {key!r}.",
                    f"Did you mean {close[0]!r}?"
                    if close
                    else "Known keys: " + ", ".join(sorted(OPTIONS)) + ".",
                )
            )
        elif not option.accepts(item):
            found.append(
                Problem(
                    "dbtune.E003",
                    key,
                    type_error(key, item),
                )
            )
    if not any(p.key == "DATABASES" for p in found):
        aliases = value.get("DATABASES")
        if aliases is not None:
            for alias in aliases:
                if alias not in django_settings.DATABASES:
                    found.append(
                        Problem(
                            "dbtune.E004",
                            "DATABASES",
                            f"DBTUNE['DATABASES'] names {alias!r}, which is not in "
                            "settings.DATABASES.",
                            "Known aliases: " + ", ".join(django_settings.DATABASES) + ".",
                        )
                    )
    if not any(p.key == "CACHE_DATABASE_GROUPS" for p in found):
        for alias in value.get("CACHE_DATABASE_GROUPS") or {}:
            if alias not in django_settings.DATABASES:
                found.append(
                    Problem(
                        "dbtune.E004",
                        "CACHE_DATABASE_GROUPS",
                        f"DBTUNE['CACHE_DATABASE_GROUPS'] names {alias!r}, which is not in "
                        "settings.DATABASES.",
                        "Known aliases: " + ", ".join(django_settings.DATABASES) + ".",
                    )
                )
    return found


_CACHE_OFF = (
    "django_dbtune.cache",
    "The query cache is off: %s Every .cached() read goes to the database until DBTUNE is "
    "fixed (manage.py check names the mistake); this process's writes still retire the "
    "entries other processes hold.",
)


def _meant_on(value: object) -> bool:
    """Whether a switch given with the wrong type still says "on": ``"yes"``, ``1``; not
    ``"false"`` or ``"0"`` (an environment variable read as a string)."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


_MIDDLEWARE_READS = frozenset(
    {"ENABLED", "DATABASES", "PROJECT_ROOT", "IGNORED_MODULES"}
    | {key for key in OPTIONS if key.startswith(("NPLUSONE_", "WORKLOAD_"))}
)
"""The options the request middleware reads while it works on a request."""


_MIDDLEWARE_OFF = (
    "django_dbtune",
    "django-dbtune's middleware lets requests through untouched: %s It watches nothing until "
    "DBTUNE is fixed (manage.py check names the mistake).",
)


def _on_unless_wrong(
    switch: Callable[[], bool], concerns: Callable[[Problem], bool], off: tuple[str, str]
) -> bool:
    """What ``switch()`` says, or False, said in the log (``off``: logger and message),
    while a setting the feature reads is wrong (``concerns``): a server that runs no system
    checks (gunicorn, uvicorn) must serve every page."""
    try:
        if not switch():
            return False
    except ImproperlyConfigured as error:
        problem = str(error)
    else:
        wrong = [p for p in problems(getattr(django_settings, "DBTUNE", {})) if concerns(p)]
        if not wrong:
            return True
        problem = wrong[0].message
    logging.getLogger(off[0]).error(off[1], problem)
    return False


class Settings:
    """Typed access to the DBTUNE setting, each option resolved once (see the module)."""

    def reset(self) -> None:
        """Forget every resolved option: the next read resolves it from the settings."""
        self.__dict__.clear()

    def _get(self, key: str) -> Any:
        # Check only this key (a mistake elsewhere must not break this one); checks.py
        # reports the whole setting.
        user = getattr(django_settings, "DBTUNE", {})
        if not isinstance(user, Mapping):
            raise ImproperlyConfigured(problems(user)[0].message)
        if key not in user:
            return OPTIONS[key].default
        option = OPTIONS[key]
        if not option.accepts(user[key]):
            raise ImproperlyConfigured(type_error(key, user[key]))
        return user[key]

    @cached_property
    def ENABLED(self) -> bool:
        return bool(self._get("ENABLED"))

    @cached_property
    def DATABASES(self) -> tuple[str, ...]:
        aliases = self._get("DATABASES")
        return tuple(django_settings.DATABASES if aliases is None else aliases)

    @cached_property
    def PROJECT_ROOT(self) -> Path:
        root = self._get("PROJECT_ROOT")
        if root is None:
            root = getattr(django_settings, "BASE_DIR", None) or os.getcwd()
        return _resolved(os.fspath(root))

    @cached_property
    def IGNORED_MODULES(self) -> tuple[str, ...]:
        return tuple(self._get("IGNORED_MODULES"))

    @cached_property
    def NPLUSONE_RAISE(self) -> bool:
        user = getattr(django_settings, "DBTUNE", {})
        if isinstance(user, Mapping) and "NPLUSONE_RAISE" not in user:
            # nplusone's own setting, accepted so projects can swap the app (check W002).
            return bool(getattr(django_settings, "NPLUSONE_RAISE", False))
        return bool(self._get("NPLUSONE_RAISE"))

    @cached_property
    def NPLUSONE_PROVE(self) -> bool:
        return bool(self._get("NPLUSONE_PROVE"))

    @cached_property
    def NPLUSONE_THRESHOLD(self) -> int:
        return int(self._get("NPLUSONE_THRESHOLD"))

    @cached_property
    def NPLUSONE_UNUSED_EAGER_LOADS(self) -> bool:
        return bool(self._get("NPLUSONE_UNUSED_EAGER_LOADS"))

    @cached_property
    def NPLUSONE_ALLOW(self) -> tuple[dict[str, str], ...]:
        rules = [dict(rule) for rule in self._get("NPLUSONE_ALLOW")]
        # nplusone's NPLUSONE_WHITELIST: [{"label": "n_plus_one", "model": "app.Model",
        # "field": "name"}], patterns allowed in model and field (check W002).
        for old in getattr(django_settings, "NPLUSONE_WHITELIST", None) or ():
            rules.append(legacy_allow_rule(old))
        return tuple(rules)

    @cached_property
    def NPLUSONE_BASELINE(self) -> Path | None:
        path = self._get("NPLUSONE_BASELINE")
        return None if path is None else Path(path)

    @cached_property
    def WORKLOAD_FILE(self) -> Path | None:
        path = self._get("WORKLOAD_FILE")
        return None if path is None else Path(path)

    @cached_property
    def WORKLOAD_STORE(self) -> str | None:
        store = self._get("WORKLOAD_STORE")
        return None if store is None else str(store)

    @cached_property
    def WORKLOAD_PARAMS(self) -> bool:
        return bool(self._get("WORKLOAD_PARAMS"))

    @cached_property
    def PRODUCTION_DATABASES(self) -> tuple[str, ...]:
        return tuple(self._get("PRODUCTION_DATABASES"))

    @cached_property
    def PRODUCTION(self) -> Production | None:
        return production(self._get("PRODUCTION"))

    @cached_property
    def UNUSED_INDEX_MIN_DAYS(self) -> float:
        return float(self._get("UNUSED_INDEX_MIN_DAYS"))

    @cached_property
    def INDEX_SMALL_TABLE_ROWS(self) -> int:
        return int(self._get("INDEX_SMALL_TABLE_ROWS") or 0)

    @cached_property
    def CACHE_ENABLED(self) -> bool:
        return bool(self._get("CACHE_ENABLED"))

    @cached_property
    def cache_active(self) -> bool:
        """The query cache is on: the master switch and ``CACHE_ENABLED`` both say so.
        Reads and the write watcher ask the same question, so one can never serve what the
        other did not watch. Off, and said once in the log, while a setting it reads is
        wrong (writes are still watched then: :attr:`cache_watching`)."""
        return _on_unless_wrong(
            lambda: self.ENABLED and self.CACHE_ENABLED,
            lambda problem: (problem.key or "").startswith("CACHE"),
            _CACHE_OFF,
        )

    @cached_property
    def middleware_active(self) -> bool:
        """The request middleware (N+1 detection, query capture) works on requests: the
        master switch says so and no setting they read is wrong. Off, and said once in the
        log, while one is: a mistake found after the view ran would fail a request whose
        writes were committed. The query cache and production mode guard their own."""
        return _on_unless_wrong(
            lambda: self.ENABLED,
            lambda problem: problem.key is None or problem.key in _MIDDLEWARE_READS,
            _MIDDLEWARE_OFF,
        )

    @cached_property
    def cache_watching(self) -> bool:
        """Writes retire what they change: whenever the settings ask for the query cache,
        even while another of its settings is wrong and no read is served
        (:attr:`cache_active`). Other processes, with their settings right (a web server
        beside a worker with a settings module of its own, the next deploy), may hold
        entries these writes make stale."""
        if self.cache_active:
            return True
        user = getattr(django_settings, "DBTUNE", {})
        if not isinstance(user, Mapping):
            return False
        return _meant_on(user.get("ENABLED", True)) and _meant_on(user.get("CACHE_ENABLED", False))

    @cached_property
    def CACHE_ALIAS(self) -> str:
        return str(self._get("CACHE_ALIAS"))

    @cached_property
    def CACHE_TIMEOUT(self) -> int:
        return int(self._get("CACHE_TIMEOUT"))

    @cached_property
    def CACHE_LOCAL(self) -> bool:
        return bool(self._get("CACHE_LOCAL"))

    @cached_property
    def CACHE_LOCAL_ENTRIES(self) -> int:
        return int(self._get("CACHE_LOCAL_ENTRIES"))

    @cached_property
    def CACHE_PREFIX(self) -> str:
        return str(self._get("CACHE_PREFIX"))

    @cached_property
    def CACHE_DATABASE_GROUPS(self) -> dict[str, str]:
        return dict(self._get("CACHE_DATABASE_GROUPS"))

    @cached_property
    def CACHE_REPLICA_LAG(self) -> float:
        return float(self._get("CACHE_REPLICA_LAG"))

    @cached_property
    def CACHE_VIEWS(self) -> dict[str, tuple[str, ...]]:
        return {view: tuple(tables) for view, tables in self._get("CACHE_VIEWS").items()}

    @cached_property
    def CACHE_TRIGGERS(self) -> dict[str, tuple[str, ...]]:
        return {table: tuple(tables) for table, tables in self._get("CACHE_TRIGGERS").items()}

    @cached_property
    def CACHE_LOCK(self) -> bool:
        return bool(self._get("CACHE_LOCK"))

    @cached_property
    def CACHE_LOCK_WAIT(self) -> float:
        return float(self._get("CACHE_LOCK_WAIT"))

    @cached_property
    def CACHE_BREAKER_SECONDS(self) -> float:
        return float(self._get("CACHE_BREAKER_SECONDS"))


_LEGACY_LABELS = {"n_plus_one": "n_plus_one", "unused_eager_load": "unused_*"}


def legacy_allow_rule(old: Mapping[str, Any]) -> dict[str, str]:
    """One nplusone NPLUSONE_WHITELIST entry as an NPLUSONE_ALLOW rule."""
    rule: dict[str, str] = {}
    if old.get("label"):
        rule["kind"] = _LEGACY_LABELS.get(str(old["label"]), str(old["label"]))
    model = str(old.get("model") or "*")
    rule["relation"] = f"{model}.{old.get('field') or '*'}"
    return rule


@lru_cache(maxsize=16)
def _resolved(path: str) -> Path:
    # Read for every call site shown: resolving touches the file system, so once per value.
    return Path(path).resolve()


conf = Settings()

# The settings each option is resolved from: a change to any of them (override_settings in
# tests) clears what was resolved.
_SOURCES = frozenset({"DBTUNE", "DATABASES", "BASE_DIR", "NPLUSONE_RAISE", "NPLUSONE_WHITELIST"})


def _setting_changed(setting: str, **kwargs: Any) -> None:
    if setting in _SOURCES:
        conf.reset()


# Connected at import, before any receiver of a feature that reads conf when DBTUNE changes.
setting_changed.connect(_setting_changed, dispatch_uid="django_dbtune.conf")
