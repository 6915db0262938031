import json
import os
import subprocess
import sys
import textwrap
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tests.testapp.models import Book, Shelf

MODEL_KINDS = {"missing_fk_index", "redundant_index", "duplicate_index"}
EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("suggest_indexes", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def findings(*args):
    return json.loads(run(*args, "--format", "json")[0])


def execute(sql):
    with connection.cursor() as cursor:
        cursor.execute(sql)


def index_sql(model, name, fields):
    """CREATE INDEX and DROP INDEX of ``name`` on ``fields`` (MariaDB's DROP INDEX names the
    table too)."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(model._meta.get_field(field).column) for field in fields)
    drop = connection.SchemaEditorClass.sql_delete_index % {"name": quote(name), "table": table}
    return f"CREATE INDEX {quote(name)} ON {table} ({columns})", drop


def add_index(undo, model, name, fields):
    """Builds an index no model declares, as by hand; dropped after the test (undo_ddl)."""
    create, drop = index_sql(model, name, fields)
    execute(create)
    undo.append(lambda: execute(drop))


def drop_index(undo, model, name):
    """Drops ``model``'s declared index ``name``; built again after the test (undo_ddl)."""
    [declared] = [index for index in model._meta.indexes if index.name == name]
    create, drop = index_sql(model, name, declared.fields)
    execute(drop)
    undo.append(lambda: execute(create))


def drop_table(undo, model):
    """Drops ``model``'s table as if its migration had not run yet; built again after the
    test (undo_ddl), by the statements Django's migration runs."""
    execute(f"DROP TABLE {connection.ops.quote_name(model._meta.db_table)}")

    def create():
        # Collected, then run: MariaDB's schema editor runs no DDL inside the test's
        # transaction (which it would commit).
        with connection.schema_editor(collect_sql=True) as editor:
            editor.create_model(model)
        for sql in editor.collected_sql:
            execute(sql)

    undo.append(create)


# Every index item of example_project/KNOWN_ISSUES.md, as the findings that report it.
KNOWN = {
    # The foreign key without an index and the composite leading with it: one index to add.
    ("composite_candidate", "crawler.Recommendation", ("website", "-priority")): "IDX-3",
    ("unindexed_filter", "crawler.PageResult", ("url",)): "IDX-1",
    ("composite_candidate", "crawler.PageResult", ("status_code", "-crawled_at")): "IDX-2",
    (
        "composite_candidate",
        "crawler.Recommendation",
        ("implementation_status", "-priority"),
    ): "IDX-4",
    ("composite_candidate", "publisher.Post", ("status", "scheduled_for")): "IDX-5",
    ("composite_candidate", "marketplace.UserProfile", ("role", "-rating")): "IDX-6",
    ("composite_candidate", "marketplace.Job", ("status", "-created_at")): "IDX-7",
    ("unindexed_filter", "marketplace.Payment", ("status",)): "IDX-8",
    ("redundant_index", "publisher.SocialAccount", ("platform",)): "IDX-9",
}


@pytest.mark.django_db
def test_every_index_item_of_known_issues_is_found_and_nothing_else():
    found = findings("crawler", "publisher", "marketplace")
    reported = {(f["kind"], f["model"], tuple(f["fields"])): f for f in found}
    known = dict(KNOWN)
    if connection.vendor == "mysql":
        # InnoDB indexes the foreign key itself: that index narrows by website already, and
        # whether a wider one pays is the planner's to say, as on any database.
        del known[("composite_candidate", "crawler.Recommendation", ("website", "-priority"))]
    assert set(reported) == set(known)
    assert set(KNOWN.values()) == {f"IDX-{n}" for n in range(1, 10)}
    for finding in found:
        assert finding["evidence"], finding
        if finding["index"]:
            assert len(finding["index"]["name"]) <= 30


@pytest.fixture
def where_only(settings):
    """Rank by where the queries run alone: the test database's tables are empty, and the
    size rule would rank every finding on them medium at most (test_ranking.py)."""
    settings.DBTUNE = {**settings.DBTUNE, "INDEX_SMALL_TABLE_ROWS": 0}


@pytest.mark.django_db
@pytest.mark.usefixtures("where_only")
def test_findings_carry_their_evidence_and_the_right_index_type():
    found = {(f["kind"], f["model"], tuple(f["fields"])): f for f in findings("crawler")}
    website = ("composite_candidate", "crawler.Recommendation", ("website", "-priority"))
    if connection.vendor == "mysql":
        # InnoDB indexes the foreign key itself: no missing index to serve along.
        assert website not in found
    else:
        fk = found[website]
        assert fk["severity"] == "high"
        assert {
            "file": "example_project/crawler/models.py",
            "line": 67,
            "code": "website = models.ForeignKey(",
        } in fk["evidence"]
        said = "It also serves the foreign key: Foreign key Recommendation.website"
        assert said in fk["message"]
    url = found[("unindexed_filter", "crawler.PageResult", ("url",))]
    if connection.vendor == "mysql":
        # startswith is LIKE BINARY there, which no index serves: advice, not an index.
        assert url["index"] is None and "istartswith" in url["advice"]
    else:
        expected = ["varchar_pattern_ops"] if connection.vendor == "postgresql" else []
        assert url["index"]["opclasses"] == expected
    assert url["evidence"][0]["line"] == 30
    status = found[("composite_candidate", "crawler.PageResult", ("status_code", "-crawled_at"))]
    assert {(e["file"], e["line"]) for e in status["evidence"]} == {
        ("example_project/crawler/views.py", 38),
        ("example_project/crawler/views.py", 39),
        ("example_project/dashboard/views.py", 15),
        ("example_project/dashboard/cached.py", 24),  # the cached dashboard reads it too
    }
    assert status["index"]["fields"] == ["status_code", "-crawled_at"]
    assert status["severity"] == "high", "paginated: the query behind a list page"
    assert [e["line"] for e in url["evidence"]] == [30], "paginating is no new call site"
    partial = found[
        ("composite_candidate", "crawler.Recommendation", ("implementation_status", "-priority"))
    ]
    if connection.features.supports_partial_indexes:
        assert partial["index"]["fields"] == ["-priority"]
        assert partial["index"]["condition"] == 'Q(implementation_status="open")'
    else:  # MariaDB: the whole index, leading with the column the condition would have had
        assert partial["index"]["fields"] == ["implementation_status", "-priority"]
        assert partial["index"]["condition"] is None
    job = findings("marketplace")
    ordering = next(f for f in job if f["model"] == "marketplace.Job")
    assert {
        "file": "example_project/marketplace/models.py",
        "line": 50,
        "code": 'ordering = ["-created_at"]',
    } in ordering["evidence"]


@pytest.mark.django_db
def test_every_coverage_form_is_respected():
    found = findings("testapp")
    reported = {
        (f["kind"], f["model"], tuple(f["fields"])) for f in found if f["kind"] in MODEL_KINDS
    }
    wasted = {
        ("duplicate_index", "testapp.Shelf", ("code",)),
        ("redundant_index", "testapp.Shelf", ("room",)),
    }
    if connection.vendor == "mysql":
        # InnoDB builds an index for each foreign key no index leads with: none is missing.
        assert reported == wasted
        return
    assert reported == wasted | {
        ("missing_fk_index", "testapp.Book", ("reviewer",)),
        ("missing_fk_index", "testapp.Book", ("sponsor",)),
        ("missing_fk_index", "testapp.Note", ("owner",)),
    }
    reviewer = next(f for f in found if f["fields"] == ["reviewer"])
    assert "non-leading column of index book_title_reviewer" in reviewer["message"]


@pytest.mark.django_db
def test_text_output_groups_by_app_and_model_and_shows_the_index_to_add():
    text, _ = run("crawler")
    assert text.splitlines()[:2] == ["crawler", "  crawler.PageResult"]
    assert "  crawler.Recommendation" in text.splitlines()
    add = "add to Meta.indexes: models.Index(fields="
    assert f'{add}["status_code", "-crawled_at"], name="crawler_pag_' in text
    if connection.vendor == "mysql":
        # InnoDB indexes the foreign key website itself: no composite comes with it.
        assert f'{add}["website", "-priority"]' not in text
        assert text.rstrip().endswith("3 finding(s).")
        return
    assert f'{add}["website", "-priority"], name="crawler_rec_' in text
    assert text.rstrip().endswith("4 finding(s).")


@pytest.mark.django_db
@pytest.mark.usefixtures("where_only")  # as a CI job checking the code on an empty database
def test_check_fails_at_or_above_the_minimum_severity():
    with pytest.raises(SystemExit) as exited:
        run("publisher", "--check", "--min-severity", "high")
    assert exited.value.code == 1
    high = findings("publisher", "--min-severity", "high")
    # The publishing queue is sliced ([:50]): a list page, so high; the redundant index is low.
    assert [(f["kind"], f["fields"]) for f in high] == [
        ("composite_candidate", ["status", "scheduled_for"])
    ]


@pytest.mark.django_db
def test_without_app_labels_the_projects_own_apps_are_checked():
    found = findings()
    assert {f["model"].split(".")[0] for f in found} >= {"crawler", "publisher", "testapp"}
    assert not any(f["model"].startswith(("auth.", "admin.", "sessions.")) for f in found)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "No installed app with label 'nope'"),
        (["staticfiles"], "App 'staticfiles' has no models"),
        (["--database", "replica"], "no database 'replica'"),
    ],
)
def test_bad_input_is_a_clear_error(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


@pytest.mark.slow
def test_an_unreachable_database_leaves_the_model_rules_running():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DBTUNE_DB": "postgres",
        "DBTUNE_PG_PORT": "1",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "suggest_indexes", "crawler"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("warning: database 'default' is unreachable")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "It also serves the foreign key" in result.stdout  # the models' rules ran


@pytest.mark.django_db
def test_drift_between_the_models_and_the_database(undo_ddl):
    # (title, reviewer): on MariaDB no foreign key constraint needs it (InnoDB refuses to
    # drop the index a constraint uses), so the same index drops on every database.
    drop_index(undo_ddl, Book, "book_title_reviewer")
    add_index(undo_ddl, Shelf, "handmade_label", ["label"])
    drift = [f for f in findings("testapp") if f["kind"].endswith("_in_database")]
    assert [(f["kind"], f["model"], f["fields"]) for f in drift] == [
        ("missing_in_database", "testapp.Book", ["title", "reviewer"]),
        ("unknown_in_database", "testapp.Shelf", ["label"]),
    ]
    missing, unknown = drift
    assert "book_title_reviewer" in missing["message"]
    assert missing["evidence"][0]["code"].startswith('models.Index(fields=["title", "reviewer"]')
    assert "handmade_label" in unknown["message"]


@pytest.mark.django_db
def test_an_index_the_database_has_under_another_name_is_not_missing(undo_ddl):
    """NetBox's index_together became Meta.indexes with Django's generated name, and the
    database kept the old one: the columns are indexed, only a migration by name fails."""
    # The old one first: InnoDB refuses to drop the only index the foreign key editor has.
    add_index(undo_ddl, Book, "testapp_book_editor_id_title_5a1b", ["editor", "title"])
    drop_index(undo_ddl, Book, "book_editor_title")
    drift = [
        f for f in findings("testapp") if f["model"] == "testapp.Book" and "database" in f["kind"]
    ]
    assert [(f["kind"], f["severity"], f["fields"]) for f in drift] == [
        ("renamed_in_database", "low", ["editor", "title"])
    ]
    assert "as testapp_book_editor_id_title_5a1b" in drift[0]["message"]
    assert 'old_name="testapp_book_editor_id_title_5a1b"' in drift[0]["advice"]


@pytest.mark.django_db
def test_no_drift_where_migrations_built_the_schema():
    kinds = {f["kind"] for f in findings("crawler", "publisher", "marketplace", "testapp")}
    assert not kinds & {"missing_in_database", "unknown_in_database"}


@pytest.mark.django_db
def test_a_table_not_created_yet_is_not_drift(undo_ddl):
    drop_table(undo_ddl, Shelf)
    found = findings("testapp")
    assert not [f for f in found if f["model"] == "testapp.Shelf" and "database" in f["kind"]]
    assert any(f["kind"] == "duplicate_index" for f in found), "the model rules still run"


@pytest.mark.django_db
def test_admin_options_are_read_with_low_severity():
    admin = {
        tuple(f["fields"]): f
        for f in findings("testapp")
        if f["evidence"] and f["evidence"][0]["file"] == "tests/testapp/admin.py"
    }
    # room leads unique_together and is_public is a boolean: neither gets an index.
    # "^label", "^name" (istartswith) and "=room" (iexact) compare UPPER(column), which
    # only an expression index serves: no plain index is suggested for them.
    assert set(admin) == {("-built",), ("kind",), ("code",)}
    assert {f["severity"] for f in admin.values()} == {"low"}
    built = admin[("-built",)]
    assert [e["code"] for e in built["evidence"]] == [
        'ordering = ["-built"]',
        'date_hierarchy = "built"',
    ]


@pytest.mark.django_db
def test_contains_searches_get_a_trigram_index_on_postgresql_only():
    (code,) = [
        f
        for f in findings("testapp")
        if f["fields"] == ["code"] and f["kind"] != ("duplicate_index")
    ]
    assert code["message"].startswith("Shelf.code is searched with icontains in 1 place")
    if connection.vendor != "postgresql":
        assert code["index"] is None
        expected = "FULLTEXT" if connection.vendor == "mysql" else "SQLite has no index"
        assert expected in code["advice"]
        return
    assert code["index"]["opclasses"] == ["gin_trgm_ops"]
    assert code["index"]["sql"].endswith(
        'ON "testapp_shelf" USING gin ((UPPER("code"::text)) gin_trgm_ops)'
    )
    assert "pg_trgm is available but not installed" in code["advice"]
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        cursor.execute(code["index"]["sql"])
    assert not [f for f in findings("testapp") if f["fields"] == ["code"] and "trgm" in str(f)]


@pytest.mark.django_db
@pytest.mark.usefixtures("unindexed_foreign_keys")  # Note's one finding: owner's missing index
def test_a_field_from_an_abstract_parent_points_at_the_parent():
    (owner,) = [f for f in findings("testapp") if f["model"] == "testapp.Note"]
    assert owner["evidence"][0]["file"] == "tests/testapp/models.py"
    assert owner["evidence"][0]["code"].startswith("owner = models.ForeignKey(Author")


# --- Indexes only the database has count for what they serve --------------------------------


def _suggested(settings, tmp_path, code, *indexes):
    """The fields of every index suggest_indexes proposes for testapp's models when the
    project's code is ``code`` and the database also has ``indexes`` (made by hand)."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        "from tests.testapp.models import Shelf\n\n" + textwrap.dedent(code)
    )
    with connection.cursor() as cursor:
        for sql in indexes:
            cursor.execute(sql)
    return {
        (f["model"], tuple(f["fields"])): f
        for f in findings("testapp")
        if f["index"] and not f["kind"].endswith("_in_database")
    }


@pytest.fixture
def expression_indexes() -> None:
    if not connection.features.supports_expression_indexes:
        pytest.skip("needs expression indexes: MariaDB has none (run with DBTUNE_DB=postgres)")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("code", "index", "served", "needs"),
    [
        # A partial index whose condition is the constant every call compares to: it is the
        # very partial index the rules would propose.
        (
            'Shelf.objects.filter(kind="staff").order_by("label")\n'
            'Shelf.objects.filter(kind="staff").order_by("label")[:10]\n',
            "CREATE INDEX shelf_staff_label ON testapp_shelf (label) WHERE kind = 'staff'",
            ("kind", "label"),
            "partial_indexes",
        ),
        # IS NULL, by either spelling of the call.
        (
            'Shelf.objects.filter(built=None).order_by("row")\n'
            'Shelf.objects.filter(built__isnull=True).order_by("row")\n',
            "CREATE INDEX shelf_unbuilt_row ON testapp_shelf (row) WHERE built IS NULL",
            ("built", "row"),
            "partial_indexes",
        ),
        # A boolean column alone, as PostgreSQL stores Q(is_public=True).
        (
            'Shelf.objects.filter(is_public=True).order_by("row")\n',
            "CREATE INDEX shelf_public_row ON testapp_shelf (row) WHERE is_public",
            ("is_public", "row"),
            "partial_indexes",
        ),
        # One of the values an IN condition lists.
        (
            'Shelf.objects.filter(kind="staff").order_by("row")\n',
            "CREATE INDEX shelf_kinds_row ON testapp_shelf (row) WHERE kind IN ('staff', 'x')",
            ("kind", "row"),
            "partial_indexes",
        ),
        # An expression index serves its leading plain column as a plain index does.
        (
            "Shelf.objects.filter(row=3)\n",
            "CREATE INDEX shelf_row_label ON testapp_shelf (row, lower(label))",
            ("row",),
            "expression_indexes",
        ),
    ],
    ids=["same-constant", "is-null", "boolean", "in-list", "expression-tail"],
)
def test_an_index_only_the_database_has_is_never_suggested_again(
    request, settings, tmp_path, code, index, served, needs
):
    request.getfixturevalue(needs)  # the kind of index the case builds, or a skip
    assert ("testapp.Shelf", served) in _suggested(settings, tmp_path, code)
    with_index = _suggested(settings, tmp_path, code, index)
    assert not [fields for model, fields in with_index if fields[-1] == served[-1]]


@pytest.mark.django_db
@pytest.mark.usefixtures("partial_indexes")
def test_a_partial_index_only_the_database_has_serves_no_other_query(settings, tmp_path):
    """(label) WHERE kind = 'staff' holds no public shelf: it leaves these unserved."""
    code = """
        Shelf.objects.filter(label="a")
        Shelf.objects.filter(kind="public").order_by("row")
        Shelf.objects.filter(is_public=False).order_by("built")
    """
    found = _suggested(
        settings,
        tmp_path,
        code,
        "CREATE INDEX shelf_staff_label ON testapp_shelf (label) WHERE kind = 'staff'",
        "CREATE INDEX shelf_staff_row ON testapp_shelf (row) WHERE kind = 'staff'",
        "CREATE INDEX shelf_public_built ON testapp_shelf (built) WHERE is_public",
    )
    assert {fields for _, fields in found} >= {("label",), ("kind", "row"), ("is_public", "built")}
    assert "no index leads with it" in found[("testapp.Shelf", ("label",))]["message"]


@pytest.mark.django_db
@pytest.mark.usefixtures("unindexed_foreign_keys", "partial_indexes")
def test_a_foreign_key_only_a_partial_index_has_lacks_an_index(settings, tmp_path):
    """Joins through the key read every row: a partial index on it serves none of them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE INDEX book_reviewed ON testapp_book (reviewer_id) WHERE title = 'x'"
        )
        cursor.execute(
            "CREATE INDEX book_sponsor_by_hand ON testapp_book (sponsor_id, upper(title))"
        )
    keys = {tuple(f["fields"]) for f in findings("testapp") if f["kind"] == "missing_fk_index"}
    assert ("reviewer",) in keys
    assert ("sponsor",) not in keys, "an expression index leads with the key"


