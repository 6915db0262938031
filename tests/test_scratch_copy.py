"""Workload advice proven on a sampled scratch copy of each table (MariaDB and MySQL): the
project's tables are only read; the copy is built on, measured and dropped."""

import re

import pytest
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_dbtune import workload
from django_dbtune.advisor import proof
from django_dbtune.advisor.proof import ProofError
from django_dbtune.advisor.scratch_copy import DEFAULT_ROWS
from django_dbtune.schema import model_schemas
from tests.conftest import runtime_alias, suggest_workload
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


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("mariadb_only")
def test_refused_on_a_production_alias(recorded):
    refused = pytest.raises(CommandError, match=r"--scratch-copy is refused on database")
    with override_settings(DBTUNE={"PRODUCTION_DATABASES": ["default"]}), refused:
        suggest_workload(recorded, "--scratch-copy")
    assert _scratch_tables() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("mariadb_only")
def test_a_read_with_a_limit_is_not_scaled(tmp_path):
    """exists() stops at the first row it finds, on a sample as on the whole table: its rows
    read are the sample's, or an index saving a few rows would look like one saving many."""
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"title {i}", author=author) for i in range(20000)])
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(3):
            Book.objects.filter(title=f"title {i}").exists()
    found, _ = suggest_workload(path, "--scratch-copy", "--scratch-rows", "5000")
    for finding in found:
        before = re.search(r"ALL on shop_book rows read ([\d,]+) ->", finding["message"])
        assert before and int(before[1].replace(",", "")) <= 5000, finding["message"]


def _scratch_tables():
    with connection.cursor() as cursor:
        cursor.execute("SHOW TABLES LIKE 'dbtune\\_scratch\\_%'")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("mariadb_only")
def test_the_index_is_proven_on_a_sample_and_the_table_is_only_read(recorded):
    before = _indexes()
    with CaptureQueriesContext(connection) as ran:
        findings, err = suggest_workload(recorded, "--scratch-copy", "--scratch-rows", "5000")
    assert [(f["kind"], f["fields"]) for f in findings] == [("workload_index", ["title"])]
    message = findings[0]["message"]
    copy = r"a scratch copy of shop_book \(a sample of ([\d,]+) of its 20,000 rows"
    sample = re.search(copy, message)
    assert sample, message
    copied = int(sample[1].replace(",", ""))
    assert 4000 < copied < 6000  # about the 5,000 asked for, chosen by the key's hash
    # The plans read as the table's, its rows read scaled from the sample's to the table's.
    name = findings[0]["index"]["name"]
    plans = rf"ALL on shop_book rows read 20,000 -> ref on shop_book using {name} rows read"
    assert re.search(plans, message), message
    assert "dbtune_scratch" not in message
    assert "scaled by 4.0, by reads without a LIMIT" in message
    assert "candidates tried on a scratch copy of shop_book (a sample of" in err
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
def test_copies_an_interrupted_run_left_stop_the_next_and_a_running_ones_do_not(recorded):
    import MySQLdb  # (mysqlclient: installed where the tests run on MariaDB)

    settings = connection.settings_dict
    running = MySQLdb.connect(
        host=settings["HOST"],
        port=int(settings["PORT"] or 3306),
        user=settings["USER"],
        password=settings["PASSWORD"],
        database=settings["NAME"],
    )
    with running.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        (live,) = cursor.fetchone()
    gone = "dbtune_scratch_999999999_1"  # its run's connection is gone
    in_use = f"dbtune_scratch_{live}_1"  # another run's, going on
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {gone} LIKE shop_book")
        cursor.execute(f"CREATE TABLE {in_use} LIKE shop_book")
    try:
        drop = re.escape(f"drop them first: DROP TABLE `{gone}`;")
        with pytest.raises(CommandError, match=drop) as refused:
            suggest_workload(recorded, "--scratch-copy")
        assert in_use not in str(refused.value)
        assert sorted(_scratch_tables()) == sorted([gone, in_use])  # left for the user
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {gone}")
        findings, _ = suggest_workload(recorded, "--scratch-copy")  # beside the other run
        assert [f["fields"] for f in findings] == [["title"]]
        assert _scratch_tables() == [in_use]
    finally:
        running.close()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {gone}, {in_use}")


@pytest.mark.django_db
def test_bad_combinations_are_clear_errors(tmp_path):
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        list(Book.objects.filter(title="x"))
    with pytest.raises(CommandError, match=r"not both"):
        suggest_workload(path, "--scratch-copy", "--allow-build")
    with pytest.raises(CommandError, match=r"not a positive whole number"):
        suggest_workload(path, "--scratch-copy", "--scratch-rows", "0")
    with pytest.raises(CommandError, match=r"--scratch-rows only applies with --scratch-copy"):
        suggest_workload(path, "--scratch-rows", "10")
    if connection.vendor != "mysql":
        with pytest.raises(CommandError, match=r"--scratch-copy is for MariaDB and MySQL"):
            suggest_workload(path, "--scratch-copy")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("mariadb_only")
def test_a_user_who_may_not_index_gets_an_error_not_no_findings(recorded):
    """scripts/mariadb_setup's dbtune_noindex may create, fill and drop tables, not index
    them: every candidate would fail to build, and "no findings" would be a false answer."""
    with runtime_alias("noindex", USER="dbtune_noindex", PASSWORD="dbtune") as alias:
        schemas = {s.label: s for s in model_schemas(["shop"], alias)}
        refused = pytest.raises(ProofError, match=r"CREATE, DROP, INSERT and INDEX privileges")
        with refused:
            proof.prove(workload.read(recorded), schemas, alias, scratch_rows=DEFAULT_ROWS)
    assert _scratch_tables() == []
