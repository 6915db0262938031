import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test import override_settings

from django_dbtune.checks import check_settings


def ids(value):
    with override_settings(DBTUNE=value):
        return [message.id for message in check_settings()]


def test_a_good_setting_passes():
    assert ids({"ENABLED": True, "DATABASES": ["default"], "IGNORED_MODULES": []}) == []


def test_e001_dbtune_is_not_a_dict():
    assert ids(["ENABLED"]) == ["dbtune.E001"]


def test_e002_unknown_key_names_the_key_and_suggests_the_right_one():
    with override_settings(DBTUNE={"enabled": True}):
        (message,) = check_settings()
    assert message.id == "dbtune.E002"
    assert "'enabled'" in message.msg
    assert message.hint == "Did you mean 'ENABLED'?"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ENABLED", "yes"),
        ("DATABASES", "default"),
        ("IGNORED_MODULES", ["ok", 3]),
        ("PROJECT_ROOT", 42),
        ("CACHE_VIEWS", {"shop_book_titles": "shop_book"}),
        ("CACHE_TRIGGERS", ["shop_book"]),
        # Braces would end the Redis Cluster hash tag the prefix is written in.
        ("CACHE_PREFIX", "my{app}"),
    ],
)
def test_e003_wrong_type_names_the_key(key, value):
    with override_settings(DBTUNE={key: value}):
        (message,) = check_settings()
    assert message.id == "dbtune.E003"
    assert repr(key) in message.msg


def test_e004_unknown_database_alias():
    with override_settings(DBTUNE={"DATABASES": ["default", "replica"]}):
        (message,) = check_settings()
    assert message.id == "dbtune.E004"
    assert "'replica'" in message.msg


def test_e004_an_unknown_alias_in_the_caches_database_groups():
    """A mistyped alias there passed every check, and the alias meant stayed ungrouped."""
    with override_settings(DBTUNE={"CACHE_ENABLED": True, "CACHE_DATABASE_GROUPS": {"nope": "x"}}):
        (message,) = check_settings()
    assert message.id == "dbtune.E004"
    assert "DBTUNE['CACHE_DATABASE_GROUPS'] names 'nope'" in message.msg


def test_w001_project_root_that_is_not_a_folder(tmp_path):
    assert ids({"PROJECT_ROOT": str(tmp_path / "missing")}) == ["dbtune.W001"]


def test_manage_py_check_reports_a_bad_setting_without_a_traceback():
    with (
        override_settings(DBTUNE={"ENABLD": True}),
        pytest.raises(SystemCheckError, match=r"dbtune\.E002.*'ENABLD'"),
    ):
        call_command("check")


@pytest.mark.django_db
def test_checks_never_build_a_managers_queryset(monkeypatch, settings):
    """A manager's get_queryset() may read the database (Wagtail's reads content types):
    under ``migrate`` on an empty database, the checks run before the tables exist."""
    from django.core.checks import run_checks
    from django.db import OperationalError

    from django_dbtune.cache import CachedManager

    def no_tables_yet(self):
        raise OperationalError("no such table: django_content_type")

    monkeypatch.setattr(CachedManager, "get_queryset", no_tables_yet)
    settings.DBTUNE = {"CACHE_ENABLED": False}
    warning = next(m for m in run_checks(databases=[]) if m.id == "dbtune.W003")
    assert "shop.Book" in warning.msg


# --- What the settings point at, and production ----------------------------------------------


def run_ids(**options):
    from django.core.checks import run_checks

    # W003 (models offer .cached() with the cache off) is about the test models, not here.
    # No database is asked (Django 6 checks fields against every alias otherwise).
    found = run_checks(**{"databases": [], **options})
    return [m.id for m in found if m.id.startswith("dbtune.") and m.id != "dbtune.W003"]


def test_e005_a_cache_alias_missing_from_caches(settings):
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "nope"}
    assert run_ids() == ["dbtune.E005"]
    with pytest.raises(SystemCheckError, match=r"dbtune\.E005.*'nope'.*not in settings\.CACHES"):
        call_command("check")


