"""The README and the docs say what the code does: every setting documented (and only real
ones), every check id documented, no shipped feature called unfinished, every command with a
description, and the changelog naming every user-facing part."""

import re
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

from django_dbtune.conf import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.rst"))]
UNFINISHED = re.compile(
    r"being built|not yet available|\(in development\)|in development:|coming soon|"
    r"work in progress|not implemented yet",
    re.IGNORECASE,
)


def test_every_setting_is_documented_and_every_documented_setting_exists():
    page = (DOCS / "settings.rst").read_text()
    summary = page.split(".. code-block:: python", 1)[1].split("\n\n.. ", 1)[0]
    in_summary = re.findall(r'^\s+"([A-Z_]+)":', summary, re.M)
    headings = re.findall(r"^``([A-Z_]+)``\n", page, re.M)
    assert sorted(in_summary) == sorted(OPTIONS), "the summary at the top of settings.rst"
    assert sorted(headings) == sorted(OPTIONS), "a section per setting in settings.rst"


def test_every_check_id_is_documented_and_every_documented_id_exists():
    code = "".join(path.read_text() for path in (ROOT / "django_dbtune").glob("*.py"))
    in_code = set(re.findall(r'"(dbtune\.[EW]\d{3})"', code))
    documented = set(
        re.findall(r"^``(dbtune\.[EW]\d{3})``", (DOCS / "checks.rst").read_text(), re.M)
    )
    assert in_code and in_code == documented


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_no_page_calls_a_shipped_feature_unfinished(page):
    found = [
        f"{page.name}:{number}: {line.strip()}"
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if UNFINISHED.search(line)
    ]
    assert found == []


def test_every_command_says_what_it_does():
    ours = [name for name, app in get_commands().items() if app == "django_dbtune"]
    assert len(ours) >= 6
    for name in ours:
        command = load_command_class("django_dbtune", name)
        assert command.help.strip(), f"manage.py help {name} has no description"


def test_the_changelog_names_every_user_facing_part():
    changelog = (DOCS / "changelog.rst").read_text()
    for part in (
        "suggest_indexes",
        "index_health",
        "--workload",
        "dbtune_nplusone",
        "dbtune_report",
        "dbtune_capture",
        "dbtune_cache",
        "NPlusOnePanel",
        "django_dbtune.testing",
        "WORKLOAD_FILE",
    ):
        assert part in changelog, part


def test_the_readme_is_for_users_first_and_its_links_work_on_pypi():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert links and [link for link in links if not link.startswith("https://")] == []
    first_block = readme.split("```", 2)[1]
    assert "pip install" in first_block and "./scripts/" not in first_block
    assert 'pip install -e "path/to/django-dbtune' in readme  # from a clone, before PyPI
    users, contributors = readme.split("## Working on django-dbtune", 1)
    assert '"django_dbtune.middleware.NPlusOneMiddleware"' in users  # shows something at once
    assert "./scripts/demo" in contributors and "./scripts/test" in contributors
