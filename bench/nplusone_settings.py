"""Settings for bench/nplusone_overhead.py: the test settings plus one N+1 tool (BENCH_TOOL)."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, MIDDLEWARE

TOOL = os.environ.get("BENCH_TOOL", "none")
DEBUG = False
ROOT_URLCONF = "bench.nplusone_urls"
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("django_dbtune.")]
if TOOL == "dbtune":
    MIDDLEWARE = ["django_dbtune.middleware.NPlusOneMiddleware", *MIDDLEWARE]
elif TOOL == "zeal":
    INSTALLED_APPS = [*INSTALLED_APPS, "zeal"]
    MIDDLEWARE = ["zeal.middleware.zeal_middleware", *MIDDLEWARE]
    ZEAL_RAISE = False
elif TOOL == "nplusone":
    INSTALLED_APPS = [*INSTALLED_APPS, "nplusone.ext.django"]
    MIDDLEWARE = ["nplusone.ext.django.NPlusOneMiddleware", *MIDDLEWARE]
    NPLUSONE_RAISE = False
