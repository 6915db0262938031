"""Test settings: the example project, with the services chosen by environment variables.

DBTUNE_DB=sqlite (default), postgres or mariadb; DBTUNE_CACHE=locmem (default), redis
(django-redis), redis-django (Django's RedisCache), redis-cluster or redis-sentinel (the last
two as scripts/redis_setup starts them). A second database, "other", of the same kind, tests
multi-database capture; "standby" reaches the default database through a second connection,
as a read replica would.
DBTUNE_TEST_DB_SUFFIX keeps the database names of test runs that share one server apart.
"""

import os
import sys
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "example_project"))

from config.settings import *  # noqa: E402, F403
from config.settings import cache, database  # noqa: E402

_suffix = os.environ.get("DBTUNE_TEST_DB_SUFFIX", "")
DATABASES = {
    "default": database(f"dbtune_tests{_suffix}"),
    "other": database(f"dbtune_tests_other{_suffix}"),
    "standby": {**database(f"dbtune_tests{_suffix}"), "TEST": {"MIRROR": "default"}},
}
if os.environ.get("DBTUNE_DB", "sqlite") == "sqlite":
    for alias in ("default", "other"):
        # In memory: fast, and nothing left behind.
        DATABASES[alias]["TEST"] = {"NAME": f"file:memorydb_{alias}?mode=memory&cache=shared"}
CACHES = {"default": cache()}
INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework", "taggit", "tests.testapp", "tests.shop"]  # noqa: F405
if os.environ.get("DBTUNE_DB", "sqlite") == "postgres":
    # ArrayField: a table only PostgreSQL can create (its system check asks for the app).
    INSTALLED_APPS += ["django.contrib.postgres", "tests.pgapp"]
if django.VERSION >= (6, 1):
    # Foreign keys the database follows on delete itself (DB_CASCADE, DB_SET_NULL).
    INSTALLED_APPS += ["tests.dbapp"]
ROOT_URLCONF = "tests.urls"
# Call sites are shown relative to the repository in the tests.
BASE_DIR = ROOT
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
