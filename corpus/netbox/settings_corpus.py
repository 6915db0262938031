"""Corpus settings for NetBox: its own settings (read from netbox/configuration.py, which
corpus/netbox/setup generates from configuration_example.py) plus django_dbtune.

The configuration keeps DEBUG = False, so NetBox leaves django-debug-toolbar's middleware
out; DEBUG is switched on here, afterwards. With DEBUG on, NetBox's urls.py includes the
toolbar's URLs, whose models module needs the app installed: the app is installed, the
toolbar never runs (no middleware, and its show-toolbar callback says no).
"""

from netbox.settings import *  # noqa: F403
from netbox.settings import DEBUG_TOOLBAR_CONFIG, INSTALLED_APPS

INSTALLED_APPS = [
    *INSTALLED_APPS,
    *(["debug_toolbar"] if "debug_toolbar" not in INSTALLED_APPS else []),
    "django_dbtune",
]
DEBUG_TOOLBAR_CONFIG = {**DEBUG_TOOLBAR_CONFIG, "SHOW_TOOLBAR_CALLBACK": lambda request: False}
SILENCED_SYSTEM_CHECKS = ["debug_toolbar.W001"]
DEBUG = True
ALLOWED_HOSTS = ["*"]
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