def test_w006_a_dummy_cache_keeps_nothing(settings):
    settings.CACHES = {
        **settings.CACHES,
        "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "dummy"}
    assert run_ids() == ["dbtune.W006"]
    settings.DBTUNE = {"CACHE_ENABLED": True}
    assert run_ids() == []


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_w012_a_replica_on_another_host_that_the_cache_keeps_apart(settings):
    """A replica defined with its own host: the query cache cannot tell it reaches a copy of
    the primary, so a write through the primary would leave its cached reads in place."""
    primary = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "HOST": "db1.internal",
        "PORT": "5432",
    }
    settings.DATABASES = {
        **settings.DATABASES,
        "primary": primary,
        "replica": {**primary, "HOST": "db2.internal"},
        "analytics": {**primary, "NAME": "analytics"},  # another database: no warning
        # The same server: an empty PORT is the driver's default, 5432. One group, no warning.
        "same": {**primary, "PORT": ""},
    }
    from django.core.checks import run_checks

    settings.DBTUNE = {"CACHE_ENABLED": True}
    found = [m for m in run_checks(databases=[]) if m.id == "dbtune.W012"]
    assert [m.msg.split(";")[0] for m in found] == [
        "DATABASES['replica'] names database 'shop' as 'primary' does, on another server "
        "(db2.internal:5432 against db1.internal:5432)"
    ]
    assert "CACHE_DATABASE_GROUPS'] = {'replica': 'primary'}" in found[0].hint
    from django_dbtune.cache.invalidation import database_identity

    assert database_identity(settings.DATABASES["same"]) == database_identity(primary)
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_DATABASE_GROUPS": {"replica": "primary"}}
    assert run_ids() == []
    # The primary in a group of its own name: the hint names that group, not the alias.
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_DATABASE_GROUPS": {"primary": "main"}}
    found = [m for m in run_checks(databases=[]) if m.id == "dbtune.W012"]
    assert "CACHE_DATABASE_GROUPS'] = {'replica': 'main'}" in found[0].hint
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_DATABASE_GROUPS": {"replica": "replica"}}
    assert run_ids() == []  # the user said it is a database of its own
    settings.DBTUNE = {}
    assert run_ids() == []  # the query cache is off


def test_w011_a_django_redis_cache_that_ignores_exceptions(settings):
    """django-redis's IGNORE_EXCEPTIONS turns a failed invalidation into nothing at all."""
    redis = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:6379/0"}
    settings.CACHES = {
        **settings.CACHES,
        "quiet": {**redis, "OPTIONS": {"IGNORE_EXCEPTIONS": True}},
        "loud": redis,
    }
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "quiet"}
    assert run_ids() == ["dbtune.W011"]
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "loud"}
    assert run_ids() == []
    settings.DJANGO_REDIS_IGNORE_EXCEPTIONS = True  # the global switch
    assert run_ids() == ["dbtune.W011"]
    settings.DBTUNE = {"CACHE_ALIAS": "quiet"}  # the query cache is off: nothing to lose
    assert run_ids() == []


def test_w011_a_django_valkey_cache_that_ignores_exceptions(settings):
    valkey = {"BACKEND": "django_valkey.cache.ValkeyCache", "LOCATION": "valkey://127.0.0.1:6379"}
    settings.CACHES = {**settings.CACHES, "quiet": {**valkey, "OPTIONS": {"IGNORE_EXCEPTIONS": 1}}}
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "quiet"}
    assert run_ids() == ["dbtune.W011"]
    settings.CACHES = {**settings.CACHES, "quiet": valkey}
    assert run_ids() == []
    settings.DJANGO_VALKEY_IGNORE_EXCEPTIONS = True
    assert run_ids() == ["dbtune.W011"]


