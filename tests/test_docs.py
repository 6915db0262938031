"""The documentation builds without a warning and covers every setting and check id."""

import re
from pathlib import Path

import pytest
from sphinx.cmd.build import build_main

from django_dbtune.conf import OPTIONS

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    status = build_main(["-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path)])
    assert status == 0


def test_every_setting_is_documented():
    text = (DOCS / "settings.rst").read_text()
    for name, option in OPTIONS.items():
        assert f"``{name}``\n---" in text, name
        assert f"Default: ``{option.default!r}``".replace("()", "[]") in text, name


def test_every_check_id_is_documented():
    pattern = re.compile(r"dbtune\.[EW]\d{3}")
    source = (DOCS.parent / "django_dbtune").rglob("*.py")
    ids = {found for path in source for found in pattern.findall(path.read_text())}
    documented = set(re.findall(r"``(dbtune\.[EW]\d{3})``", (DOCS / "checks.rst").read_text()))
    assert ids and ids == documented
