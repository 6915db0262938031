"""A workload recorded on another database vendor: its ORM reads are planned again here, its
raw SQL is counted as left out with the vendor named; and dbtune_report takes --allow-build."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from django_dbtune import workload
from tests.conftest import DB, suggest_workload
from tests.shop.models import Author, Book

OTHER = {"sqlite": "postgresql", "postgresql": "sqlite", "mysql": "postgresql"}
BUILDS = pytest.mark.django_db(transaction=DB == "mariadb")
"""MariaDB proves a workload only by building each index (--allow-build), which cannot run
inside a transaction (DDL commits there): the rows must be committed."""


def _record_elsewhere(path):
    """The reads of a page, recorded as if on the other vendor (its SQL is not valid here)."""
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}"))
        with connection.cursor() as cursor:  # raw SQL: no ORM detail to rebuild it from
            cursor.execute("SELECT id FROM shop_book WHERE summary = %s", ["3"])
    other = OTHER[connection.vendor]
    lines = []
    for line in path.read_text().splitlines():
        data = json.loads(line)
        data["vendor"] = other
        data["sql"] = data["sql"].replace("SELECT", "SELECT /* elsewhere */ ?!", 1)
        lines.append(json.dumps(data))
    path.write_text("\n".join(lines) + "\n")


def _suggest(path, *options):
    """MariaDB has no hypothetical indexes: there a build must be allowed."""
    allow = ["--allow-build"] if connection.vendor == "mysql" else []
    return suggest_workload(path, *allow, *options)


@pytest.fixture
def many_books(db):
    """Enough rows for PostgreSQL's planner to prefer an index to a scan."""
    author = Author.objects.create(name="A")
    Book.objects.bulk_create(
        [Book(title=f"title {i}", summary=str(i % 7), author=author) for i in range(20000)]
    )
    analyze = {"postgresql": "ANALYZE shop_book", "mysql": "ANALYZE TABLE shop_book"}
    with connection.cursor() as cursor:
        cursor.execute(analyze.get(connection.vendor, "ANALYZE"))


def _hypopg(installed):
    with connection.cursor() as cursor:
        verb = "CREATE EXTENSION IF NOT EXISTS" if installed else "DROP EXTENSION IF EXISTS"
        cursor.execute(f"{verb} hypopg")


@BUILDS
def test_orm_reads_recorded_on_another_vendor_are_planned_here(many_books, tmp_path):
    path = tmp_path / "workload.jsonl"
    _record_elsewhere(path)
    if connection.vendor == "postgresql":
        _hypopg(True)
    findings, err = _suggest(path)
    other = OTHER[connection.vendor]
    assert [f["fields"] for f in findings] == [["title"]]
    assert f"re-planned (1): reads recorded on {other}" in err
    assert f"left out (1): queries recorded on {other}, not {connection.vendor}" in err
    assert "raw SQL" in err


@BUILDS
def test_a_workload_with_only_raw_sql_from_another_vendor_is_not_silent(db, tmp_path):
    path = tmp_path / "workload.jsonl"
    with workload.record(path), connection.cursor() as cursor:
        cursor.execute("SELECT id FROM shop_book WHERE summary = %s", ["3"])
    other = OTHER[connection.vendor]
    path.write_text(
        path.read_text().replace(f'"vendor": "{connection.vendor}"', f'"vendor": "{other}"')
    )
    if connection.vendor == "postgresql":
        _hypopg(True)
    findings, err = _suggest(path)
    assert findings == []
    assert f"left out (1): queries recorded on {other}" in err


@pytest.mark.django_db(transaction=True)  # a real build cannot follow uncommitted inserts
def test_dbtune_report_takes_the_allow_build_it_advises(many_books, tmp_path):
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}"))
    output = tmp_path / "report.html"
    if connection.vendor == "postgresql":
        _hypopg(False)
    if connection.vendor != "sqlite":  # no HypoPG (MariaDB has none): a build must be allowed
        with pytest.raises(Exception, match="--allow-build"):
            call_command("dbtune_report", "shop", "--workload", str(path), "--output", str(output))
    err = StringIO()
    call_command(
        "dbtune_report",
        "shop",
        "--workload",
        str(path),
        "--allow-build",
        "--output",
        str(output),
        stdout=StringIO(),
        stderr=err,
    )
    page = output.read_text()
    assert "Proven from the recorded workload" in page
    assert "title" in page
