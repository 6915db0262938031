"""Corpus settings for wagtail/bakerydemo: the project's own dev settings, plus django_dbtune,
on SQLite, offline, without a static files manifest and without the debug toolbar."""

import os

from bakerydemo.settings.dev import *  # noqa: F403

DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [*INSTALLED_APPS, "django_dbtune"]  # noqa: F405
# django-debug-toolbar stays installed (bakerydemo/urls.py imports it) but is not enabled:
# neither its app nor its middleware is in the settings (upstream leaves both commented out).

# SQLite in the checkout (upstream's default); never a DATABASE_URL from the environment.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(BASE_DIR, "bakerydemodb"),  # noqa: F405
    }
}

# DBTUNE_CORPUS_DB=mariadb: the same project on MariaDB (database corpus_bakerydemo, utf8mb4;
# setup creates it), instead of the default above. User root without a password unless set.
if os.environ.get("DBTUNE_CORPUS_DB", "sqlite") == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("DBTUNE_CORPUS_MARIADB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DBTUNE_CORPUS_MARIADB_PORT", "3306"),
            "USER": os.environ.get("DBTUNE_CORPUS_MARIADB_USER", "root"),
            "PASSWORD": os.environ.get("DBTUNE_CORPUS_MARIADB_PASSWORD", ""),
            "NAME": os.environ.get("DBTUNE_CORPUS_MARIADB_NAME", "corpus_bakerydemo"),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }

# No front-end build, no collectstatic: plain storage, no manifest to read.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# CACHES: upstream's default (per-process local memory). Wagtail keeps renditions, site root
# paths and the {% wagtailcache %} blog fragment there, so a page's queries are those of a cold
# cache only on the first request of a process (the truth's counts are cold-cache counts).

EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
WAGTAILADMIN_BASE_URL = "http://localhost:8000"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
