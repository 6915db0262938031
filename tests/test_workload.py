"""Workloads: recording what a site runs, and index advice the planner proves from it."""

import json
import os
import re
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, models
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_dbtune import workload
from tests.conftest import DB, POSTGRES, suggest_workload
from tests.shop.models import Author, Book
from tests.test_writer import manage

SECRET = "a-title-nobody-may-see"
BUILDS = pytest.mark.django_db(transaction=DB == "mariadb")
"""For a test that proves a workload on MariaDB as well: only by building each index
(--allow-build), which cannot run inside a transaction (DDL commits there)."""


def _proof_options():
    """What proving needs here, other than the workload: MariaDB has no hypothetical
    indexes, so a build must be allowed."""
    return ["--allow-build"] if connection.vendor == "mysql" else []


def _run_reads():
    author = Author.objects.first()
    list(Book.objects.filter(title=SECRET))
    list(Book.objects.filter(title="another"))
    list(Book.objects.filter(author=author, id__gt=3).order_by("-id")[:10])


@pytest.fixture
def books(db):
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"t{i}", author=author) for i in range(30)])


def test_a_recorded_workload_keeps_no_parameter_values_unless_asked(books, tmp_path):
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        _run_reads()
    text = path.read_text()
    assert SECRET not in text and "another" not in text
    shapes = workload.read(path)
    by_title = next(s for s in shapes if s.orm and s.orm.equality == ["title"])
    assert by_title.calls == 2 and by_title.params is None  # one shape, two values
    kept = tmp_path / "with-params.jsonl"
    with workload.record(kept, params=True):
        _run_reads()
    assert SECRET in kept.read_text()


def test_the_orm_fields_come_from_the_query_itself(books, tmp_path):
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        _run_reads()
    shapes = {tuple(s.orm.equality): s for s in workload.read(path) if s.orm}
    ranged = shapes[("author",)].orm
    assert (ranged.ranges, ranged.sort, ranged.explicit_sort, ranged.sliced) == (
        ["id"],
        ["-id"],
        True,
        True,
    )
    assert list(shapes[("author",)].call_sites) == [
        f"tests/test_workload.py:{_run_reads.__code__.co_firstlineno + 4} in _run_reads"
    ]


def test_lines_from_several_runs_and_processes_merge(books, tmp_path):
    path = tmp_path / "workload.jsonl"
    for _ in range(3):
        with workload.record(path):
            _run_reads()
    shapes = workload.read(path)
    by_title = next(s for s in shapes if s.orm and s.orm.equality == ["title"])
    assert by_title.calls == 6
    assert len(path.read_text().splitlines()) == 3 * len(shapes)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Cannot read the workload file"),
        ('{"v": 1, "database": "default"', "line 1: the line is cut short"),
        ("not json\n", "line 1: not a workload line"),
        ('{"v": 99}\n', "not a version-1 workload line"),
        ('{"v": 1}\n', r"line 1: not a workload line \(no 'database' in it\)"),
        ("", "records no queries"),
    ],
)
def test_a_bad_workload_file_is_a_clear_error(db, tmp_path, content, message):
    path = tmp_path / "workload.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("suggest_indexes", "shop", "--workload", str(path), stdout=StringIO())


def test_allow_build_without_a_workload_is_refused(db):
    """It proves a workload's indexes: alone it would be silently ignored."""
    with pytest.raises(CommandError, match="--allow-build only applies with --workload"):
        call_command("suggest_indexes", "shop", "--allow-build", stdout=StringIO())


def test_bad_numbers_are_refused_by_the_command(db, tmp_path):
    for option, value in (("--min-cost-reduction", "150"), ("--max-per-table", "0")):
        with pytest.raises(CommandError, match="argument"):
            call_command("suggest_indexes", "shop", "--workload", "w.jsonl", option, value)


# --- SQLite: which recorded queries scan a whole table ------------------------------------