@pytest.mark.django_db
def test_a_trigram_index_serves_the_search_it_was_made_for_and_no_other(
    postgres_only, settings, tmp_path
):
    """On upper(code), Django's icontains; not contains (case-sensitive), nor an order by
    code, which a GIN index never serves."""
    code = """
        Shelf.objects.filter(code__contains="a")
        Shelf.objects.filter(label__icontains="a")
        Shelf.objects.order_by("label")[:20]
    """
    found = _suggested(
        settings,
        tmp_path,
        code,
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE INDEX shelf_code_trgm ON testapp_shelf USING gin (upper(code) gin_trgm_ops)",
        "CREATE INDEX shelf_label_trgm ON testapp_shelf USING gin (upper(label) gin_trgm_ops)",
        "CREATE INDEX shelf_label_like ON testapp_shelf USING gin (label gin_trgm_ops)",
    )
    code_search = found[("testapp.Shelf", ("code",))]["index"]
    # The admin's search on code is icontains: served; the view's contains is not.
    assert code_search["sql"].endswith('USING gin ("code" gin_trgm_ops)')
    label = [f["index"] for (_, fields), f in found.items() if fields == ("label",)]
    assert [index["opclasses"] for index in label] == [[]], "only the sort is left"


def test_runsql_on_a_database_with_no_prefix_indexes_is_refused_before_writing(project):
    """--runsql writes MariaDB's and MySQL's TEXT prefix indexes; elsewhere it did nothing,
    without a word (and wrote the other indexes)."""
    from tests.test_writer import manage

    if project.env["DBTUNE_DB"] == "mariadb":
        pytest.skip("needs a database other than MariaDB/MySQL: run with DBTUNE_DB=sqlite")
    result = manage(project, "suggest_indexes", "--write", "--runsql", check=False)
    assert result.returncode == 1
    assert "--runsql writes MariaDB's and MySQL's prefix indexes" in result.stderr
    assert not list(project.glob("*/migrations/0002_*.py"))
