"""How much an index finding matters by how big its table is: a list page's query on an
empty table is not ``high``, one on a large table is, and the finding says which and why;
from the code and from a recorded workload alike."""

import json
import textwrap
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from django_dbtune import workload
from tests.conftest import suggest_workload
from tests.shop.models import Author as ShopAuthor
from tests.shop.models import Book
from tests.testapp.models import Shelf

LIST_PAGE = """
from tests.testapp.models import Shelf

def shelves(request):
    return Shelf.objects.filter(label=request.GET["label"]).order_by("built")[:20]
"""


def suggest(tmp_path, settings, **options):
    """suggest_indexes --format json on a project whose one view is a list page of Shelf:
    {(model, fields): finding}."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path), **options}
    (tmp_path / "views.py").write_text(textwrap.dedent(LIST_PAGE))
    out = StringIO()
    call_command("suggest_indexes", "testapp", "--format", "json", stdout=out, stderr=StringIO())
    return {(f["model"], tuple(f["fields"])): f for f in json.loads(out.getvalue())}


def analyze(*tables):
    statement = "ANALYZE TABLE" if connection.vendor == "mysql" else "ANALYZE"  # MariaDB's
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"{statement} {connection.ops.quote_name(table)}")


def create_table(model):
    """By the statements Django's migration runs: collected, then run (MariaDB's schema
    editor runs no DDL inside the test's transaction, which it would commit)."""
    with connection.schema_editor(collect_sql=True) as editor:
        editor.create_model(model)
    with connection.cursor() as cursor:
        for sql in editor.collected_sql:
            cursor.execute(sql)


def list_page(found):
    return found[("testapp.Shelf", ("label", "built"))]


@pytest.fixture
def fresh_estimates():
    """A test that fills and analyzes a table commits its rows (a rolled-back insert leaves
    PostgreSQL's table full of dead rows, which changes later tests' plans) and leaves no
    estimate behind: PostgreSQL writes ANALYZE's in place, outside any transaction, and
    ANALYZE of the emptied table takes SQLite's away."""
    yield
    Shelf.objects.all().delete()
    analyze("testapp_shelf")


@pytest.mark.django_db
def test_a_list_page_on_an_empty_table_is_medium_and_says_why(tmp_path, settings):
    analyze("testapp_shelf")  # an estimate left by another run must not count
    finding = list_page(suggest(tmp_path, settings))
    assert finding["severity"] == "medium"
    assert finding["message"].endswith(
        "Ranked medium: a request runs it behind a list page or once per item of a loop, "
        "but in this database the table holds no rows (counted), fewer than "
        "INDEX_SMALL_TABLE_ROWS (1,000): an index matters once it grows."
    )
    assert (finding["table_rows"], finding["table_rows_source"]) == (0, "count")


