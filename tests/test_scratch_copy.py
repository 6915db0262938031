"""Workload advice proven on a sampled scratch copy of each table (MariaDB and MySQL): the
project's tables are only read; the copy is built on, measured and dropped."""

import re

import pytest
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_dbtune import workload
from tests.conftest import suggest_workload
from tests.shop.models import Author, Book


@pytest.fixture
def recorded(tmp_path):
    author = Author.objects.create(name="A")
    Book.objects.bulk_create(
        [Book(title=f"title {i % 4000}", author=author) for i in range(20000)]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE shop_book")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}"))
        # A join: the author table is read as it is, only the book table is a copy.
        list(Book.objects.filter(title="title 7", author__name="A"))
    return path


def _indexes(table="shop_book"):
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW INDEX FROM {table}")
        return sorted(row[2:5] for row in cursor.fetchall())


def _scratch_tables():
    with connection.cursor() as cursor:
        cursor.execute("SHOW TABLES LIKE 'dbtune\\_scratch\\_%'")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("mariadb_only")
def test_the_index_is_proven_on_a_sample_and_the_table_is_only_read(recorded):
    before = _indexes()
    # Even where --allow-build is refused: the project's tables are never built on.
    production = override_settings(DBTUNE={"PRODUCTION_DATABASES": ["default"]})
    with production, CaptureQueriesContext(connection) as ran:
        findings, err = suggest_workload(recorded, "--scratch-copy", "5000")
    assert [(f["kind"], f["fields"]) for f in findings] == [("workload_index", ["title"])]
    message = findings[0]["message"]
    copy = r"a sampled scratch copy of shop_book \(([\d,]+) of its 20,000 rows"
    sample = re.search(copy, message)
    assert sample, message
    copied = int(sample[1].replace(",", ""))
    assert 4000 < copied < 6000  # about the 5,000 asked for, chosen by the key's hash
    # The plans read as the table's, its rows read scaled from the sample's to the table's.
    name = findings[0]["index"]["name"]
    plans = rf"ALL on shop_book rows read 20,000 -> ref on shop_book using {name} rows read"
    assert re.search(plans, message), message
    assert "dbtune_scratch" not in message
    assert "proven on a sampled scratch copy of shop_book" in err
    assert "indexes built on scratch copies of the tables (--scratch-copy)" in err
    # Nothing was built on, written to or locked in the project's tables.
    sqls = [q["sql"] for q in ran.captured_queries]
    ddl = [s for s in sqls if re.match(r"\s*(CREATE|DROP|ALTER|INSERT|UPDATE|DELETE)", s)]
    assert ddl and all("dbtune_scratch_" in s for s in ddl), ddl
    assert not [s for s in sqls if "FOR UPDATE" in s or "LOCK IN SHARE MODE" in s]
    # The join's other table was read as it is: no copy of it.
    assert not [s for s in sqls if "CREATE TABLE" in s and "shop_author" in s]
    assert _indexes() == before
    assert _scratch_tables() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("mariadb_only")
def test_a_table_within_the_sample_size_is_copied_whole_and_nothing_is_scaled(recorded):
    findings, _ = suggest_workload(recorded, "--scratch-copy")
    assert [f["fields"] for f in findings] == [["title"]]
    assert "a scratch copy of shop_book (all its 20,000 rows)" in findings[0]["message"]
    assert "scaled" not in findings[0]["message"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("mariadb_only")
def test_copies_an_interrupted_run_left_stop_the_next_with_their_drop(recorded):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE dbtune_scratch_1 LIKE shop_book")
    try:
        drop = re.escape("drop them first: DROP TABLE `dbtune_scratch_1`;")
        with pytest.raises(CommandError, match=drop):
            suggest_workload(recorded, "--scratch-copy")
        assert _scratch_tables() == ["dbtune_scratch_1"]  # left for the user to look at
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE dbtune_scratch_1")


@pytest.mark.django_db
def test_bad_combinations_are_clear_errors(tmp_path):
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        list(Book.objects.filter(title="x"))
    with pytest.raises(CommandError, match=r"not both"):
        suggest_workload(path, "--scratch-copy", "--allow-build")
    with pytest.raises(CommandError, match=r"not a positive whole number"):
        suggest_workload(path, "--scratch-copy", "0")
    if connection.vendor != "mysql":
        with pytest.raises(CommandError, match=r"--scratch-copy is for MariaDB and MySQL"):
            suggest_workload(path, "--scratch-copy")
