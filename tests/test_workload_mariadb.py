"""Workload advice on MariaDB: no hypothetical indexes, and DDL commits, so each candidate is
built online and dropped (only with --allow-build, never on a production alias), and the reads
recorded without values are planned with values read from the table."""

import json
import os
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_dbtune import workload
from django_dbtune.advisor.digests import runnable
from django_dbtune.advisor.table_values import TableValues
from tests.conftest import suggest_workload as _suggest
from tests.shop.models import Author, Book

# Built indexes commit on MariaDB: the rows must be committed too, and go at the end.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("mariadb_only")]


@pytest.fixture
def recorded(tmp_path):
    author = Author.objects.create(name="A")
    Book.objects.bulk_create(
        [Book(title=f"title {i}", summary=str(i % 7), author=author) for i in range(20000)]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE shop_book")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}"))
        list(Book.objects.filter(author=author))  # InnoDB's own FK index serves it
        Book.objects.filter(title="title 1").update(summary="a write: never planned")
    return path


def _indexes():
    with connection.cursor() as cursor:
        cursor.execute("SHOW INDEX FROM shop_book")
        return sorted((row[2], row[3], row[4]) for row in cursor.fetchall())


def _trial_indexes():
    with connection.cursor() as cursor:
        cursor.execute("SHOW INDEX FROM shop_book")
        return [row[2] for row in cursor.fetchall() if row[2].startswith("dbtune_trial_")]


def test_without_allow_build_the_message_says_why_and_what_to_pass(recorded):
    with pytest.raises(CommandError, match=r"no hypothetical indexes\. Pass --allow-build"):
        _suggest(recorded)


def test_allow_build_is_refused_on_a_production_alias(recorded):
    refused = pytest.raises(CommandError, match=r"refused on database 'default'.*PRODUCTION")
    with override_settings(DBTUNE={"PRODUCTION_DATABASES": ["default"]}), refused:
        _suggest(recorded, "--allow-build")
    assert _trial_indexes() == []


def test_the_index_is_built_online_the_reads_measured_with_table_values_and_dropped(recorded):
    with CaptureQueriesContext(connection) as ran:
        findings, err = _suggest(recorded, "--allow-build")
    assert [(f["kind"], f["fields"]) for f in findings] == [("workload_index", ["title"])]
    message = findings[0]["message"]
    assert "built online and dropped (ANALYZE: each read ran" in message
    name = findings[0]["index"]["name"]
    # The plans before and after, in MariaDB's words, with the rows each read: every row of
    # the table without the index, the one it finds with it.
    plans = rf"ALL on shop_book rows read 20,000 -> ref on shop_book using {name} rows read 1\."
    assert re.search(plans, message), message
    assert "rows read fall by 100%" in message
    assert "indexes built online and dropped (--allow-build)" in err
    sqls = [q["sql"] for q in ran.captured_queries]
    builds = [sql for sql in sqls if "CREATE INDEX" in sql]
    assert builds and all("ALGORITHM=INPLACE LOCK=NONE" in sql for sql in builds)
    drops = [sql for sql in sqls if "DROP INDEX" in sql]
    assert len(drops) == len(builds) and all("ALGORITHM=INPLACE, LOCK=NONE" in s for s in drops)
    # Each recorded read ran with a title the table holds; the recorded write never did.
    measured = [sql for sql in sqls if "ANALYZE FORMAT=JSON" in sql]
    assert measured and all(" SELECT " in sql and "UPDATE" not in sql for sql in measured)
    assert any(re.search(r"`title` = 'title \d+'", sql) for sql in measured)
    assert not [sql for sql in sqls if sql.startswith("UPDATE")]
    assert _trial_indexes() == []


def test_a_read_that_locks_rows_is_planned_never_run(recorded, tmp_path):
    path = tmp_path / "locking.jsonl"
    with workload.record(path), transaction.atomic():
        for i in range(3):
            list(Book.objects.select_for_update().filter(title=f"title {i}"))
    with CaptureQueriesContext(connection) as ran:
        findings, _ = _suggest(path, "--allow-build")
    assert [f["fields"] for f in findings] == [["title"]]
    assert "cost" in findings[0]["message"] and "rows read" not in findings[0]["message"]
    assert not [q for q in ran.captured_queries if "ANALYZE FORMAT=JSON" in q["sql"]]


def test_a_binary_prefix_search_gets_no_index_since_the_planner_would_not_use_one(tmp_path):
    """``startswith`` is ``LIKE BINARY`` on MariaDB, which reads no B-tree: the planner says
    so of the plain index tried (PostgreSQL's pattern operator classes do not exist here)."""
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"t{i:05}", author=author) for i in range(20000)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE shop_book")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        list(Book.objects.filter(title__startswith="t0001"))
    with CaptureQueriesContext(connection) as ran:
        found, err = _suggest(path, "--allow-build")
    assert found == []
    assert "left out (1): candidates the planner would not use" in err
    built = [q["sql"] for q in ran.captured_queries if "CREATE INDEX" in q["sql"]]
    assert len(built) == 1 and "(`title`)" in built[0]
    assert any(re.search(r"LIKE BINARY 't\d{5}%'", q["sql"]) for q in ran.captured_queries)
    assert _trial_indexes() == []


