"""Corpus settings for mdn/django-locallibrary-tutorial: the project's own settings, plus
django_dbtune, offline and without the static files manifest."""

import os

from locallibrary.settings import *  # noqa: F403

DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [*INSTALLED_APPS, "django_dbtune"]  # noqa: F405

# SQLite in the checkout (upstream's default); never a DATABASE_URL from the environment.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",  # noqa: F405
    }
}

# No collectstatic: plain storage, no manifest to read.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# DBTUNE_CORPUS_DB=mariadb: the same project on MariaDB (database corpus_locallibrary, utf8mb4;
# setup creates it), instead of the default above. User root without a password unless set.
if os.environ.get("DBTUNE_CORPUS_DB", "sqlite") == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("DBTUNE_CORPUS_MARIADB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DBTUNE_CORPUS_MARIADB_PORT", "3306"),
            "USER": os.environ.get("DBTUNE_CORPUS_MARIADB_USER", "root"),
            "PASSWORD": os.environ.get("DBTUNE_CORPUS_MARIADB_PASSWORD", ""),
            "NAME": os.environ.get("DBTUNE_CORPUS_MARIADB_NAME", "corpus_locallibrary"),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }

EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast seeding
