"""Settings for bench/cache_overhead.py: the test settings on PostgreSQL + Redis, plus one
query cache (BENCH_TOOL): none, dbtune, cachalot or cacheops."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import CACHES, DATABASES, INSTALLED_APPS, MIDDLEWARE

TOOL = os.environ.get("BENCH_TOOL", "none")
DEBUG = False
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("django_dbtune.")]
# django-dbtune hooks into Django only while its cache is on: its own worker turns it on and
# off, block by block.
DBTUNE = {"CACHE_ENABLED": False}
# A database of its own: a test run on the same server keeps its own.
DATABASES = {**DATABASES, "default": {**DATABASES["default"], "NAME": "dbtune_bench"}}
if TOOL == "cachalot":
    INSTALLED_APPS = [*INSTALLED_APPS, "cachalot"]
    CACHALOT_ENABLED = True
elif TOOL == "cacheops":
    INSTALLED_APPS = [*INSTALLED_APPS, "cacheops"]
    CACHEOPS_REDIS = CACHES["default"]["LOCATION"]
    CACHEOPS = {"shop.*": {"ops": (), "timeout": 300}}  # opt-in per query with .cache()
