"""Settings of the example project: a small SaaS back office with three apps.

DBTUNE_DB=sqlite|postgres and DBTUNE_CACHE=locmem|redis pick the services (SQLite and local
memory by default); DBTUNE_CACHE=redis-django reaches Redis through Django's own backend, and
redis-cluster or redis-sentinel the Redis Cluster and the Sentinel that scripts/redis_setup
starts (the tests' own dependencies drive them).
PostgreSQL and Redis are reached on 127.0.0.1 unless DBTUNE_PG_HOST, DBTUNE_PG_PORT,
DBTUNE_PG_USER, DBTUNE_PG_PASSWORD, DBTUNE_PG_NAME or DBTUNE_REDIS_URL say otherwise.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_dbtune",
    "crawler",
    "publisher",
    "marketplace",
    "dashboard",
]

MIDDLEWARE = [
    "django_dbtune.middleware.CaptureMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"


def database(name: str) -> dict[str, object]:
    """One database of the kind DBTUNE_DB names."""
    engine = os.environ.get("DBTUNE_DB", "sqlite")
    if engine == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / f"{name}.sqlite3"}
    if engine == "postgres":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("DBTUNE_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DBTUNE_PG_PORT", "5432"),
            "USER": os.environ.get("DBTUNE_PG_USER", "postgres"),
            "PASSWORD": os.environ.get("DBTUNE_PG_PASSWORD", ""),
            "NAME": os.environ.get("DBTUNE_PG_NAME", name),
        }
    if engine == "mariadb":  # through mysqlclient, with the user scripts/mariadb_setup adds
        return {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("DBTUNE_MARIADB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DBTUNE_MARIADB_PORT", "3306"),
            "USER": os.environ.get("DBTUNE_MARIADB_USER", "dbtune"),
            "PASSWORD": os.environ.get("DBTUNE_MARIADB_PASSWORD", "dbtune"),
            "NAME": os.environ.get("DBTUNE_MARIADB_NAME", name),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    raise ImproperlyConfigured(
        f"DBTUNE_DB must be 'sqlite', 'postgres' or 'mariadb', not {engine!r}."
    )


def cache(kind: str | None = None) -> dict[str, object]:
    """The cache of ``kind``, by default the kind DBTUNE_CACHE names."""
    kind = kind or os.environ.get("DBTUNE_CACHE", "locmem")
    if kind == "locmem":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if kind == "redis":
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": os.environ.get("DBTUNE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        }
    if kind == "redis-django":  # the same Redis through Django's own backend
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ.get("DBTUNE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        }
    if kind == "redis-cluster":  # three primaries on 7000 to 7002 (scripts/redis_setup)
        return {
            "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
            "LOCATION": os.environ.get("DBTUNE_REDIS_URL", "valkey://127.0.0.1:7000"),
        }
    if kind == "redis-sentinel":  # the test Redis as the primary of "dbtune" (redis_setup)
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://dbtune/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": [("127.0.0.1", 26390)],
            },
        }
    raise ImproperlyConfigured(
        "DBTUNE_CACHE must be 'locmem', 'redis', 'redis-django', 'redis-cluster' or "
        "'redis-sentinel', "
        f"not {kind!r}."
    )


DATABASES = {"default": database("dbtune_example")}
CACHES = {"default": cache()}

# The query cache serves the dashboard at /cached/.
DBTUNE: dict[str, object] = {"CACHE_ENABLED": True}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-debug-toolbar with django-dbtune's panels, when it is installed (the "toolbar" extra).
try:
    import debug_toolbar
    from debug_toolbar.settings import PANELS_DEFAULTS
except ImportError:  # pragma: no cover - the toolbar is optional
    debug_toolbar = None
if debug_toolbar is not None:
    INSTALLED_APPS.append("debug_toolbar")
    MIDDLEWARE.insert(0, "debug_toolbar.middleware.DebugToolbarMiddleware")
    INTERNAL_IPS = ["127.0.0.1"]
    DEBUG_TOOLBAR_PANELS = [
        *PANELS_DEFAULTS,
        "django_dbtune.toolbar.NPlusOnePanel",
        "django_dbtune.toolbar.IndexesPanel",
        "django_dbtune.toolbar.QueryCachePanel",
    ]
