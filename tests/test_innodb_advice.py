"""Index advice on MariaDB (and MySQL): InnoDB indexes every foreign key constraint itself,
and the database has no partial indexes and compiles ``startswith`` to ``LIKE BINARY``."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, models
from django.db.models.functions import Lower
from django.test.utils import isolate_apps

from django_dbtune.advisor.drift import drift
from django_dbtune.advisor.schema_rules import redundant_indexes
from django_dbtune.schema import ModelSchema, actual_indexes, declared_indexes, model_schemas

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("mariadb_only")]


def findings(*apps):
    out = StringIO()
    call_command("suggest_indexes", *apps, "--format", "json", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


def foreign_key_columns(schema):
    return [
        field.column
        for field in schema.model._meta.local_concrete_fields
        if field.many_to_one and field.db_constraint
    ]


def test_no_foreign_key_is_reported_unindexed_since_innodb_indexes_each_one():
    schemas = model_schemas(["testapp", "crawler", "publisher"], "default")
    checked = 0
    for schema in schemas:
        for column in foreign_key_columns(schema):
            # What the advice rests on, read from the database: db_index=False or not.
            assert any(index.columns[:1] == (column,) for index in schema.actual), column
            assert schema.covers(column), column
            checked += 1
    assert checked > 10
    found = findings("testapp", "crawler", "publisher", "marketplace")
    assert [f for f in found if f["kind"] == "missing_fk_index"] == []


def test_the_indexes_innodb_makes_for_foreign_keys_are_no_drift():
    """Neither "the database has an index no model declares" (InnoDB's own, named after the
    constraint: MariaDB refuses to drop it) nor "the models declare a foreign key index the
    database lacks" (Django creates none on InnoDB; a unique_together leading with the
    column serves the constraint, as on a many-to-many table)."""
    schemas = model_schemas(["testapp", "crawler", "publisher", "marketplace"], "default")
    drifted = [
        (finding.kind, finding.model, finding.fields)
        for schema in schemas
        for finding in drift(schema)
        if set(finding.fields) & {f.name for f in schema.model._meta.fields if f.many_to_one}
        or any(c.endswith("_id") for c in finding.fields)
    ]
    assert drifted == []


def test_a_constant_every_call_compares_to_leads_a_whole_index_not_a_partial_one():
    found = findings("crawler")
    by_key = {(f["kind"], f["model"], tuple(f["fields"])): f for f in found}
    status = by_key[
        ("composite_candidate", "crawler.Recommendation", ("implementation_status", "-priority"))
    ]
    # Django ignores an index's condition on MariaDB: Index(fields=["-priority"],
    # condition=...) would build an index on priority alone.
    assert status["index"]["condition"] is None
    assert status["index"]["fields"] == ["implementation_status", "-priority"]
    assert "MariaDB has no partial indexes" in status["message"]
    assert 'condition=Q(implementation_status="open")' in status["message"]


def test_a_prefix_search_gets_no_index_that_like_binary_cannot_use():
    """Django's startswith is LIKE BINARY here, which no index on the column serves (the
    planner says so below); istartswith is a LIKE the index serves."""
    found = findings("crawler")
    url = next(f for f in found if f["model"] == "crawler.PageResult" and "url" in f["fields"])
    assert url["index"] is None
    assert "LIKE BINARY" in url["message"] and "istartswith" in url["advice"]
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX scratch_url ON crawler_pageresult (url)")
        try:
            from crawler.models import PageResult

            plans = {}
            for lookup in ("startswith", "istartswith"):
                sql, params = PageResult.objects.filter(
                    **{f"url__{lookup}": "https://a"}
                ).query.sql_with_params()
                cursor.execute("EXPLAIN " + sql, params)
                columns = [c[0] for c in cursor.description]
                plans[lookup] = dict(zip(columns, cursor.fetchone(), strict=True))
        finally:
            cursor.execute("DROP INDEX scratch_url ON crawler_pageresult")
    assert plans["startswith"]["key"] is None
    assert plans["istartswith"]["key"] == "scratch_url"


def test_a_contains_search_is_said_to_need_full_text_search():
    found = findings("testapp", "crawler", "publisher", "marketplace")
    searches = [f for f in found if "LIKE '%" in f["message"]]
    assert searches, "the test apps search with icontains"
    for finding in searches:
        assert finding["index"] is None
        assert "FULLTEXT" in finding["advice"] and "SQLite" not in finding["advice"]
        assert "trigram" not in finding["message"], "no trigram index on MariaDB"


def test_the_test_helpers_read_every_table_of_a_join_under_its_sort():
    from django_dbtune.advisor import planner
    from django_dbtune.testing import assert_no_seq_scan, assert_uses_index
    from tests.shop.models import Author, Book

    author = Author.objects.create(name="A")
    Book.objects.create(title="t", author=author)
    books = Book.objects.filter(author=author).select_related("author").order_by("title")
    sql, params = books.query.sql_with_params()
    plan = planner.explain(connection, sql, params, large_table=True)
    assert {access.table for access in plan.accesses} == {"shop_book", "shop_author"}
    assert_uses_index(books)
    assert_uses_index(books, "PRIMARY")  # the author, through its primary key
    assert_no_seq_scan(books)
    with pytest.raises(AssertionError, match="scans every row of shop_book"):
        assert_no_seq_scan(Book.objects.filter(title="t").select_related("author"))


def test_with_the_server_unreachable_the_models_are_still_checked_as_innodb(tmp_path):
    """``suggest_indexes --skip-checks`` on a MariaDB that does not answer: a warning, then
    the same advice from the models and the code (no call site left out because the server
    could not be asked which database it is)."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "example_project/manage.py", "suggest_indexes", "--skip-checks"],
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DBTUNE_DB": "mariadb",
            "DBTUNE_MARIADB_PORT": str(port),
        },
    )
    assert "is unreachable" in result.stderr and "Traceback" not in result.stderr
    assert "left out" not in result.stderr, result.stderr
    assert "LIKE BINARY on MariaDB or MySQL" in result.stdout
    assert "missing_fk_index" not in result.stdout