def test_on_sqlite_the_full_scans_are_shown(books, tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("needs SQLite (its own report): run without DBTUNE_DB, SQLite is the default")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        _run_reads()
    findings, err = suggest_workload(path)
    scans = [f for f in findings if f["kind"] == "workload_scan"]
    assert [f["fields"] for f in scans] == [["title"]]
    assert "SCAN shop_book" in scans[0]["message"]
    assert scans[0]["index"]["fields"] == ["title"]
    assert "EXPLAIN QUERY PLAN" in err


# --- PostgreSQL: proven by the planner --------------------------------------------------------


@pytest.fixture
def many_books(postgres_only, db):
    """Enough rows for the planner to prefer an index to a scan."""
    author = Author.objects.create(name="A")
    Book.objects.bulk_create(
        [Book(title=f"title {i}", summary=str(i % 7), author=author) for i in range(20000)]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE shop_book")


@pytest.fixture
def recorded(many_books, tmp_path):
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}"))
        list(Book.objects.filter(author=Author.objects.first()))  # its FK index exists
        Book.objects.filter(title="title 1").update(summary="a write: never planned")
    return path


def _hypopg(installed):
    with connection.cursor() as cursor:
        if installed:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
        else:
            cursor.execute("DROP EXTENSION IF EXISTS hypopg")


def _suggest(path, *options):
    out, err = StringIO(), StringIO()
    source = ["--workload", str(path)] if path is not None else []
    call_command(
        "suggest_indexes",
        "shop",
        *source,
        "--format",
        "json",
        *options,
        stdout=out,
        stderr=err,
    )
    return json.loads(out.getvalue()), err.getvalue()


def _suggest_text(path):
    """The text report of the workload (proven as this database can), and what it printed
    on stderr."""
    out, err = StringIO(), StringIO()
    call_command(
        "suggest_indexes",
        "shop",
        "--workload",
        str(path),
        *_proof_options(),
        stdout=out,
        stderr=err,
    )
    return out, err


def test_hypopg_proves_the_index_the_queries_lack(recorded):
    _hypopg(True)
    with CaptureQueriesContext(connection) as ran:
        findings, err = _suggest(recorded)
    assert [(f["kind"], f["fields"]) for f in findings] == [("workload_index", ["title"])]
    finding = findings[0]
    assert "Seq Scan on shop_book" in finding["message"]
    assert "Index Scan on shop_book using shop_book_title_" in finding["message"]
    assert "threshold 20%" in finding["message"]
    assert finding["index"]["name"].startswith("shop_book_title_")
    assert finding["evidence"][0]["file"] == "tests/test_workload.py"
    assert "hypothetical indexes (HypoPG)" in err
    _assert_only_plain_explains_of_reads(ran)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM hypopg_list_indexes")
        assert cursor.fetchone()[0] == 0  # nothing hypothetical left behind


def test_an_index_tried_after_another_says_what_its_figures_are_measured_against(
    postgres_only, db, tmp_path
):
    """Its reduction is what it adds to the index accepted before it; its largest saving is
    shown against the database as it is. One message mixed the two without a word."""
    author = Author.objects.create(name="A")
    Book.objects.bulk_create(
        [Book(title=f"t{i}", summary=f"s{i}", author=author) for i in range(20000)]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE shop_book")
    _hypopg(True)
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"t{i}"))
        for i in range(3):
            list(Book.objects.filter(summary=f"s{i}"))
    findings, _ = _suggest(path)
    assert sorted(f["fields"] for f in findings) == [["summary"], ["title"]]
    messages = [f["message"] for f in findings]
    [second] = [m for m in messages if "beyond the indexes suggested before it" in m]
    [first] = [m for m in messages if m is not second]
    assert "largest saving: Seq Scan" in first
    assert "beyond the indexes suggested before it (threshold 20%)" in second
    assert "the largest saving, against the database as it is: Seq Scan" in second


def test_a_higher_threshold_than_the_gain_suggests_nothing(recorded):
    _hypopg(True)
    findings, err = _suggest(recorded, "--min-cost-reduction", "99.9")
    assert findings == []
    assert "below the cost-reduction threshold" in err


