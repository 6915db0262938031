"""Workload advice on MariaDB: no hypothetical indexes, and DDL commits, so each candidate is
built online and dropped (only with --allow-build, never on a production alias), and the reads
recorded without values are planned with values read from the table."""

import re

import pytest
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_dbtune import workload
from tests.shop.models import Author, Book
from tests.test_workload import _suggest

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


def test_the_index_is_built_online_planned_with_table_values_and_dropped(recorded):
    with CaptureQueriesContext(connection) as ran:
        findings, err = _suggest(recorded, "--allow-build")
    assert [(f["kind"], f["fields"]) for f in findings] == [("workload_index", ["title"])]
    message = findings[0]["message"]
    assert "built online and dropped, and values read from the table" in message
    name = findings[0]["index"]["name"]
    # The plans before and after, in MariaDB's words, with the index under its real name.
    plans = rf"ALL on shop_book cost [\d.]+ -> ref on shop_book using {name} cost"
    assert re.search(plans, message)
    assert "indexes built online and dropped (--allow-build)" in err
    sqls = [q["sql"] for q in ran.captured_queries]
    builds = [sql for sql in sqls if "CREATE INDEX" in sql]
    assert builds and all("ALGORITHM=INPLACE LOCK=NONE" in sql for sql in builds)
    drops = [sql for sql in sqls if "DROP INDEX" in sql]
    assert len(drops) == len(builds) and all("ALGORITHM=INPLACE, LOCK=NONE" in s for s in drops)
    # Each recorded read was planned with a title the table holds, never ANALYZEd or run.
    explains = [sql for sql in sqls if "EXPLAIN FORMAT=JSON" in sql]
    assert explains and all("ANALYZE" not in sql and "UPDATE" not in sql for sql in explains)
    assert any("'title 0'" in sql for sql in explains)
    assert _trial_indexes() == []


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
    assert any("LIKE BINARY 't00000%'" in q["sql"] for q in ran.captured_queries)
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