def test_w007_a_workload_file_that_cannot_be_written(settings, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("a file where a folder should be")
    settings.DBTUNE = {"WORKLOAD_FILE": str(taken / "site.jsonl")}
    assert run_ids() == ["dbtune.W007"]
    settings.DBTUNE = {"WORKLOAD_FILE": str(tmp_path / "new" / "site.jsonl")}  # made on flush
    assert run_ids() == []


def test_w008_w009_the_n_plus_one_detector_in_production(settings):
    settings.DEBUG = False
    settings.MIDDLEWARE = ["django_dbtune.middleware.NPlusOneMiddleware", *settings.MIDDLEWARE]
    settings.DBTUNE = {"NPLUSONE_RAISE": True}
    assert run_ids() == []  # only with --deploy
    deploy = [
        i for i in run_ids(include_deployment_checks=True) if i in ("dbtune.W008", "dbtune.W009")
    ]
    assert deploy == ["dbtune.W008", "dbtune.W009"]
    settings.DEBUG = True
    assert "dbtune.W008" not in run_ids(include_deployment_checks=True)
    settings.DEBUG = False
    settings.DBTUNE = {"ENABLED": False, "NPLUSONE_RAISE": True}
    assert "dbtune.W008" not in run_ids(include_deployment_checks=True)


@pytest.mark.django_db  # MariaDB's system checks ask the server
def test_w010_a_concurrent_index_migration_on_another_database(settings, tmp_path):
    from django.core.checks import run_checks

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("needs a database other than PostgreSQL: run with DBTUNE_DB=sqlite")
    import sys

    package = tmp_path / "concurrent_migrations"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "0001_initial.py").write_text(
        "from django.contrib.postgres.operations import AddIndexConcurrently\n"
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        "    atomic = False\n"
        "    dependencies = [('shop', '0001_initial')]\n"
        "    operations = [AddIndexConcurrently('book', models.Index(fields=['title'], "
        "name='book_title_idx'))]\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        settings.MIGRATION_MODULES = {"testapp": "concurrent_migrations"}
        [message] = [m for m in run_checks(databases=[]) if m.id == "dbtune.W010"]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("concurrent_migrations", None)
        sys.modules.pop("concurrent_migrations.0001_initial", None)
    assert "testapp.0001_initial uses AddIndexConcurrently" in message.msg
    assert f"'default' is {connection.vendor}" in message.msg


def test_w003_names_the_models_that_offer_cached_in_a_sentence(monkeypatch, settings):
    from django.apps import apps

    from django_dbtune.checks import check_cache
    from tests.shop.models import Author, Book, Publisher, Tag

    settings.DBTUNE = {"CACHE_ENABLED": False}
    monkeypatch.setattr(apps, "get_models", lambda: [Publisher, Book])
    (warning,) = check_cache()
    assert warning.msg.startswith("shop.Book offers .cached(), but the query cache is off")
    monkeypatch.setattr(apps, "get_models", lambda: [Author, Book, Tag])
    (warning,) = check_cache()
    assert warning.msg.startswith("shop.Author, shop.Book and shop.Tag offer .cached(), but")


def test_checks_never_crash_on_odd_settings(settings, tmp_path, monkeypatch):
    # A workload path the system refuses to look at, a middleware module that raises on
    # import, a database whose driver is not installed: warnings or silence, no traceback.
    import subprocess
    import sys

    from django_dbtune.checks import check_deploy

    settings.DBTUNE = {"WORKLOAD_FILE": "/tmp/" + "a" * 300 + "/w.jsonl"}
    assert run_ids() == ["dbtune.W007"]
    (tmp_path / "raising_middleware.py").write_text(
        "from django.core.exceptions import ImproperlyConfigured\n"
        "raise ImproperlyConfigured('SENTRY_DSN must be set in production')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.DBTUNE = {}
    settings.DEBUG = False
    settings.MIDDLEWARE = ["raising_middleware.Middleware", *settings.MIDDLEWARE]
    try:
        assert check_deploy() == []  # (Django's own auth check imports it too, and fails)
    finally:
        sys.modules.pop("raising_middleware", None)
    # (A router keeps the models off the legacy alias, as a project's would: Django's own
    # model checks load the backend of every alias a model may be migrated to.)
    code = (
        "import django; from django.conf import settings\n"
        "class Router:\n"
        "    def allow_migrate(self, db, app_label, **hints): return db != 'legacy'\n"
        "settings.configure(INSTALLED_APPS=['django_dbtune'], DATABASES={"
        "'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}, "
        "'legacy': {'ENGINE': 'django.db.backends.no_driver_here', 'NAME': 'x'}}, "
        "DATABASE_ROUTERS=[Router()])\n"
        "django.setup()\n"
        "from django.core.management import call_command; call_command('check')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize(
    ("production", "said"),
    [
        ({"SAMPLE_RAT": 0.5}, "unknown key 'SAMPLE_RAT'. Did you mean 'SAMPLE_RATE'?"),
        ({"SAMPLE_RATE": 5}, "['SAMPLE_RATE'] must be a number from 0 to 1, not 5."),
        ({"SLOW_QUERY_MS": 0}, "['SLOW_QUERY_MS'] must be a number of milliseconds above 0"),
        ({"STORE": "redis"}, """['STORE'] must be "database" or "cache", not 'redis'."""),
    ],
)
def test_e003_names_the_key_inside_production_and_what_it_takes(production, said):
    with override_settings(DBTUNE={"PRODUCTION": production}):
        (message,) = check_settings()
    assert message.id == "dbtune.E003"
    assert message.msg.startswith("DBTUNE['PRODUCTION']")
    assert said in message.msg


def production_ids(**overrides):
    from django.conf import settings

    from django_dbtune.checks import check_production

    middleware = ["django_dbtune.middleware.ProductionMiddleware", *settings.MIDDLEWARE]
    with override_settings(**{"MIDDLEWARE": middleware, **overrides}):
        return [(m.id, m.msg) for m in check_production()]


def test_w014_production_mode_with_the_master_switch_off_samples_nothing():
    """What installation.rst's ``"ENABLED": DEBUG`` gives in production settings."""
    [(id_, msg)] = production_ids(DBTUNE={"ENABLED": False, "PRODUCTION": {}})
    assert id_ == "dbtune.W014" and "samples nothing" in msg
    assert production_ids(DBTUNE={"ENABLED": True, "PRODUCTION": {}}) == []
    assert production_ids(DBTUNE={"ENABLED": False}) == []  # production mode is off anyway


def test_e006_and_w015_a_cache_store_that_loses_or_cannot_list_its_findings():
    from django.conf import settings

    [(id_, msg)] = production_ids(DBTUNE={"PRODUCTION": {"STORE": "cache", "CACHE": "nope"}})
    assert id_ == "dbtune.E006" and "'nope'" in msg
    plain = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    caches = {**settings.CACHES, "plain": plain}
    store = {"PRODUCTION": {"STORE": "cache", "CACHE": "plain"}}
    [(id_, msg)] = production_ids(DBTUNE=store, CACHES=caches)
    assert id_ == "dbtune.W015" and "cannot list its keys" in msg
