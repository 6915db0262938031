import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
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
    warning = next(m for m in run_checks() if m.id == "dbtune.W003")
    assert "shop.Book" in warning.msg


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
