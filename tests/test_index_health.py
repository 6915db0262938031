"""manage.py index_health and the connection-settings checks."""

import json
import os
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from tests.shop.models import Author, Book

pytestmark = pytest.mark.django_db(transaction=True)


def _health(*options):
    out = StringIO()
    call_command("index_health", "shop", "--format", "json", *options, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def settings_dict():
    saved = dict(connection.settings_dict)
    yield connection.settings_dict
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)


def test_on_any_database_the_report_has_its_findings_as_json():
    report = _health()
    assert report["vendor"] == connection.vendor
    assert isinstance(report["findings"], list)
    if connection.vendor == "sqlite":
        assert report["tables"] == [] and report["stats_reset"] is None


def _performance_schema():
    if connection.vendor != "mysql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@performance_schema")
        return bool(cursor.fetchone()[0])


def test_without_usage_statistics_the_text_says_unused_indexes_were_not_looked_for():
    out = StringIO()
    call_command("index_health", "shop", stdout=out)
    read = connection.vendor == "postgresql" or _performance_schema()
    said = "unused indexes are not looked for" in out.getvalue()
    assert said is not read, out.getvalue()
    assert _health()["usage_statistics"] is read


@pytest.mark.usefixtures("mariadb_only")
def test_on_mariadb_the_sizes_come_from_information_schema_and_no_scans_are_made_up():
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"t{i}", author=author) for i in range(50)])
    report = _health()
    tables = {table["table"]: table for table in report["tables"]}
    assert tables["shop_book"]["table_bytes"] > 0
    assert tables["shop_book"]["seq_scans"] is None
    indexes = {(index["table"], index["name"]): index for index in report["indexes"]}
    primary = indexes["shop_book", "PRIMARY"]
    assert primary["bytes"] > 0 and primary["primary"]
    # Counted by performance_schema when it is on; else unknown, never a made-up zero.
    assert isinstance(primary["scans"], int) if _performance_schema() else primary["scans"] is None
    assert not [f for f in report["findings"] if f["kind"] == "unused_index"]
    out = StringIO()
    call_command("index_health", "shop", stdout=out)
    text = out.getvalue()
    assert "Tables, largest first:" in text and "Indexes, largest first:" in text
    # Every table has a PRIMARY: each is named with its table, and what is counted is said.
    assert "shop_book.PRIMARY" in text and "shop_author.PRIMARY" in text
    if _performance_schema():
        assert " rows read" in text and " scans" not in text.split("Indexes, largest first:")[1]


@pytest.mark.usefixtures("mariadb_only")
def test_on_mariadb_without_performance_schema_the_report_says_how_to_switch_it_on():
    if _performance_schema():
        pytest.skip("needs performance_schema off: run on a MariaDB server started without it")
    out = StringIO()
    call_command("index_health", "shop", stdout=out)
    assert "add performance_schema = ON under [mariadb]" in out.getvalue()
    assert " - scans" in out.getvalue()


@pytest.fixture
def mariadb_indexes(mariadb_only):
    """Indexes made by hand, and the table I/O instrument: as they were afterwards."""
    if not _performance_schema():
        message = "needs performance_schema = ON (scripts/mariadb_setup switches it on)"
        if os.environ.get("DBTUNE_CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield
    with connection.cursor() as cursor:
        for name in ("shop_book_summary_unused", "shop_book_title_used"):
            cursor.execute(f"DROP INDEX IF EXISTS {name} ON shop_book")
        cursor.execute(
            "UPDATE performance_schema.setup_instruments SET ENABLED = 'YES', TIMED = 'YES' "
            "WHERE NAME = 'wait/io/table/sql/handler'"
        )


def test_on_mariadb_unused_indexes_come_from_performance_schema(mariadb_indexes, settings):
    settings.DBTUNE = {"UNUSED_INDEX_MIN_DAYS": 0}  # a fresh test database
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"t{i}", author=author) for i in range(2000)])
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX shop_book_summary_unused ON shop_book (summary)")
        cursor.execute("CREATE INDEX shop_book_title_used ON shop_book (title)")
    for i in range(3):
        list(Book.objects.filter(title=f"t{i}"))
    report = _health()
    assert report["usage_statistics"] is True
    assert "server started" in report["stats_window"]
    scans = {index["name"]: index["scans"] for index in report["indexes"]}
    assert scans["shop_book_title_used"] >= 3 and scans["shop_book_summary_unused"] == 0
    (unused,) = [f for f in report["findings"] if f["kind"] == "unused_index"]
    assert unused["message"].startswith("Index shop_book_summary_unused on shop_book")
    # The reversible trial first, and its undo (MariaDB 10.6+).
    alter = "ALTER TABLE `shop_book` ALTER INDEX `shop_book_summary_unused`"
    assert f"{alter} IGNORED" in unused["advice"] and f"{alter} NOT IGNORED" in unused["advice"]
    # With the table I/O instrument off, nothing is counted: none is called unused.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE performance_schema.setup_instruments SET ENABLED = 'NO' "
            "WHERE NAME = 'wait/io/table/sql/handler'"
        )
    report = _health()
    assert report["usage_statistics"] is False
    assert "instrument wait/io/table/sql/handler is off" in report["stats_window"]
    assert not [f for f in report["findings"] if f["kind"] == "unused_index"]


