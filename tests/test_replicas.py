"""A primary and its replica: each node counts only the queries it ran, so index_health
reports an index only the replica's queries use as used, and the statements only the replica
ran are a workload too. Against the streaming replica that scripts/postgres_setup starts on
127.0.0.1:5433."""

import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections

from django_dbtune.advisor import proof
from django_dbtune.advisor.health import health
from django_dbtune.advisor.statements import merged, read_statements
from django_dbtune.advisor.workload_candidates import Outcome
from django_dbtune.schema import model_schemas
from tests.conftest import listening, runtime_alias
from tests.shop.models import Author, Book

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres_only")]

REPLICA_PORT = 5433


@pytest.fixture
def replica():
    listening(REPLICA_PORT, "a streaming replica", "scripts/postgres_setup")
    with runtime_alias("replica", PORT=str(REPLICA_PORT)) as alias:
        yield alias


@pytest.fixture
def summary_index():
    """Books and an index no query on the primary uses, replayed on the replica."""
    author = Author.objects.create(name="A")
    Book.objects.bulk_create(
        [Book(title=f"t{i}", summary=str(i), author=author) for i in range(500)]
    )
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX shop_book_summary_replica ON shop_book (summary)")
        cursor.execute("CREATE INDEX shop_book_nowhere ON shop_book (title, summary)")
        cursor.execute("SELECT pg_current_wal_lsn()")
        (written,) = cursor.fetchone()
    yield written
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS shop_book_summary_replica, shop_book_nowhere")


def _replayed(alias, lsn):
    """Waits (at most 30 s) until the replica has replayed the primary's WAL up to ``lsn``."""
    for _ in range(300):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn])
            if cursor.fetchone()[0]:
                return
        time.sleep(0.1)
    pytest.fail(f"the replica did not replay the primary's WAL up to {lsn} in 30 s")


def _unused(report):
    return {f.message.split()[1] for f in report.findings if f.kind == "unused_index"}


def test_an_index_used_only_on_the_replica_is_used(replica, summary_index, settings):
    settings.DBTUNE = {"UNUSED_INDEX_MIN_DAYS": 0}  # statistics of a fresh test database
    _replayed(replica, summary_index)
    with connections[replica].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        assert cursor.fetchone() == (True,)  # a real standby, not the primary again
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SELECT id FROM shop_book WHERE summary = '7'")
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT 1")  # (the flush happens as this one ends)
    # The primary alone: no query used it there.
    assert "shop_book_summary_replica" in _unused(health(["shop"], "default"))
    report = health(["shop"], "default", [replica])
    assert "shop_book_summary_replica" not in _unused(report)
    [index] = [i for i in report.indexes if i.name == "shop_book_summary_replica"]
    assert index.scans_by_node["default"] == 0 and index.scans_by_node[replica] >= 1
    # Each node's statistics period is shown.
    assert "on 'default': statistics cover" in report.stats_window
    assert f"on '{replica}': statistics cover" in report.stats_window
    # An index no node used is still reported, and the advice says every node was counted.
    [nowhere] = [
        f for f in report.findings if f.kind == "unused_index" and "_nowhere" in f.message
    ]
    assert "has not been used by any query on any of 'default', 'replica'" in nowhere.message
    assert "The queries of every node given were counted" in nowhere.advice


def test_the_command_names_a_replica_it_cannot_read(settings):
    with pytest.raises(CommandError, match=r"There is no database 'nowhere'"):
        call_command("index_health", "shop", "--replica", "nowhere", stdout=StringIO())
    with pytest.raises(CommandError, match=r"--replica 'default' is --database itself"):
        call_command("index_health", "shop", "--replica", "default", stdout=StringIO())


def test_statements_only_the_replica_ran_are_proven_with_the_primarys(replica):
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"title {i}", author=author) for i in range(20000)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE shop_book")
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cursor.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
        cursor.execute("SELECT pg_current_wal_lsn()")
        (written,) = cursor.fetchone()
    _replayed(replica, written)
    for alias in ("default", replica):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_stat_statements_reset()")
    for i in range(5):  # the reads a read replica serves: none on the primary
        list(Book.objects.using(replica).filter(title=f"title {i}"))
    schemas = {s.label: s for s in model_schemas(["shop"], "default")}

    def statements(*aliases):
        return merged(*(read_statements(connections[a], schemas, Outcome()) for a in aliases))

    def on_books(shapes):
        return [s for s in shapes if "shop_book" in s.tables and '"title" =' in s.sql]

    assert on_books(statements("default")) == []
    shapes = statements("default", replica)
    [read] = on_books(shapes)
    assert read.calls == 5
    found = proof.prove(shapes, schemas, "default").findings
    assert [f.fields for f in found] == [("title",)]


def test_replica_without_a_statements_source_is_refused(settings):
    with pytest.raises(CommandError, match=r"--replica only applies with"):
        call_command("suggest_indexes", "shop", "--replica", "other", stdout=StringIO())


def test_a_standbys_statistics_count_from_its_own_start():
    """A standby's files are a copy of the primary's, and its counts begin when it starts: the
    period shown is never older than that, whatever the copied files' dates say."""
    from django_dbtune.advisor.unused_indexes import stats_window

    listening(REPLICA_PORT, "a streaming replica", "scripts/postgres_setup")
    # The postgres database predates the standby (it came with the base backup).
    with runtime_alias("replica_postgres", PORT=str(REPLICA_PORT), NAME="postgres") as alias:
        window = stats_window(connections[alias])
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_postmaster_start_time()")
            (started,) = cursor.fetchone()
    assert (window.source, window.since) == ("started", started)
    assert "server started: its counts begin then" in window.describe()
    with runtime_alias("primary_postgres", NAME="postgres") as alias:
        assert stats_window(connections[alias]).source != "started"
