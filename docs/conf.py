"""Sphinx configuration of django-dbtune's documentation."""

import os
import sys
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.typing_settings")
django.setup()

project = "django-dbtune"
author = "django-dbtune developers"
copyright = "2026, django-dbtune developers"
extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = "django-dbtune"