def test_on_mariadb_an_index_of_a_table_altered_since_is_not_called_unused(
    mariadb_indexes, settings
):
    """Any ALTER TABLE (a migration, suggest_indexes --allow-build's trial index) starts
    MariaDB's counts of the table's index reads again: a heavily read index reads 0 after
    it, though the server has been up long enough."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
        uptime = float(cursor.fetchone()[1])
    if uptime < 20:
        pytest.skip("needs a MariaDB server up for 20 s or more: run it again")
    # The server's statistics cover the period asked for; the table's, just altered, not.
    settings.DBTUNE = {"UNUSED_INDEX_MIN_DAYS": uptime / 2 / 86400}
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX shop_book_summary_unused ON shop_book (summary)")
    report = _health()
    assert "server started" in report["stats_window"]
    assert not [f for f in report["findings"] if f["kind"] == "unused_index"]
    (kept,) = [i for i in report["indexes"] if i["name"] == "shop_book_summary_unused"]
    assert "when shop_book was last altered" in kept["kept"]


@pytest.fixture
def extra_indexes():
    """Indexes made by hand: dropped afterwards, since these tests commit."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS shop_book_summary_unused, shop_book_title_broken")


def test_unused_invalid_and_scanned_indexes_on_postgresql(postgres_only, extra_indexes, settings):
    settings.DBTUNE = {"UNUSED_INDEX_MIN_DAYS": 0}  # statistics of a fresh test database
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"t{i}", author=author) for i in range(12000)])
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX shop_book_summary_unused ON shop_book (summary)")
        cursor.execute("CREATE INDEX shop_book_title_broken ON shop_book (title)")
        # What a failed CREATE INDEX CONCURRENTLY leaves: an index marked invalid.
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'shop_book_title_broken'::regclass"
        )
        cursor.execute("ANALYZE shop_book")
    for _ in range(3):
        list(Book.objects.filter(title="t1"))  # sequential scans
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    report = _health()
    kinds = {(f["kind"], f["message"].split(" ")[1]) for f in report["findings"]}
    assert ("unused_index", "shop_book_summary_unused") in kinds
    assert ("invalid_index", "shop_book_title_broken") in kinds
    assert ("unused_index", "shop_book_title_broken") not in kinds
    assert "(since " in next(
        f["message"] for f in report["findings"] if f["kind"] == "unused_index"
    )
    invalid = next(f for f in report["findings"] if f["kind"] == "invalid_index")
    assert "DROP INDEX CONCURRENTLY shop_book_title_broken" in invalid["advice"]
    scanned = [f for f in report["findings"] if f["kind"] == "sequential_scans"]
    assert [f["model"] for f in scanned] == ["shop.Book"]
    book_table = next(t for t in report["tables"] if t["table"] == "shop_book")
    assert book_table["rows"] == 12000 and book_table["index_bytes"] > 0
    primary = next(i for i in report["indexes"] if i["name"] == "shop_book_pkey")
    assert primary["primary"] and "shop_book_pkey" not in json.dumps(
        [f for f in report["findings"] if f["kind"] == "unused_index"]
    )
    text = StringIO()
    call_command("index_health", "shop", stdout=text)
    assert "statistics" in text.getvalue() and "INVALID" in text.getvalue()


def test_connection_settings_that_cost_every_request(settings_dict, postgres_only):
    settings_dict.update(CONN_MAX_AGE=0, OPTIONS={})
    (finding,) = [f for f in _health()["findings"] if f["model"] == "settings.DATABASES"]
    assert finding["kind"] == "connection_per_request"
    assert '"pool": True' in finding["advice"] and "CONN_MAX_AGE = 600" in finding["advice"]
    settings_dict.update(CONN_MAX_AGE=600, CONN_HEALTH_CHECKS=False)
    (finding,) = [f for f in _health()["findings"] if f["model"] == "settings.DATABASES"]
    assert finding["kind"] == "connection_health_checks"
    settings_dict.update(CONN_HEALTH_CHECKS=True)
    assert not [f for f in _health()["findings"] if f["model"] == "settings.DATABASES"]
    from django_dbtune.advisor.connection_settings import connection_findings

    options = settings_dict["OPTIONS"]
    settings_dict.update(CONN_MAX_AGE=0, OPTIONS={"pool": True})
    try:  # no new connection is opened meanwhile (this machine may lack psycopg_pool)
        assert connection_findings("default") == []
    finally:
        settings_dict["OPTIONS"] = options


def test_the_same_as_a_system_check_under_the_database_tag(settings_dict, postgres_only):
    from django.core.checks import run_checks

    settings_dict.update(CONN_MAX_AGE=0, OPTIONS={})
    ids = [m.id for m in run_checks(databases=["default"], include_deployment_checks=False)]
    assert "dbtune.W004" in ids
    assert "dbtune.W004" not in [m.id for m in run_checks(databases=[])]  # only with --database


def test_bad_input_is_a_clear_error():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no database 'nope'"):
        call_command("index_health", "--database", "nope")
    with pytest.raises(CommandError, match="No installed app with label 'nope'"):
        call_command("index_health", "nope")


def test_check_exits_with_status_1_while_findings_remain():
    out = StringIO()
    with pytest.raises(SystemExit) as exit_status:
        call_command("index_health", "publisher", "--check", stdout=out)
    assert exit_status.value.code == 1
    assert "publisher_account_platform_idx" in out.getvalue()  # KNOWN_ISSUES.md, IDX-9