@pytest.mark.django_db(transaction=True)  # a real build cannot follow uncommitted inserts
def test_without_hypopg_the_trial_is_built_and_rolled_back_only_when_allowed(recorded):
    _hypopg(False)
    with pytest.raises(CommandError, match=r"needs HypoPG.*--allow-build"):
        _suggest(recorded)
    with CaptureQueriesContext(connection) as ran:
        findings, err = _suggest(recorded, "--allow-build")
    assert [f["fields"] for f in findings] == [["title"]]
    assert "rolled-back transaction" in err
    # The trial is the index the migration would add, rendered by Django, under a trial name.
    built = {
        re.sub(r'"dbtune_trial_\d+"', '"dbtune_trial"', q["sql"])
        for q in ran.captured_queries
        if q["sql"].startswith("CREATE INDEX")
    }
    written = models.Index(fields=findings[0]["fields"], name="dbtune_trial")
    assert str(written.create_sql(Book, connection.schema_editor(collect_sql=True))) in built
    assert any("lock_timeout" in q["sql"] for q in ran.captured_queries)
    _assert_only_plain_explains_of_reads(ran)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'shop_book'")
        assert not [name for (name,) in cursor.fetchall() if name.startswith("dbtune_trial_")]


@pytest.mark.django_db(transaction=True)
def test_a_build_is_refused_on_a_production_alias_but_hypopg_is_not(recorded):
    _hypopg(False)
    with override_settings(DBTUNE={"PRODUCTION_DATABASES": ["default"]}):
        with pytest.raises(CommandError, match=r"refused on database 'default'.*PRODUCTION"):
            _suggest(recorded, "--allow-build")
        _hypopg(True)
        findings, err = _suggest(recorded, "--allow-build")  # HypoPG builds nothing
    assert [f["fields"] for f in findings] == [["title"]]
    assert "hypothetical indexes (HypoPG)" in err


def _assert_only_plain_explains_of_reads(ran):
    """The recorded workload has an UPDATE: it is never planned, and nothing is ANALYZEd."""
    planned = [
        q["sql"] for q in ran.captured_queries if q["sql"].startswith(("EXPLAIN", "PREPARE"))
    ]
    assert planned
    for sql in planned:
        assert "ANALYZE" not in sql.upper()
        body = sql.split(" AS ", 1)[1] if sql.startswith("PREPARE") else sql.split(")", 1)[1]
        assert body.lstrip().startswith(("SELECT", "EXECUTE dbtune_plan_")), sql


def test_a_candidate_a_better_one_makes_redundant_is_not_suggested(many_books, tmp_path):
    _hypopg(True)
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}"))
            list(Book.objects.filter(title=f"title {i}", summary="3"))
    findings, err = _suggest(path)
    assert len(findings) == 1 and findings[0]["fields"][0] == "title"
    assert "left out (2): candidates below the cost-reduction threshold" in err


def test_a_prefix_search_after_an_equality_gets_an_operator_class_per_column(many_books, tmp_path):
    _hypopg(True)
    path = tmp_path / "workload.jsonl"
    # With the values: a plan for any value cannot know the LIKE pattern is a prefix.
    with workload.record(path, params=True):
        for i in range(5):
            list(Book.objects.filter(summary="3", title__startswith=f"title 1{i}"))
    findings, _ = _suggest(path)
    assert [(f["fields"], f["index"]["opclasses"]) for f in findings] == [
        (["summary", "title"], ["text_pattern_ops", "varchar_pattern_ops"])
    ]


def test_a_prefix_search_after_a_number_column_is_left_out_not_a_failure(many_books, tmp_path):
    _hypopg(True)
    author = Author.objects.first()
    path = tmp_path / "workload.jsonl"
    with workload.record(path, params=True):
        for i in range(5):
            list(Book.objects.filter(author=author, title__startswith=f"title 1{i}"))
    findings, err = _suggest(path)
    assert findings == []
    assert "left out (1): prefix searches after a column that is not text" in err


# --- The example project, end to end --------------------------------------------------------

PAGES = [
    "/crawler/broken/",
    "/marketplace/jobs/",
    "/publisher/queue/",
    "/crawler/recommendations/",
]


def _in_project_database(project, sql):
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=project.env["DBTUNE_PG_NAME"],
        autocommit=True,
    ) as database:
        database.execute(sql)


ANALYZE_EVERY_TABLE = (
    "import django; django.setup(); from django.db import connection as c; cursor = c.cursor(); "
    "[cursor.execute('ANALYZE TABLE ' + c.ops.quote_name(t)) or cursor.fetchall() "
    "for t in c.introspection.table_names(cursor)]"
)


