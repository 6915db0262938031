"""The smallest settings the type checker's Django plugin needs to read the package."""

SECRET_KEY = "typing"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_dbtune"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