def test_the_foreign_key_index_innodb_drops_for_a_trial_is_built_again(recorded, tmp_path):
    """A trial leading with ``author_id`` makes InnoDB drop the index it made for the
    foreign key, and refuse to drop the trial: the table is left as it was all the same."""
    before = _indexes()
    author = Author.objects.get()
    path = tmp_path / "by_author.jsonl"
    with workload.record(path):
        for _ in range(3):
            list(Book.objects.filter(author=author, title="title 3"))
    with CaptureQueriesContext(connection) as ran:
        _, err = _suggest(path, "--allow-build")
    assert "could not build" not in err, err
    leading = [q["sql"] for q in ran.captured_queries if "ON `shop_book` (`author_id`" in q["sql"]]
    assert any("dbtune_trial_" in sql for sql in leading)  # the trial
    assert any("_fk_shop_author_id` ON" in sql for sql in leading)  # InnoDB's, again
    assert _indexes() == before


# --- performance_schema's statement digests ---------------------------------------------------


def _performance_schema():
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@performance_schema")
        return bool(cursor.fetchone()[0])


def _suggest_from_digests(*options):
    """``suggest_indexes shop --from-performance-schema --format json``: (findings, stderr)."""
    out, err = StringIO(), StringIO()
    call_command(
        "suggest_indexes",
        "shop",
        "--from-performance-schema",
        "--format",
        "json",
        *options,
        stdout=out,
        stderr=err,
    )
    return json.loads(out.getvalue()), err.getvalue()


def test_a_digest_is_made_a_statement_django_could_have_run():
    digest = "SELECT `a` . `b` FROM `a` WHERE `a` . `c` = ? AND `a` . `d` IN (...) LIMIT ?"
    assert runnable(digest) == (
        "SELECT `a` . `b` FROM `a` WHERE `a` . `c` = %s AND `a` . `d` IN (%s) LIMIT %s"
    )
    assert runnable("SELECT `a` FROM `t` WHERE `b` = ? AND `c` ...").endswith("...")


def test_without_performance_schema_the_error_says_how_to_switch_it_on():
    if _performance_schema():
        pytest.skip("needs performance_schema off: run on a MariaDB server started without it")
    with pytest.raises(CommandError, match=r"add performance_schema = ON under \[mariadb\]"):
        _suggest_from_digests("--allow-build")


@pytest.fixture
def digests():
    if not _performance_schema():
        message = "needs performance_schema = ON (scripts/mariadb_setup switches it on)"
        if os.environ.get("DBTUNE_CI"):
            pytest.fail(message)
        pytest.skip(message)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE TABLE performance_schema.events_statements_summary_by_digest")
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE performance_schema.setup_consumers SET ENABLED = 'YES' "
            "WHERE NAME = 'statements_digest'"
        )


def test_the_digests_are_a_workload_proven_by_building(digests):
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"title {i}", author=author) for i in range(20000)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE shop_book")
    for i in range(4):
        list(Book.objects.filter(title=f"title {i}").order_by("-id")[:5])
        list(Book.objects.filter(id__in=[1, 2, 3]))  # the primary key serves it
    findings, err = _suggest_from_digests("--allow-build")
    assert [f["fields"] for f in findings] == [["title"]] or [f["fields"] for f in findings] == [
        ["title", "-id"]
    ], err
    finding = findings[0]
    assert finding["evidence"][0]["file"] == "performance_schema"
    assert "4 calls" in finding["message"]
    assert "on shop_book using PRIMARY rows read 20,000 -> ref on shop_book" in finding["message"]
    assert _trial_indexes() == []


def test_with_the_digest_consumer_off_the_error_says_how_to_switch_it_on(digests):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE performance_schema.setup_consumers SET ENABLED = 'NO' "
            "WHERE NAME = 'statements_digest'"
        )
    with pytest.raises(CommandError, match=r"statements_digest is off.*SET ENABLED = 'YES'"):
        _suggest_from_digests("--allow-build")


def test_a_placeholder_gets_a_value_of_median_frequency_not_the_most_common():
    author = Author.objects.create(name="A")
    counts = {"common": 300, "rare": 3, "typical": 30}
    Book.objects.bulk_create(
        [Book(title=t, summary=t, author=author) for t, n in counts.items() for _ in range(n)]
    )
    sql = "SELECT id FROM shop_book WHERE summary = %s AND author_id IN (%s) LIMIT 21"
    assert TableValues(connection).params(sql) == ["typical", author.pk]
    # A placeholder compared to no column leaves the read unplanned.
    assert TableValues(connection).params("SELECT id FROM shop_book WHERE LENGTH(%s) > 3") is None


