"""Settings for bench/nplusone_overhead.py: the test settings on one SQLite file (BENCH_DB),
DEBUG off, no django-dbtune middleware and no query cache; the benchmark puts each tool's
middleware around the same stack itself."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import MIDDLEWARE

DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "bench.nplusone_urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB", "bench-nplusone.sqlite3"),
        "CONN_MAX_AGE": None,  # one connection for the whole run: no reconnect in the timing
    }
}
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("django_dbtune.")]
DBTUNE = {"CACHE_ENABLED": False}
ZEAL_RAISE = False