def test_record_prove_write_and_migrate_on_the_example_project(db_project):
    mariadb = db_project.env["DBTUNE_DB"] == "mariadb"
    if POSTGRES:
        _in_project_database(db_project, "CREATE EXTENSION IF NOT EXISTS hypopg")
    manage(db_project, "migrate", "-v0")
    manage(db_project, "seed_demo", "--scale", "4", "-v0")
    if POSTGRES:
        # Statistics as a live database has them; otherwise the plans depend on whether
        # autovacuum happened to analyze the fresh tables yet.
        _in_project_database(db_project, "ANALYZE")
    if mariadb:
        subprocess.run(
            [sys.executable, "-c", ANALYZE_EVERY_TABLE],
            cwd=db_project,
            env=db_project.env,
            check=True,
        )
    recorded = manage(
        db_project, "dbtune_capture", "--record", "w.jsonl", "--format", "json", *PAGES
    )
    assert "Recorded" in recorded.stderr and "query shape(s) in w.jsonl" in recorded.stderr
    lines = [json.loads(line) for line in (db_project / "w.jsonl").read_text().splitlines()]
    assert lines and not any("params" in line or "constants" in line for line in lines)
    assert not any(line["sql"].startswith("EXPLAIN") for line in lines)  # the toolbar's own
    suggest = ("suggest_indexes", "--workload", "w.jsonl", *(["--allow-build"] * mariadb))
    found = json.loads(manage(db_project, *suggest, "--format", "json").stdout)
    fields = {(f["model"], tuple(f["fields"])) for f in found}
    if not POSTGRES and not mariadb:  # SQLite shows the full scans, with the rules' index
        assert {f["kind"] for f in found} == {"workload_scan"}
        assert ("crawler.PageResult", ("status_code", "-crawled_at")) in fields
        return
    assert {f["kind"] for f in found} == {"workload_index"}
    assert ("crawler.PageResult", ("status_code", "-crawled_at")) in fields  # IDX-2
    if POSTGRES:  # (MariaDB reads the publishing queue from its business table)
        assert ("publisher.Post", ("status", "scheduled_for")) in fields  # IDX-5
        assert "--allow-build" not in manage(db_project, *suggest).stderr
    written = manage(db_project, *suggest, "--write").stdout
    assert f"{len(found)} indexes written" in written
    manage(db_project, "migrate", "-v0")  # on MariaDB too: the migrations apply there
    assert manage(db_project, "makemigrations", "--check", "--dry-run").stdout.strip() == (
        "No changes detected"
    )
    again = manage(db_project, *suggest, "--format", "json")
    assert json.loads(again.stdout) == []  # what exists is never suggested again


# --- From production: pg_stat_statements --------------------------------------------------


@pytest.fixture
def statements(many_books):
    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_preload_libraries")
        if "pg_stat_statements" not in cursor.fetchone()[0]:
            message = "needs pg_stat_statements loaded by the server: run scripts/postgres_setup"
            if os.environ.get("DBTUNE_CI"):
                pytest.fail(message)
            pytest.skip(message)
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cursor.execute("SELECT pg_stat_statements_reset()")
    for i in range(5):
        list(Book.objects.filter(title=f"title {i}"))
    list(Book.objects.filter(author=Author.objects.first()).order_by("id")[:3])
    with connection.cursor() as cursor:  # text_pattern_ops' own operator: sqlglot cannot read it
        cursor.execute("SELECT id FROM shop_book WHERE title ~>=~ %s", ["title"])


def test_pg_stat_statements_is_a_workload_too(statements):
    _hypopg(True)
    findings, err = _suggest(None, "--from-pg-stat-statements")
    assert "left out (1): statements the SQL parser cannot read" in err
    assert [(f["kind"], f["fields"]) for f in findings] == [("workload_index", ["title"])]
    assert "5 calls" in findings[0]["message"]
    assert findings[0]["evidence"][0]["file"] == "pg_stat_statements"
    assert "Seq Scan on shop_book cost" in findings[0]["message"]