def test_an_exists_and_a_date_lookup_under_use_tz_get_values_too():
    """exists() returns a placeholder (SELECT %s AS a); a date lookup compares CONVERT_TZ of
    the column: both used to leave the read unplanned, and every exists() out of the proof."""
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title="t", summary="s", author=author) for _ in range(3)])
    with CaptureQueriesContext(connection) as ran:
        Book.objects.filter(summary="s").exists()
    [exists] = [q["sql"] for q in ran.captured_queries if "LIMIT 1" in q["sql"]]
    sql = exists.replace("'s'", "%s").replace("SELECT 1 AS", "SELECT %s AS")
    assert "SELECT %s AS" in sql
    assert TableValues(connection).params(sql) == [1, "s"]
    converted = (
        "SELECT id FROM shop_book WHERE CONVERT_TZ(shop_book.summary, %s, %s) >= %s LIMIT 21"
    )
    assert TableValues(connection).params(converted) == ["UTC", "UTC", "s"]


def test_an_index_saving_a_few_hundred_rows_a_call_is_not_worth_its_writes(tmp_path):
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"title {i}", author=author) for i in range(900)])
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}"))
    findings, err = _suggest(path, "--allow-build")
    assert findings == []
    assert "left out (1): candidates saving fewer than 1,000 rows read per call" in err


def test_trial_indexes_an_interrupted_run_left_stop_the_next_with_their_drop(recorded):
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX dbtune_trial_7 ON shop_book (summary(10))")
    try:
        with pytest.raises(CommandError, match=r"interrupted run.*DROP INDEX `dbtune_trial_7`"):
            _suggest(recorded, "--allow-build")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX dbtune_trial_7 ON shop_book")


def test_a_table_that_cannot_be_put_back_stops_the_run_with_the_statements(recorded):
    """Another session holds the table's metadata lock while the trial is to be dropped:
    the run stops, and says what is left and the statement that removes it."""
    import MySQLdb

    settings = connection.settings_dict
    holder = MySQLdb.connect(
        host=settings["HOST"],
        port=int(settings["PORT"]),
        user=settings["USER"],
        password=settings["PASSWORD"],
        database=settings["NAME"],
    )
    from django_dbtune.advisor import online_build

    real_run = online_build._run

    def lock_then_run(conn, ddl, lock_seconds, seconds):
        if "DROP INDEX" in ddl:  # an open transaction that read the table holds its lock
            holder.cursor().execute("START TRANSACTION")
            holder.cursor().execute("SELECT COUNT(*) FROM shop_book")
            lock_seconds = 1  # (the cleanup would wait a minute)
        real_run(conn, ddl, lock_seconds, seconds)

    online_build._run = lock_then_run
    try:
        with pytest.raises(
            CommandError, match=r"could not be put back.*DROP INDEX `dbtune_trial_"
        ):
            _suggest(recorded, "--allow-build")
    finally:
        online_build._run = real_run
        holder.rollback()
        holder.close()
        for name in _trial_indexes():
            with connection.cursor() as cursor:
                cursor.execute(f"DROP INDEX {name} ON shop_book")


def test_a_lock_in_a_subquery_is_a_locking_read():
    from django_dbtune.sql import locks

    assert locks("SELECT a FROM t WHERE id IN (SELECT id FROM u WHERE b = %s FOR UPDATE)")
    assert not locks("SELECT a FROM t WHERE id IN (SELECT id FROM u WHERE b = %s)")


def test_digests_read_on_one_alias_are_proven_on_another(recorded):
    with pytest.raises(CommandError, match=r"--digests-from 'nowhere' is not a database alias"):
        _suggest_from_digests("--allow-build", "--digests-from", "nowhere")
    with pytest.raises(CommandError, match=r"only applies with --from-performance-schema"):
        _suggest(recorded, "--digests-from", "default")


def test_a_workload_of_exists_calls_is_proven_too(tmp_path):
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"title {i}", author=author) for i in range(20000)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE shop_book")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            Book.objects.filter(title=f"title {i}").exists()
    findings, err = _suggest(path, "--allow-build")
    assert [f["fields"] for f in findings] == [["title"]], err
    assert "could not plan" not in err


def test_a_candidate_that_cannot_be_built_is_named_with_the_reason(tmp_path):
    author = Author.objects.create(name="A")
    Book.objects.bulk_create(
        [Book(title=f"title {i}", summary=f"s {i}", author=author) for i in range(5000)]
    )
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(3):
            list(Book.objects.filter(summary=f"s {i}", title=f"title {i}"))
    _, err = _suggest(path, "--allow-build")
    # (A TEXT column among others: MariaDB's key is too long, error 1071.)
    assert "could not build: Book(summary, title) ((1071," in err, err
