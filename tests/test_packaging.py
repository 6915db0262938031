"""What a release publishes: the metadata PyPI shows, and archives that install and run."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


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