def test_without_pg_stat_statements_the_message_says_how_to_add_it(statements):
    with connection.cursor() as cursor:
        cursor.execute("DROP EXTENSION pg_stat_statements")
    with pytest.raises(CommandError, match=r"does not have pg_stat_statements.*CREATE EXTENSION"):
        _suggest(None, "--from-pg-stat-statements")
    with pytest.raises(
        CommandError, match="Give one of --workload, --workload-store, --from-pg-stat-statements"
    ):
        _suggest("w.jsonl", "--from-pg-stat-statements")


@BUILDS
def test_raw_sql_and_tables_no_model_owns_are_left_out_and_counted(books, tmp_path):
    if connection.vendor == "postgresql":
        _hypopg(True)
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        list(Book.objects.filter(title="x"))
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM shop_book WHERE title = %s", ["x"])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    stranger = dict(
        lines[0], sql=lines[0]["sql"] + " ", orm=dict(lines[0]["orm"], model="gone.Model")
    )
    path.write_text("".join(json.dumps(line) + "\n" for line in [*lines, stranger]))
    _, err = _suggest_text(path)
    assert (
        "left out (1): queries not from the ORM (raw SQL) or with no ORM detail" in err.getvalue()
    )
    assert "left out (1): queries on tables no model of the checked apps owns" in err.getvalue()


def test_an_index_another_suggested_one_leads_with_is_not_suggested(many_books, tmp_path):
    _hypopg(True)
    Book.objects.filter(id__gt=2000).update(summary="common")  # a few rare values
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE shop_book")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            Book.objects.filter(summary=str(i)).count()
            Book.objects.filter(summary=str(i)).count()
            list(Book.objects.filter(summary=str(i)).order_by("-title")[:10])
    findings, err = _suggest(path)
    # Proven one after the other, (summary) and (summary, -title) may both pass; the first
    # leads the second, which serves its queries too. Either way, one index is suggested.
    assert [f["fields"] for f in findings] == [["summary", "-title"]]
    assert "left out (1): candidates" in err
    assert "<" not in findings[0]["message"]  # no hypothetical index names


@pytest.mark.django_db(transaction=True)  # VACUUM: what an index-only scan's estimate needs
def test_a_query_reading_few_columns_gets_a_covering_index(many_books, tmp_path):
    _hypopg(True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE shop_book")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}").values_list("id", "summary"))
    (shape,) = workload.read(path)
    assert shape.orm.selects == ["id", "summary"]
    findings, _ = _suggest(path)
    assert [(f["fields"], f["index"]["include"]) for f in findings] == [
        (["title"], ["id", "summary"])
    ]
    assert "Index Only Scan" in findings[0]["message"]


def test_a_role_that_may_not_read_others_statements_is_told_what_to_grant(statements):
    from django_dbtune.advisor.proof import ProofError
    from django_dbtune.advisor.statements import read_statements
    from django_dbtune.advisor.workload_candidates import Outcome

    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute("CREATE ROLE dbtune_reader")
        cursor.execute("SET LOCAL ROLE dbtune_reader")
    try:
        with pytest.raises(ProofError, match=r"may not read.*GRANT pg_read_all_stats"):
            read_statements(connection, {}, Outcome())
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")


