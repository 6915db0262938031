"""The corpus settings for django-oscar's sandbox: its own settings, plus django_dbtune, data
outside the checkout and nothing that needs the network or built front-end assets."""

import os
from pathlib import Path

from settings import *  # noqa: F403
from settings import INSTALLED_APPS

WORK_DIR = Path(os.environ["DBTUNE_CORPUS_PROJECT_DIR"])

DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [*INSTALLED_APPS, "django_dbtune"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(WORK_DIR / "db.sqlite3"),
        "ATOMIC_REQUESTS": True,  # as the sandbox has it
    }
}
# DBTUNE_CORPUS_DB=mariadb: the same project on MariaDB (database corpus_oscar, utf8mb4;
# setup creates it), instead of the default above. User root without a password unless set.
if os.environ.get("DBTUNE_CORPUS_DB", "sqlite") == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("DBTUNE_CORPUS_MARIADB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DBTUNE_CORPUS_MARIADB_PORT", "3306"),
            "USER": os.environ.get("DBTUNE_CORPUS_MARIADB_USER", "root"),
            "PASSWORD": os.environ.get("DBTUNE_CORPUS_MARIADB_PASSWORD", ""),
            "NAME": os.environ.get("DBTUNE_CORPUS_MARIADB_NAME", "corpus_oscar"),
            "OPTIONS": {"charset": "utf8mb4"},
            "ATOMIC_REQUESTS": True,  # as the sandbox has it
        }
    }

MEDIA_ROOT = str(WORK_DIR / "media")
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# The front-end assets are built by npm and not in the repository: no manifest storage.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# The sandbox's own search backend (Whoosh: a local file index, no search server).
HAYSTACK_CONNECTIONS = {
    "default": {
        "ENGINE": "haystack.backends.whoosh_backend.WhooshEngine",
        "PATH": str(WORK_DIR / "whoosh_index"),
        "INCLUDE_SPELLING": True,
    },
}

# Thumbnails: sorl keeps its key-value store in Redis (the sandbox's own THUMBNAIL_KVSTORE
# option), not in the database, so a page's queries do not depend on whether its thumbnails
# were made by an earlier request or are in this process's cache. Redis DB 11 is this
# project's (NetBox's corpus settings take 12, and NetBox empties it as it starts).
THUMBNAIL_KVSTORE = "sorl.thumbnail.kvstores.redis_kvstore.KVStore"
THUMBNAIL_REDIS_URL = "redis://{}:{}/11".format(
    os.environ.get("DBTUNE_CORPUS_REDIS_HOST", "127.0.0.1"),
    os.environ.get("DBTUNE_CORPUS_REDIS_PORT", "6379"),
)

# Quieter logs: the sandbox logs every oscar DEBUG line to the console.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING", "handlers": []},
}

# Oscar lives in src/oscar, the sandbox in sandbox/: the checkout root is the project.
DBTUNE = {"PROJECT_ROOT": str(WORK_DIR / "src")}
SILENCED_SYSTEM_CHECKS = [
    "templates.W003"
]  # sorl and easy-thumbnails both ship a "thumbnail" tag library (as in the sandbox)