def test_a_redundant_index_is_tried_first_by_making_the_planner_ignore_it():
    """MariaDB 10.6+ can ignore an index at once and undo it as fast: the advice gives both
    statements, and both run."""
    found = findings("publisher")
    [redundant] = [f for f in found if f["kind"] == "redundant_index"]
    ignore = "ALTER TABLE `publisher_socialaccount` ALTER INDEX `publisher_account_platform_idx`"
    assert f"{ignore} IGNORED" in redundant["advice"]
    assert f"{ignore} NOT IGNORED" in redundant["advice"]
    state = (
        "SELECT DISTINCT IGNORED FROM information_schema.STATISTICS WHERE TABLE_SCHEMA ="
        " DATABASE() AND INDEX_NAME = 'publisher_account_platform_idx'"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"{ignore} IGNORED")
        cursor.execute(state)
        assert list(cursor.fetchall()) == [("YES",)]
        cursor.execute(f"{ignore} NOT IGNORED")
        cursor.execute(state)
        assert list(cursor.fetchall()) == [("NO",)]


def _text_findings(tmp_path, settings, body):
    from django_dbtune.advisor.candidates import index_findings
    from django_dbtune.advisor.queryset_chains import scan

    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        f"from tests.testapp.models import Note\ndef notes(owner, text):\n    {body}\n"
    )
    schemas = {s.label: s for s in model_schemas(["testapp"], "default")}
    found = index_findings(scan(tmp_path).usages, schemas)
    return [f for f in found if f.model == "testapp.Note" and "text" in f.fields]


def _built(statement):
    """Whether MariaDB builds the index (then dropped: DDL commits here)."""
    from django.db import DatabaseError

    name = statement.split("`")[1]
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            cursor.execute(f"DROP INDEX `{name}` ON testapp_note")
    except DatabaseError as error:
        return str(error)
    return True


def test_one_text_column_gets_a_plain_index_mariadb_prefixes_itself(tmp_path, settings):
    """MariaDB indexes a TEXT column alone by the longest prefix its key takes: the plain
    models.Index is proposed and written, and the statement its migration runs builds."""
    from tests.testapp.models import Note

    [finding] = _text_findings(tmp_path, settings, "return list(Note.objects.filter(text=text))")
    assert "MariaDB indexes the TEXT column text by a prefix" in finding.message
    assert finding.index.sql is None and finding.index.fields == ("text",)  # a models.Index
    index = finding.index.as_index()
    assert _built(str(index.create_sql(Note, connection.schema_editor(collect_sql=True)))) is True


def test_a_text_column_among_others_gets_a_prefix_index_as_runsql(tmp_path, settings):
    """With another column, the TEXT column's automatic prefix leaves the key no room: the
    migration of the models.Index fails (1071), so the advice is the prefix index as the
    RunSQL that builds it, or a CharField."""
    from django.db import models

    from django_dbtune.advisor.writer import prepare
    from tests.testapp.models import Note

    [finding] = _text_findings(
        tmp_path, settings, "return list(Note.objects.filter(text=text).order_by('-id'))"
    )
    assert "prefix" in finding.message and "CharField" in finding.advice
    sql = finding.index.sql
    assert sql is not None and "`text`(100)" in sql and f"RunSQL({sql!r}" in finding.advice
    assert prepare([finding]).files == {}, "never written as a models.Index"
    whole = models.Index(fields=list(finding.index.fields), name="note_text_whole")
    statement = str(whole.create_sql(Note, connection.schema_editor(collect_sql=True)))
    assert "1071" in _built(statement)  # the migration's own statement fails
    assert _built(sql) is True  # the one the advice gives builds


