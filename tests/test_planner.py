"""Reading the planner: plans stored from real runs (so the readers are tested everywhere),
parameter renumbering, and trial indexes rendered by Django on PostgreSQL."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_dbtune.advisor.planner import (
    TRIAL_PREFIX,
    TrialIndexes,
    dollar_parameters,
    index_sql,
    positional_parameters,
    read_postgresql,
    read_sqlite,
)
from django_dbtune.findings import ProposedIndex
from tests.shop.models import Book

# --- PostgreSQL plans, as EXPLAIN (FORMAT JSON) printed them (PostgreSQL 15, 20,000 books) ---

SEQ_SCAN = """[{"Plan": {"Node Type": "Seq Scan", "Parallel Aware": false,
  "Async Capable": false, "Relation Name": "shop_book", "Alias": "shop_book",
  "Startup Cost": 0.00, "Total Cost": 398.00, "Plan Rows": 1, "Plan Width": 29,
  "Filter": "((title)::text = 'title 5'::text)"}}]"""

BITMAP = """[{"Plan": {"Node Type": "Bitmap Heap Scan", "Parallel Aware": false,
  "Async Capable": false, "Relation Name": "shop_book", "Alias": "shop_book",
  "Startup Cost": 5.84, "Total Cost": 164.18, "Plan Rows": 200, "Plan Width": 29,
  "Recheck Cond": "(author_id = 3)",
  "Plans": [{"Node Type": "Bitmap Index Scan", "Parent Relationship": "Outer",
    "Parallel Aware": false, "Async Capable": false, "Index Name": "shop_book_author_id_idx",
    "Startup Cost": 0.00, "Total Cost": 5.79, "Plan Rows": 200, "Plan Width": 0,
    "Index Cond": "(author_id = 3)"}]}}]"""

JOIN = """[{"Plan": {"Node Type": "Nested Loop", "Parallel Aware": false,
  "Async Capable": false, "Join Type": "Inner", "Startup Cost": 5.84, "Total Cost": 168.43,
  "Plan Rows": 200, "Plan Width": 11, "Inner Unique": false,
  "Plans": [
    {"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Parallel Aware": false,
     "Async Capable": false, "Relation Name": "shop_author", "Alias": "a",
     "Startup Cost": 0.00, "Total Cost": 2.25, "Plan Rows": 1, "Plan Width": 11,
     "Filter": "((name)::text = 'a5'::text)"},
    {"Node Type": "Bitmap Heap Scan", "Parent Relationship": "Inner", "Parallel Aware": false,
     "Async Capable": false, "Relation Name": "shop_book", "Alias": "b",
     "Startup Cost": 5.84, "Total Cost": 164.18, "Plan Rows": 200, "Plan Width": 16,
     "Recheck Cond": "(author_id = a.id)",
     "Plans": [{"Node Type": "Bitmap Index Scan", "Parent Relationship": "Outer",
       "Parallel Aware": false, "Async Capable": false,
       "Index Name": "shop_book_author_id_idx", "Startup Cost": 0.00, "Total Cost": 5.79,
       "Plan Rows": 200, "Plan Width": 0, "Index Cond": "(author_id = a.id)"}]}]}}]"""

HYPOTHETICAL = """[{"Plan": {"Node Type": "Index Scan", "Parallel Aware": false,
  "Async Capable": false, "Scan Direction": "Forward",
  "Index Name": "<13556>btree_shop_book_title", "Relation Name": "shop_book",
  "Alias": "shop_book", "Startup Cost": 0.04, "Total Cost": 8.05, "Plan Rows": 1,
  "Plan Width": 29, "Index Cond": "((title)::text = 'title 5'::text)"}}]"""


def test_a_sequential_scan_reads_every_row_through_no_index():
    plan = read_postgresql(SEQ_SCAN)
    assert plan.cost == 398.0
    assert plan.seq_scans == {"shop_book"} and plan.indexes == {}
    assert plan.reading("shop_book") == "Seq Scan on shop_book"


def test_a_bitmap_index_scan_belongs_to_the_table_of_its_heap_scan():
    plan = read_postgresql(BITMAP)
    assert plan.indexes == {"shop_book": {"shop_book_author_id_idx"}}
    assert plan.seq_scans == set()
    assert plan.reading("shop_book") == (
        "Bitmap Heap Scan on shop_book using shop_book_author_id_idx"
    )


def test_a_join_is_read_table_by_table():
    plan = read_postgresql(JOIN)
    assert plan.seq_scans == {"shop_author"}
    assert plan.indexes == {"shop_book": {"shop_book_author_id_idx"}}
    assert plan.reading("shop_author") == "Seq Scan on shop_author"
    assert plan.reading("shop_book").endswith("using shop_book_author_id_idx")
    assert plan.reading("shop_tag") == "Nested Loop"  # a table it does not read


def test_a_hypothetical_index_is_named_as_hypopg_names_it():
    import json

    plan = read_postgresql(json.loads(HYPOTHETICAL))  # the driver may hand over parsed JSON
    assert plan.all_indexes == {"<13556>btree_shop_book_title"}
    assert plan.cost == 8.05 and not plan.seq_scans


# --- SQLite plans: rows of EXPLAIN QUERY PLAN (SQLite 3.40) ------------------------------------


def test_sqlite_scan_and_search_rows():
    scan = read_sqlite([(2, 0, 0, "SCAN shop_book")])
    assert scan.seq_scans == {"shop_book"} and scan.text == "SCAN shop_book"
    assert [access.detail for access in scan.full_reads("shop_book")] == ["SCAN shop_book"]
    search = read_sqlite(
        [(3, 0, 0, "SEARCH shop_book USING INDEX shop_book_author_id_f5a7ba41 (author_id=?)")]
    )
    assert search.indexes == {"shop_book": {"shop_book_author_id_f5a7ba41"}}
    assert not search.seq_scans and not search.full_reads("shop_book")
    by_key = read_sqlite([(2, 0, 0, "SEARCH shop_book USING INTEGER PRIMARY KEY (rowid=?)")])
    assert by_key.indexes == {"shop_book": {"PRIMARY KEY"}}


def test_sqlite_a_full_index_scan_reads_every_row_but_is_no_table_scan():
    plan = read_sqlite(
        [(3, 0, 0, "SCAN shop_book USING COVERING INDEX shop_book_author_id_f5a7ba41")]
    )
    assert plan.seq_scans == set()  # assert_no_seq_scan passes
    assert plan.full_reads("shop_book")  # the workload report still counts it
    joined = read_sqlite(
        [
            (3, 0, 0, "SCAN a"),
            (7, 0, 0, "SEARCH b USING COVERING INDEX shop_book_author_id_f5a7ba41 (author_id=?)"),
        ]
    )
    assert joined.seq_scans == {"a"} and joined.all_indexes == {"shop_book_author_id_f5a7ba41"}


# --- Parameters, renumbered for PREPARE ------------------------------------------------------


def test_django_placeholders_become_numbered_parameters():
    sql = "SELECT * FROM t WHERE a = %s AND b LIKE '50%%' AND c IN (%s, %s)"
    assert positional_parameters(sql) == (
        "SELECT * FROM t WHERE a = $1 AND b LIKE '50%' AND c IN ($2, $3)",
        3,
    )
    assert positional_parameters("SELECT 1") == ("SELECT 1", 0)


def test_pg_stat_statements_parameters_are_counted_by_the_highest_number():
    assert dollar_parameters("SELECT * FROM t WHERE a = $1 AND b = $3 OR c = $2") == 3
    assert dollar_parameters("SELECT 1") == 0
    assert dollar_parameters("SELECT ((( FROM") == 0  # unreadable: planned without values


# --- Trial indexes: the migration's own SQL --------------------------------------------------

PROPOSAL = ProposedIndex(
    ("title",),
    "shop_book_title_trial_idx",
    ("varchar_pattern_ops",),
    condition='Q(summary="3")',
    include=("summary",),
    condition_lookup=("summary", "3"),
)


def _migration_sql(index):
    """What sqlmigrate prints for AddIndex of ``index``."""
    with connection.schema_editor(collect_sql=True) as editor:
        editor.add_index(Book, index)
    (statement,) = editor.collected_sql
    return statement.rstrip(";")


def test_a_partial_pattern_covering_index_renders_as_the_migration_writes_it(postgres_only, db):
    index = PROPOSAL.as_index()
    sql = index_sql(connection, Book, index)
    assert sql == _migration_sql(index)
    assert "varchar_pattern_ops" in sql and 'INCLUDE ("summary")' in sql and "WHERE" in sql


def test_a_built_trial_is_the_migrations_index_under_a_trial_name(postgres_only, db):
    trials = TrialIndexes(connection, "build")
    with (
        CaptureQueriesContext(connection) as ran,
        trials.present([(Book, PROPOSAL.as_index())]) as names,
    ):
        assert names == [f"{TRIAL_PREFIX}1"]
    built = [q["sql"] for q in ran.captured_queries if q["sql"].startswith("CREATE INDEX")]
    expected = _migration_sql(PROPOSAL.as_index()).replace(PROPOSAL.name, names[0])
    assert built == [expected]
    constraints = connection.introspection.get_constraints(connection.cursor(), "shop_book")
    assert not any(name.startswith(TRIAL_PREFIX) for name in constraints)  # rolled back


def test_hypopg_takes_the_migrations_index_as_it_is(postgres_only, db):
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    with TrialIndexes(connection, "hypopg").present([(Book, PROPOSAL.as_index())]) as names:
        assert names[0].startswith("<") and "shop_book_title_summary" in names[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM hypopg_list_indexes")
        assert cursor.fetchone()[0] == 0
