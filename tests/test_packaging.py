"""What a release publishes: the metadata PyPI shows, and archives that install and run."""

import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

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


# --- the archives, built and installed as a user would -----------------------------------------


def test_the_release_steps_are_documented():
    page = (ROOT / "docs" / "releasing.rst").read_text()
    for step in ("python -m build", "twine check", "python -m venv", "manage.py check"):
        assert step in page, step


# The database plays no part: CI, which runs the suite on SQLite and on PostgreSQL, builds once.
ONCE = pytest.mark.skipif(
    os.environ.get("DBTUNE_DB") == "postgres",
    reason="needs the SQLite run: run with DBTUNE_DB=sqlite (no database plays a part)",
)


def run(*args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{args}:\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The sdist and the wheel built from it, as `python -m build` makes them for a release."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", str(out), str(ROOT))
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


@pytest.mark.slow
@ONCE
def test_the_archives_pass_twine_check(archives):
    run(sys.executable, "-m", "twine", "check", "--strict", *map(str, archives))


@pytest.mark.slow
@ONCE
def test_the_wheel_carries_the_license(archives):
    wheel, _ = archives
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names


@pytest.mark.slow
@ONCE
def test_the_sdist_holds_the_package_and_what_builds_it_and_no_tests(archives):
    _, sdist = archives
    with tarfile.open(sdist) as archive:
        tops = {Path(name).parts[1] for name in archive.getnames() if "/" in name}
    # tests/ would need the example project, docs/ and scripts/, which are not shipped.
    assert tops == {
        "LICENSE",
        "MANIFEST.in",
        "PKG-INFO",
        "README.md",
        "django_dbtune",
        "django_dbtune.egg-info",
        "pyproject.toml",
        "setup.cfg",
    }


@pytest.mark.slow
@ONCE
def test_the_wheel_installs_into_a_clean_venv_and_a_new_project_runs_it(archives, tmp_path):
    wheel, _ = archives
    # Only what the venv itself holds: not this checkout, not the tests' settings.
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV"}
    }
    in_venv = {"cwd": tmp_path, "env": env}
    run(sys.executable, "-m", "venv", "venv", **in_venv)
    python = str(tmp_path / "venv" / "bin" / "python")
    run(python, "-m", "pip", "install", "--quiet", str(wheel), **in_venv)
    found = run(python, "-c", "import django_dbtune; print(django_dbtune.__file__)", **in_venv)
    assert Path(found.stdout.strip()).is_relative_to(tmp_path / "venv")

    run(python, "-m", "django", "startproject", "mysite", ".", **in_venv)
    with (tmp_path / "mysite" / "settings.py").open("a") as settings:
        settings.write(
            'INSTALLED_APPS += ["django_dbtune"]\n'
            'MIDDLEWARE = ["django_dbtune.middleware.NPlusOneMiddleware", *MIDDLEWARE]\n'
            'ALLOWED_HOSTS = ["testserver"]\n'
        )
    checked = run(python, "manage.py", "check", **in_venv)
    assert "no issues" in checked.stdout
    # A request goes through the middleware: a missing page is a 404, not an import error.
    request = "from django.test import Client; print(Client().get('/missing/').status_code)"
    served = run(python, "manage.py", "shell", "-v", "0", "-c", request, **in_venv)
    assert served.stdout.strip() == "404"
