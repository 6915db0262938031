"""Settings for bench/cache_overhead.py: the test settings on PostgreSQL + Redis, plus one
query cache (BENCH_TOOL): none, dbtune, cachalot or cacheops."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import CACHES, INSTALLED_APPS, MIDDLEWARE

TOOL = os.environ.get("BENCH_TOOL", "none")
DEBUG = False
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("django_dbtune.")]
# django-dbtune hooks into Django only while its cache is on: only its own run turns it on.
DBTUNE = {"CACHE_ENABLED": TOOL == "dbtune"}
if TOOL == "cachalot":
    INSTALLED_APPS = [*INSTALLED_APPS, "cachalot"]
    CACHALOT_ENABLED = True
elif TOOL == "cacheops":
    INSTALLED_APPS = [*INSTALLED_APPS, "cacheops"]
    CACHEOPS_REDIS = CACHES["default"]["LOCATION"]
    CACHEOPS = {"shop.*": {"ops": (), "timeout": 300}}  # opt-in per query with .cache()
