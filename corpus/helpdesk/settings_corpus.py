"""The corpus settings for django-helpdesk's demo project (demodesk): its own settings, plus
django_dbtune, a database outside the checkout and nothing that needs the network."""

import os
from pathlib import Path

from demodesk.config.settings import *  # noqa: F403
from demodesk.config.settings import BASE_DIR, INSTALLED_APPS

WORK_DIR = Path(os.environ["DBTUNE_CORPUS_PROJECT_DIR"])

DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [*INSTALLED_APPS, "django_dbtune"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(WORK_DIR / "db.sqlite3"),
    }
}

# DBTUNE_CORPUS_DB=mariadb: the same project on MariaDB (database corpus_helpdesk, utf8mb4;
# setup creates it), instead of the default above. User root without a password unless set.
if os.environ.get("DBTUNE_CORPUS_DB", "sqlite") == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("DBTUNE_CORPUS_MARIADB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("DBTUNE_CORPUS_MARIADB_PORT", "3306"),
            "USER": os.environ.get("DBTUNE_CORPUS_MARIADB_USER", "root"),
            "PASSWORD": os.environ.get("DBTUNE_CORPUS_MARIADB_PASSWORD", ""),
            "NAME": os.environ.get("DBTUNE_CORPUS_MARIADB_NAME", "corpus_helpdesk"),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Attachments uploaded while seeding go to the work directory, not the checkout.
MEDIA_ROOT = str(WORK_DIR / "media")
CELERY_TASK_ALWAYS_EAGER = True

# helpdesk lives in src/helpdesk, demodesk (BASE_DIR) beside it: the checkout root is the project.
DBTUNE = {"PROJECT_ROOT": str(Path(BASE_DIR).parent)}
