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

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Attachments uploaded while seeding go to the work directory, not the checkout.
MEDIA_ROOT = str(WORK_DIR / "media")
CELERY_TASK_ALWAYS_EAGER = True

# helpdesk lives in src/helpdesk, demodesk (BASE_DIR) beside it: the checkout root is the project.
DBTUNE = {"PROJECT_ROOT": str(Path(BASE_DIR).parent)}
