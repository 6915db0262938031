import dataclasses

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_dbtune.conf import OPTIONS, conf


def test_defaults_apply_without_a_dbtune_setting(settings):
    del settings.DBTUNE
    assert conf.ENABLED is True
    assert conf.DATABASES == ("default", "other", "standby")
    assert conf.IGNORED_MODULES == ()
    assert conf.PROJECT_ROOT == settings.BASE_DIR


def test_override_settings_is_seen_at_once(tmp_path):
    with override_settings(DBTUNE={"ENABLED": False, "PROJECT_ROOT": str(tmp_path)}):
        assert conf.ENABLED is False
        assert tmp_path.resolve() == conf.PROJECT_ROOT
    assert conf.ENABLED is True


def test_a_wrong_type_raises_improperly_configured_naming_the_key():
    with (
        override_settings(DBTUNE={"ENABLED": "yes"}),
        pytest.raises(ImproperlyConfigured, match=r"DBTUNE\['ENABLED'\] must be a boolean"),
    ):
        _ = conf.ENABLED


def test_every_option_has_help_and_a_default_its_own_check_accepts():
    for name, option in OPTIONS.items():
        assert option.help, name
        assert option.accepts(option.default), name


def test_an_option_is_validated_once_until_the_settings_change(monkeypatch):
    """A cache hit reads several options; each must be an attribute read, not a validation
    of the user's setting every time."""
    validations = []
    original = OPTIONS["CACHE_TIMEOUT"]

    def accepts(value):
        validations.append(value)
        return original.accepts(value)

    monkeypatch.setitem(OPTIONS, "CACHE_TIMEOUT", dataclasses.replace(original, accepts=accepts))
    with override_settings(DBTUNE={"CACHE_TIMEOUT": 60}):
        assert [conf.CACHE_TIMEOUT for _ in range(100)] == [60] * 100
        assert validations == [60]
        with override_settings(DBTUNE={"CACHE_TIMEOUT": 90}):
            assert conf.CACHE_TIMEOUT == 90
        assert conf.CACHE_TIMEOUT == 60
    assert validations == [60, 90, 60]
    assert conf.CACHE_TIMEOUT == 300