@pytest.fixture
def label_table(transactional_db):
    """A model whose expression index and unique constraint Django does not build on MariaDB
    (its checks warn), and whose db_index is redundant under a unique_together."""
    with isolate_apps("tests.testapp"):

        class Crate(models.Model):
            class Meta:
                app_label = "testapp"

            def __str__(self):
                return str(self.pk)

        class Label(models.Model):
            shelf = models.ForeignKey(Crate, models.CASCADE)
            name = models.CharField(max_length=50)
            code = models.SlugField()  # db_index=True
            status = models.CharField(max_length=10)

            class Meta:
                app_label = "testapp"
                unique_together = [("code", "status")]
                indexes = [
                    models.Index(Lower("name"), name="label_name_lower"),
                    models.Index(fields=["shelf", "status"], name="label_shelf_status"),
                ]
                constraints = [models.UniqueConstraint(Lower("name"), name="label_name_ci_unique")]

            def __str__(self):
                return self.name

        with connection.schema_editor() as editor:
            editor.create_model(Crate)
            editor.create_model(Label)
        try:
            yield lambda: ModelSchema(
                Label,
                "default",
                declared_indexes(Label, connection),
                actual_indexes(Label, connection),
                table_found=True,
            )
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(Label)
                editor.delete_model(Crate)


def test_what_django_does_not_build_here_is_not_reported_missing(label_table):
    """Run 'manage.py migrate' would never build them: Django skips both on MariaDB."""
    assert [f.kind for f in drift(label_table())] == []


def test_a_redundant_db_index_is_tried_first_under_the_name_the_database_gave_it(label_table):
    [redundant] = redundant_indexes(label_table())
    assert redundant.fields == ("code",)
    [name] = [i.name for i in label_table().actual if i.columns == ("code",)]
    ignore = f"ALTER TABLE `testapp_label` ALTER INDEX `{name}`"
    assert f"{ignore} IGNORED" in redundant.advice
    assert f"{ignore} NOT IGNORED" in redundant.advice
    assert "Remove the db_index declaration" in redundant.advice


def test_a_foreign_key_index_a_dump_restored_under_a_composite_is_said_to_be_redundant(
    label_table,
):
    """InnoDB drops the index it made for a foreign key once a composite leads with its
    column; a dump restores it as an ordinary index, which stays. Declaring it in
    Meta.indexes would keep an index that serves nothing: the advice is to drop it."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX label_shelf_restored ON testapp_label (shelf_id)")
    [unknown] = [f for f in drift(label_table()) if f.kind == "unknown_in_database"]
    assert "label_shelf_status on (shelf_id, status) leads with the same" in unknown.message
    assert "Declare it" not in unknown.advice
    assert "ALTER TABLE `testapp_label` ALTER INDEX `label_shelf_restored` IGNORED" in (
        unknown.advice
    )
    assert "Drop it (DROP INDEX `label_shelf_restored` ON `testapp_label`)" in unknown.advice


def test_a_whole_index_is_said_to_lead_with_the_constant_column_only_when_it_does(
    tmp_path, settings
):
    from django_dbtune.advisor.candidates import index_findings
    from django_dbtune.advisor.queryset_chains import scan

    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        "from crawler.models import Recommendation\n"
        + "".join(  # two call sites agree on the constant: a partial index on PostgreSQL
            f"def open_of_{n}(website):\n"
            "    return Recommendation.objects.filter(website=website, "
            'implementation_status="open").order_by("-priority")\n'
            for n in (1, 2)
        )
    )
    schemas = {s.label: s for s in model_schemas(["crawler"], "default")}
    found = index_findings(scan(tmp_path).usages, schemas)
    [whole] = [f for f in found if "has no partial indexes" in f.message]
    assert whole.index.fields[0] == "website"
    assert "so this one has among its columns implementation_status." in whole.message


def test_an_undeclared_fulltext_index_is_never_said_to_be_redundant(label_table):
    """MATCH ... AGAINST needs it, whatever B-tree leads with the same column."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE FULLTEXT INDEX label_name_words ON testapp_label (name)")
        cursor.execute("CREATE INDEX label_name_status ON testapp_label (name, status)")
    [unknown] = [f for f in drift(label_table()) if "label_name_words" in f.message]
    assert "leads with the same" not in unknown.message
    assert unknown.advice.startswith("Declare it in Meta.indexes")