@pytest.mark.django_db
@pytest.mark.usefixtures("unindexed_foreign_keys")
def test_a_foreign_key_without_an_index_on_an_empty_table_is_medium(tmp_path, settings):
    found = suggest(tmp_path, settings)
    owner = found[("testapp.Note", ("owner",))]
    assert owner["kind"] == "missing_fk_index"
    assert owner["severity"] == "medium"
    assert "Ranked medium: " in owner["message"]
    assert "the table holds no rows (counted)" in owner["message"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_estimates")
@pytest.mark.parametrize("analyzed", [False, True], ids=["counted", "analyzed"])
def test_a_list_page_on_a_large_table_stays_high_with_its_size(tmp_path, settings, analyzed):
    Shelf.objects.bulk_create(
        Shelf(code=f"c{n}", room=f"r{n % 40}", row=n, label=f"l{n % 100}") for n in range(1500)
    )
    if analyzed:
        analyze("testapp_shelf")
    finding = list_page(suggest(tmp_path, settings))
    assert finding["severity"] == "high"
    if not analyzed or connection.vendor == "mysql":
        # Without the database's statistics, rows are counted up to the threshold only; on
        # MariaDB always: the rank reads no estimate there (InnoDB's TABLE_ROWS is one).
        assert (finding["table_rows"], finding["table_rows_source"]) == (1000, "count_limit")
        assert "on a table of at least 1,000 rows (counted up to 1,000)." in finding["message"]
        return
    estimate = "PostgreSQL's estimate" if connection.vendor == "postgresql" else "SQLite's"
    source = "pg_class.reltuples" if connection.vendor == "postgresql" else "sqlite_stat1"
    assert finding["table_rows_source"] == source
    assert finding["table_rows"] == pytest.approx(1500, rel=0.05)
    assert f"on a table of about {finding['table_rows']:,} rows ({estimate}" in finding["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("value", [0, None])
def test_the_size_rule_is_off_at_zero_or_none(tmp_path, settings, value):
    finding = list_page(suggest(tmp_path, settings, INDEX_SMALL_TABLE_ROWS=value))
    assert finding["severity"] == "high"
    assert finding["message"].endswith(
        "Ranked high: a request runs it behind a list page or once per item of a loop."
    )
    assert (finding["table_rows"], finding["table_rows_source"]) == (None, None)


@pytest.mark.django_db
def test_a_table_not_created_yet_ranks_by_where_alone_and_says_so(tmp_path, settings, undo_ddl):
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {connection.ops.quote_name('testapp_shelf')}")
    undo_ddl.append(lambda: create_table(Shelf))  # DDL commits on MariaDB
    finding = list_page(suggest(tmp_path, settings))
    assert finding["severity"] == "high"
    assert finding["message"].endswith(
        "Ranked high: a request runs it behind a list page or once per item of a loop; "
        "table size unknown (the table testapp_shelf is not in the database yet)."
    )
    assert (finding["table_rows"], finding["table_rows_source"]) == (None, None)


@pytest.mark.django_db
def test_a_small_table_under_a_lower_threshold_counts_as_large(tmp_path, settings):
    """The list page's table: on MariaDB too (InnoDB leaves no foreign key unindexed)."""
    analyze("testapp_shelf")  # an estimate left by another run must not count
    Shelf.objects.bulk_create(Shelf(code=f"c{n}", room="r", row=n) for n in range(3))
    finding = list_page(suggest(tmp_path, settings, INDEX_SMALL_TABLE_ROWS=3))
    assert finding["severity"] == "high"
    assert (finding["table_rows"], finding["table_rows_source"]) == (3, "count_limit")


@pytest.mark.usefixtures("unindexed_foreign_keys")
@pytest.mark.django_db
def test_a_composite_that_serves_a_foreign_key_gives_the_reason_of_its_higher_rank(
    tmp_path, settings
):
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path), "INDEX_SMALL_TABLE_ROWS": 0}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from tests.testapp.models import Book

            def sponsored(request):
                return Book.objects.filter(sponsor=request.user).order_by("title").first()
        """)
    )
    out = StringIO()
    call_command("suggest_indexes", "testapp", "--format", "json", stdout=out)
    [merged] = [f for f in json.loads(out.getvalue()) if f["fields"][0] == "sponsor"]
    assert (merged["fields"], merged["severity"]) == (["sponsor", "title"], "high")
    said, ranked = merged["message"].split(" Ranked ")  # one reason, at the end
    assert "It also serves the foreign key: Foreign key Book.sponsor" in said
    assert ranked == (
        "high: every join through the key, and every delete of a row it points to, "
        "reads rows by it."
    )


# --- Recorded workloads -----------------------------------------------------------------------


def suggest_from(path, settings, **options):
    settings.DBTUNE = {**settings.DBTUNE, **options}
    return suggest_workload(path)[0]


@pytest.mark.django_db(transaction=True)  # committed rows: see fresh_estimates
def test_a_proven_index_is_high_on_a_large_table_and_medium_under_the_threshold(
    postgres_only, tmp_path, settings
):
    author = ShopAuthor.objects.create(name="A")
    Book.objects.bulk_create(Book(title=f"title {i}", author=author) for i in range(20000))
    analyze("shop_book")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'")
        had_hypopg = cursor.fetchone() is not None
        cursor.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    try:
        [large] = suggest_from(path, settings)
        [small] = suggest_from(path, settings, INDEX_SMALL_TABLE_ROWS=100_000)
    finally:
        # The flush that ends the test empties the table (TRUNCATE: no rows, no estimate).
        if not had_hypopg:
            with connection.cursor() as cursor:
                cursor.execute("DROP EXTENSION hypopg")
    assert (large["kind"], large["severity"]) == ("workload_index", "high")
    rows = large["table_rows"]
    assert rows == pytest.approx(20000, rel=0.05)
    assert large["table_rows_source"] == "pg_class.reltuples"
    assert f"on a table of about {rows:,} rows (PostgreSQL's estimate)." in large["message"]
    assert small["severity"] == "medium"
    assert (
        f"but in this database the table holds about {rows:,} rows (PostgreSQL's estimate), "
        "fewer than INDEX_SMALL_TABLE_ROWS (100,000): an index matters once it grows."
    ) in small["message"]


@pytest.mark.django_db
def test_sqlites_full_scans_carry_the_tables_size(tmp_path, settings):
    if connection.vendor != "sqlite":
        pytest.skip("needs SQLite (its own report): run without DBTUNE_DB, SQLite is the default")
    author = ShopAuthor.objects.create(name="A")
    Book.objects.bulk_create(Book(title=f"t{i}", author=author) for i in range(30))
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        list(Book.objects.filter(title="t1"))
        list(Book.objects.filter(title="t2"))
    [scan] = suggest_from(path, settings)
    assert (scan["kind"], scan["severity"]) == ("workload_scan", "medium")
    assert scan["message"].endswith("Ranked medium: called more than once.")
    assert (scan["table_rows"], scan["table_rows_source"]) == (30, "count")
