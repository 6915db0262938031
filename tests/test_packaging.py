"""What a release publishes: the metadata PyPI shows, and archives that install and run."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
REPOSITORY = "https://github.com/django-dbtune/django-dbtune"


# --- the metadata ----------------------------------------------------------------------------


def test_the_license_the_metadata_names_is_in_the_repository():
    text = (ROOT / "LICENSE").read_text()
    assert PROJECT["license"] == "BSD-3-Clause"
    assert text.startswith("BSD 3-Clause License\n")
    assert "Copyright (c) 2026, django-dbtune developers" in text
    assert PROJECT["license-files"] == ["LICENSE"]


def test_the_build_backend_reads_the_license_fields():
    # An SPDX expression in `license`, and `license-files`, need setuptools 77 (PEP 639).
    (requirement,) = PYPROJECT["build-system"]["requires"]
    minimum = re.fullmatch(r"setuptools>=(\d+)[\d.]*", requirement)
    assert minimum and int(minimum[1]) >= 77, requirement


def test_pypi_links_to_the_repository_its_docs_changelog_and_issues():
    urls = PROJECT["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Changelog", "Issues"}
    assert urls["Homepage"] == REPOSITORY
    assert urls["Issues"] == f"{REPOSITORY}/issues"
    for name in ("Documentation", "Changelog"):
        where = re.fullmatch(rf"{REPOSITORY}/(?:blob|tree)/main/(.+)", urls[name])
        assert where and (ROOT / where[1]).exists(), urls[name]


def test_classifiers_name_every_django_series_the_tests_run_on():
    tested = re.findall(r"django~=(\d+\.\d+)\.0", (ROOT / "tox.ini").read_text())
    assert tested
    for series in tested:
        assert f"Framework :: Django :: {series}" in PROJECT["classifiers"], series


def test_the_pytest_plugin_is_classified_as_one():
    assert "pytest11" in PROJECT["entry-points"]
    assert "Framework :: Pytest" in PROJECT["classifiers"]


def test_classifiers_claim_posix_systems_not_windows():
    systems = [name for name in PROJECT["classifiers"] if name.startswith("Operating System")]
    assert systems == ["Operating System :: POSIX"]