@BUILDS
def test_a_recorded_field_the_model_no_longer_has_is_counted_as_left_out(books, tmp_path):
    """A workload recorded before a field was renamed: said, not dropped without a word."""
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        list(Book.objects.filter(title="t1"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        if line.get("orm"):
            line["orm"]["equality"] = ["old_title"]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    if connection.vendor == "postgresql":
        _hypopg(True)
    _, err = _suggest_text(path)
    assert "queries on fields the model does not have" in err.getvalue()


@BUILDS
def test_a_statement_that_reads_no_table_is_not_called_raw_sql(books, tmp_path):
    """MariaDB's backend asks SELECT VERSION(), @@sql_mode ... as a request opens its
    connection: the workload called it raw SQL in a project that has none."""
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        list(Book.objects.filter(title="t1"))
    if connection.vendor == "postgresql":
        _hypopg(True)
    _, err = _suggest_text(path)
    assert "statements that read no table" in err.getvalue()
    assert "raw SQL" not in err.getvalue()


def test_every_page_of_a_list_is_one_shape(books, tmp_path):
    """Django writes LIMIT and OFFSET into the SQL: each page was a shape of its own, and a
    finding listed the list's line once per page."""
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for start in (0, 2, 4):
            list(Book.objects.order_by("title")[start : start + 2])
    (shape,) = [s for s in workload.read(path) if s.orm]
    assert shape.calls == 3
    assert shape.sql.endswith("LIMIT 2")  # the first page's text, for the planner
    assert list(shape.call_sites.values()) == [3]


def test_a_get_on_a_model_with_meta_ordering_is_not_given_the_ordering(db, tmp_path):
    """get() drops Meta.ordering (its SQL has no ORDER BY): the index it needs is its filter
    alone, not the filter with the ordering's columns (a bigger index that serves nothing
    more)."""
    from django_dbtune.advisor.candidates import candidates_for
    from django_dbtune.advisor.workload_candidates import usage_from
    from tests.shop.models import Item

    Item.objects.create(name="n", kind="k")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        Item.objects.get(name="n")
        list(Item.objects.filter(name="n"))  # this one is sorted by Meta.ordering
    shapes = [s for s in workload.read(path) if s.orm]
    fields = {
        "ORDER BY" in s.sql: [c.fields for c in candidates_for(usage_from(Item, s.orm, "x:1", ""))]
        for s in shapes
    }
    assert fields[False] == [("name",)]
    assert fields[True] == [("name", "kind")]  # the list's sort: name is fixed, then kind


@BUILDS
def test_a_sort_by_an_annotation_stops_the_sort_fields(books, tmp_path):
    from django.db.models import Count

    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        list(Book.objects.annotate(n=Count("tags")).order_by("-n", "title"))
    (shape,) = [s for s in workload.read(path) if s.orm]
    assert shape.orm.sort == []  # "-n" is no column: an index cannot follow the sort
    if connection.vendor == "postgresql":
        _hypopg(True)
    out, _ = _suggest_text(path)
    assert "finding" in out.getvalue()  # ran to the end


def test_a_proxys_reads_are_its_concrete_models_and_a_parents_columns_are_not_the_childs(
    db, tmp_path
):
    from tests.shop.models import Poster
    from tests.testapp.models import StaffShelf

    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        list(StaffShelf.objects.filter(label="x"))
        list(Poster.objects.filter(kind="framed", artist=None))
    orm = {s.orm.model: s.orm for s in workload.read(path) if s.orm}
    assert orm["testapp.Shelf"].equality == ["label"]
    # kind lives in shop_item: no index on shop_poster can serve it.
    assert orm["shop.Poster"].equality == ["artist"]


@pytest.mark.django_db(transaction=True)
def test_a_constant_every_call_compares_to_makes_a_partial_index(postgres_only, tmp_path):
    from crawler.models import Recommendation
    from dashboard import seed

    seed.seed(4, seed=7, using="default", progress=lambda n: None)
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
        cursor.execute("VACUUM ANALYZE crawler_recommendation")
    path, kept = tmp_path / "workload.jsonl", tmp_path / "with-values.jsonl"
    for file, params in ((path, False), (kept, True)):
        with workload.record(file, params=params):
            for _ in range(3):
                list(
                    Recommendation.objects.filter(implementation_status="open").order_by(
                        "-priority"
                    )[:50]
                )
    (plain,) = workload.read(path)
    assert plain.constants is None and "open" not in path.read_text()  # values are opt-in
    (shape,) = workload.read(kept)
    assert shape.constants == {"implementation_status": "open"}
    out = StringIO()
    call_command(
        "suggest_indexes",
        "crawler",
        "--workload",
        str(kept),
        "--format",
        "json",
        stdout=out,
        stderr=StringIO(),
    )
    (finding,) = json.loads(out.getvalue())
    assert finding["fields"] == ["-priority"]
    assert finding["index"]["condition"] == 'Q(implementation_status="open")'
    assert "partial index" in finding["message"]


# --- Indexes the table has, partial ones included ----------------------------------------------


def _books_and(*indexes):
    """Books, with ``indexes`` made by hand first (PostgreSQL builds no index on a table with
    pending foreign key checks); on PostgreSQL, enough rows for the planner to prefer an
    index, and HypoPG."""
    with connection.cursor() as cursor:
        for sql in indexes:
            cursor.execute(sql)
    postgres = connection.vendor == "postgresql"
    author = Author.objects.create(name="A")
    Book.objects.bulk_create(
        [
            Book(title=f"title {i}", summary=str(i % 7), author=author)
            for i in range(20000 if postgres else 30)
        ]
    )
    if postgres:
        _hypopg(True)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE shop_book")


def test_a_partial_index_only_the_database_has_serves_only_the_reads_it_holds(
    partial_indexes, db, tmp_path
):
    """(title) WHERE summary = 'x' holds none of these books: their reads by title lack an
    index, as the planner (or SQLite's full scan) shows."""
    _books_and("CREATE INDEX book_some_titles ON shop_book (title) WHERE summary = 'x'")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}"))
    findings, _ = _suggest(path)
    assert [f["fields"] for f in findings] == [["title"]]


def test_the_workload_never_suggests_an_index_the_table_has(partial_indexes, db, tmp_path):
    """Made by hand: (title) WHERE editor_id IS NULL serves the reads whose SQL says IS NULL,
    and (title) WHERE summary = '3' those every recorded call compared summary to '3'."""
    _books_and(
        "CREATE INDEX book_unedited ON shop_book (title) WHERE editor_id IS NULL",
        "CREATE INDEX book_summary_3 ON shop_book (title) WHERE summary = '3'",
    )
    path = tmp_path / "workload.jsonl"
    with workload.record(path, params=True):
        for _ in range(3):
            list(Book.objects.filter(editor=None).order_by("title")[:10])
            list(Book.objects.filter(summary="3").order_by("title")[:10])
    findings, err = _suggest(path)
    assert [(f["kind"], f["fields"]) for f in findings] == [], err


def test_statements_the_sql_parser_only_half_reads_print_no_warning(capsys, caplog):
    from django_dbtune.advisor.statements import statement_shapes
    from django_dbtune.advisor.workload_candidates import Outcome
    from django_dbtune.schema import model_schemas

    # pg_stat_statements holds everything the site ran, maintenance included; sqlglot reads
    # these as a generic command and logs a warning for each.
    rows = [
        ("VACUUM ANALYZE shop_book", 1, 90.0, 90.0),
        ("REFRESH MATERIALIZED VIEW shop_sales", 2, 40.0, 20.0),
        ('SELECT "shop_book"."id" FROM "shop_book" WHERE "shop_book"."title" = $1', 5, 9.0, 2.0),
    ]
    schemas = {s.label: s for s in model_schemas(["shop"], "default", read_database=False)}
    with caplog.at_level("DEBUG"):
        shapes = statement_shapes(rows, schemas, Outcome(), "default")
    assert [shape.orm.equality for shape in shapes] == [["title"]]
    assert capsys.readouterr().err == ""
    assert caplog.records == []


def test_a_proven_index_for_one_recorded_query_speaks_of_it_in_the_singular():
    from collections import Counter

    from django_dbtune.advisor import proof
    from django_dbtune.advisor.candidates import Candidate
    from django_dbtune.advisor.planner import Access, Plan
    from django_dbtune.advisor.workload_candidates import Served
    from django_dbtune.workload import Shape

    shape = Shape(
        "default",
        "postgresql",
        'SELECT "shop_book"."id" FROM "shop_book" WHERE "shop_book"."title" = %s',
        "read",
        ["shop_book"],
        calls=5,
        total_ms=9.0,
        call_sites=Counter({"shop/views.py:3 in books": 5}),
    )
    served = Served(Candidate(Book, ("title",)), [shape])
    scan = Plan([Access("shop_book", "Seq Scan on shop_book")], cost=400.0)
    index = Plan([Access("shop_book", "Index Scan on shop_book", "<1>btree")], cost=8.0)
    trial = proof._Trial(
        served, served.proposal(), {id(shape): scan}, {id(shape): index}, "<1>btree"
    )
    finding = proof._finding(trial, "default", {}, 0.3, "hypopg")
    assert finding.message.startswith(
        "1 recorded query (5 calls, 9.0 ms in total) filters or sorts Book by (title). "
        "Planned with a hypothetical index (HypoPG), its estimated cost falls by 98%"
    )
