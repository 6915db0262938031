"""--write: Meta.indexes edits that keep the source as it was, and migrations Django agrees with."""

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from django_dbtune.advisor.writer import WriteError, add_meta_indexes
from tests.conftest import POSTGRES

ROOT = Path(__file__).resolve().parent.parent
ENTRY = 'models.Index(fields=["title"], name="book_title_idx")'


def edit(source, entries=(ENTRY,)):
    result = add_meta_indexes(source, "Book", list(entries))
    ast.parse(result)
    return result


def test_an_existing_list_keeps_its_comments_and_layout():
    source = """class Book(models.Model):
    title = models.CharField(max_length=9)  # the title

    class Meta:
        ordering = ["title"]
        indexes = [
            # by author
            models.Index(fields=["author"], name="book_author_idx"),
        ]  # end

    def __str__(self):
        return self.title
"""
    assert edit(source) == source.replace(
        "        ]  # end", f"            {ENTRY},\n        ]  # end"
    )


def test_a_last_element_without_a_comma_gets_one():
    source = """class Book(models.Model):
    class Meta:
        indexes = [
            models.Index(fields=["a"], name="a")
        ]
"""
    assert edit(source) == source.replace('name="a")\n', f'name="a"),\n            {ENTRY},\n')


def test_one_line_and_empty_lists():
    one_line = 'class Book(models.Model):\n    class Meta:\n        indexes = [models.Index(fields=["a"], name="a")]\n'
    assert edit(one_line).endswith(f'name="a"), {ENTRY}]\n')
    empty = "class Book(models.Model):\n    class Meta:\n        indexes = []\n"
    assert edit(empty) == (
        f"class Book(models.Model):\n    class Meta:\n        indexes = [\n            {ENTRY},\n        ]\n"
    )


def test_meta_without_indexes_and_a_model_without_meta():
    with_meta = 'class Book(models.Model):\n    title = 1\n\n    class Meta:\n        ordering = ["title"]\n\n\nX = 1\n'
    assert edit(with_meta) == with_meta.replace(
        '        ordering = ["title"]\n',
        f'        ordering = ["title"]\n        indexes = [\n            {ENTRY},\n        ]\n',
    )
    without = (
        "class Book(models.Model):\n    title = 1\n\n    def __str__(self):\n        return 'b'\n"
    )
    assert edit(without) == without.replace(
        "    def __str__",
        f"    class Meta:\n        indexes = [\n            {ENTRY},\n        ]\n\n    def __str__",
    )


def test_a_tuple_of_indexes_and_a_child_models_own_meta_are_edited():
    """NetBox declares indexes as tuples, in models with abstract parents whose own Meta
    the child replaces: both were refused (Django keeps no Meta on a concrete class, so the
    child's was taken for the parent's)."""
    source = (
        "class Book(Base):\n    class Meta:\n        ordering = ('title',)\n"
        "        indexes = (\n            models.Index(fields=['a'], name='a'),\n        )\n"
    )
    assert add_meta_indexes(source, "Book", [ENTRY], has_parent=True) == source.replace(
        "name='a'),\n", f"name='a'),\n            {ENTRY},\n"
    )
    one_line = "class Book(Base):\n    class Meta:\n        indexes = (models.Index(fields=['a'], name='a'),)\n"
    assert edit(one_line).endswith(f"name='a'), {ENTRY},)\n")
    inherits = "class Book(Base):\n    title = 1\n"
    with pytest.raises(WriteError, match="inherits its Meta from a parent model"):
        add_meta_indexes(inherits, "Book", [ENTRY], has_parent=True)


def test_an_empty_tuple_of_indexes_stays_a_tuple():
    source = "class Book(models.Model):\n    class Meta:\n        indexes = ()\n"
    assert edit(source) == (
        f"class Book(models.Model):\n    class Meta:\n        indexes = (\n            {ENTRY},\n        )\n"
    )


def test_a_closing_bracket_on_the_last_indexs_line_keeps_its_place():
    """Hanging indents (the closer after the last index): the new index goes on a line of
    its own at the same column; it used to be pasted into the middle of the last one."""
    hanging = (
        "class Book(models.Model):\n    class Meta:\n"
        "        indexes = (models.Index(fields=['a'], name='a'),\n"
        "                   models.Index(fields=['b'], name='b'))\n"
    )
    assert edit(hanging) == hanging.replace(
        "name='b'))", f"name='b'),\n                   {ENTRY})"
    )
    closed = (
        "class Book(models.Model):\n    class Meta:\n"
        "        indexes = [\n            models.Index(fields=['a'], name='a'),]\n"
    )
    assert edit(closed) == closed.replace("name='a'),]", f"name='a'),\n            {ENTRY},]")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("class Book(models.Model):\n    class Meta:\n        indexes = BASE + []\n", "computed"),
        ("Book = make_model()\n", "not defined at the top level"),
        ("class Book(models.Model):\n    class Meta: indexes = []\n", "one line"),
    ],
)
def test_what_cannot_be_edited_safely_is_refused(source, reason):
    with pytest.raises(WriteError, match=reason):
        add_meta_indexes(source, "Book", [ENTRY])


# --- the whole round trip, as a user runs it -------------------------------------------------


def manage(project, *args, check=True):
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project,
        env=project.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def indexes(project, table):
    code = (
        "import django, json; django.setup(); from django.db import connection as c; "
        f"print(json.dumps(sorted(c.introspection.get_constraints(c.cursor(), '{table}'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        env=project.env,
    )
    import json

    return set(json.loads(result.stdout))


def written_names(project):
    text = "".join(p.read_text() for p in project.glob("*/migrations/0002_dbtune_indexes.py"))
    return {
        line.split(", name='")[1].split("'")[0]
        for line in text.splitlines()
        if "models.Index(" in line
    }


def test_write_migrate_and_back(db_project):
    # MariaDB: no index for the URL's startswith (LIKE BINARY there), and none of the
    # website's recommendations (InnoDB indexes that foreign key itself).
    mariadb = db_project.env["DBTUNE_DB"] == "mariadb"
    count = 6 if mariadb else 8
    manage(db_project, "migrate", "-v0")
    before = {path: path.read_text() for path in db_project.rglob("*.py")}
    out = manage(db_project, "suggest_indexes", "--write").stdout
    assert f"{count} indexes written. Run 'manage.py migrate' to build them." in out
    changed = {
        p.relative_to(db_project).as_posix()
        for p in db_project.rglob("*.py")
        if before.get(p) != p.read_text()
    }
    assert changed == {
        "crawler/models.py",
        "marketplace/models.py",
        "publisher/models.py",
        "crawler/migrations/0002_dbtune_indexes.py",
        "marketplace/migrations/0002_dbtune_indexes.py",
        "publisher/migrations/0002_dbtune_indexes.py",
    }
    assert manage(db_project, "makemigrations", "--check", "--dry-run").stdout.strip() == (
        "No changes detected"
    )
    names = written_names(db_project)
    assert len(names) == count and all(len(name) <= 30 for name in names)
    manage(db_project, "migrate", "-v0")  # the migrations apply (on MariaDB too)
    present = indexes(db_project, "crawler_recommendation") | indexes(
        db_project, "crawler_pageresult"
    )
    assert {n for n in names if n.startswith("crawler_")} <= present
    rerun = manage(db_project, "suggest_indexes", "--format", "json").stdout
    assert "composite_candidate" not in rerun and "missing_fk_index" not in rerun
    left = [(f["kind"], f["fields"]) for f in json.loads(rerun) if f["kind"] != "redundant_index"]
    assert left == ([("unindexed_filter", ["url"])] if mariadb else [])
    # As a CI gate: only the redundant index (advice, low) remains (and on MariaDB the
    # startswith no index can serve, with its advice).
    gate = manage(
        db_project, "suggest_indexes", "--check", "--min-severity", "medium", check=False
    )
    assert gate.returncode == int(mariadb)
    assert (gate.stdout.strip() == "No findings.") is not mariadb
    for app in ("crawler", "marketplace", "publisher"):
        manage(db_project, "migrate", app, "0001", "-v0")
    back = indexes(db_project, "crawler_recommendation") | indexes(
        db_project, "crawler_pageresult"
    )
    assert not ({n for n in names if n.startswith("crawler_")} & back)


def test_a_models_file_in_latin_1_is_edited_and_stays_latin_1(project):
    """A models module with a PEP 263 cookie is read and written back in its encoding."""
    models_py = project / "publisher" / "models.py"
    text = models_py.read_text() + '\nGREETING = "caf\xe9"\n'
    models_py.write_bytes(("# -*- coding: latin-1 -*-\n" + text).encode("latin-1"))
    before = models_py.read_bytes()
    result = manage(project, "suggest_indexes", "publisher", "--write")
    assert "does not parse" not in result.stderr
    after = models_py.read_bytes()
    assert after != before
    assert after.endswith(b'GREETING = "caf\xe9"\n')  # one latin-1 byte, as it was
    assert after.decode("latin-1").count("models.Index(") > text.count("models.Index(")
    assert manage(project, "makemigrations", "--check", "--dry-run").stdout.strip() == (
        "No changes detected"
    )


def test_when_nothing_could_be_written_the_user_is_told_why_and_not_to_migrate(project):
    models_py = project / "publisher" / "models.py"
    models_py.write_text(
        models_py.read_text().replace(
            "class Post(models.Model):",
            "class Dated(models.Model):\n    class Meta:\n        abstract = True\n\n\n"
            "class Post(Dated):",
        )
    )
    result = manage(project, "suggest_indexes", "publisher", "--write")
    assert (
        "warning: wrote nothing for publisher.Post: Post inherits its Meta from a parent "
        "model; declaring Meta here would drop the parent's options. Add the index by hand.\n"
    ) in result.stderr
    assert ".." not in result.stderr
    assert result.stdout.rstrip().endswith("\nNo index written.")
    assert "migrate" not in result.stdout


def test_concurrently_writes_a_non_atomic_concurrent_migration(project):
    result = manage(project, "suggest_indexes", "--write", "--concurrently", check=False)
    if not POSTGRES:
        assert result.returncode == 1
        assert "--concurrently needs PostgreSQL" in result.stderr
        assert not list(project.glob("*/migrations/0002_*.py"))
        return
    assert result.returncode == 0, result.stderr
    migration = (project / "crawler/migrations/0002_dbtune_indexes.py").read_text()
    assert "atomic = False" in migration
    assert "AddIndexConcurrently" in migration
    manage(project, "migrate", "-v0")
    assert manage(project, "makemigrations", "--check", "--dry-run").returncode == 0


def test_a_read_only_models_file_leaves_every_file_as_it_was(project):
    if os.geteuid() == 0:
        pytest.skip(
            "needs a user other than root (root writes read-only files): run as another user; "
            "test_apply_writes_all_or_nothing covers the rest"
        )
    before = {path: path.read_text() for path in project.rglob("*.py")}
    target = project / "publisher" / "models.py"
    target.chmod(0o444)
    try:
        result = manage(project, "suggest_indexes", "--write", check=False)
    finally:
        target.chmod(0o644)
    assert result.returncode == 1
    assert "is not writable; nothing was written" in result.stderr
    assert {path: path.read_text() for path in project.rglob("*.py")} == before


def test_apply_writes_all_or_nothing(tmp_path):
    from django_dbtune.advisor.writer import PendingWrites, apply

    kept = tmp_path / "models.py"
    kept.write_text("original\n")
    unwritable = tmp_path / "no-such-folder" / "0002_x.py"
    with pytest.raises(WriteError, match="not writable; nothing was written"):
        apply(PendingWrites(files={kept: "changed\n", unwritable: "new\n"}))
    assert kept.read_text() == "original\n"
    assert not unwritable.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("unindexed_foreign_keys")
def test_a_name_that_is_taken_is_not_written_twice():
    from django_dbtune.advisor.suggest import static_report
    from django_dbtune.advisor.writer import prepare

    report = static_report(["testapp"], "default")
    reviewer = next(f for f in report.findings if f.fields == ("reviewer",))
    clash = replace(reviewer, index=replace(reviewer.index, name="book_editor_title"))
    result = prepare([clash])
    assert result.files == {}
    assert result.skipped == [
        ("testapp.Book", "an index named book_editor_title exists already; name it by hand")
    ]


@pytest.mark.django_db
def test_a_gin_index_is_left_to_a_runsql_not_written_as_a_btree(tmp_path, settings, postgres_only):
    """models.Index is a B-tree: written with gin_trgm_ops, every migrate would fail."""
    from django_dbtune.advisor.suggest import static_report
    from django_dbtune.advisor.writer import prepare

    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        "from tests.testapp.models import Listing, Shelf\n"
        'Shelf.objects.filter(label__icontains="x")\n'
        'Listing.objects.filter(attributes__has_key="colour")\n'
    )
    gin = [f for f in static_report(["testapp"], "default").findings if f.index and f.index.sql]
    assert {f.model for f in gin} == {"testapp.Shelf", "testapp.Listing"}
    settings.DBTUNE = {"PROJECT_ROOT": str(ROOT)}  # testapp's models are the project's
    result = prepare(gin)
    assert result.files == {}
    assert {label for label, _ in result.skipped} == {"testapp.Listing", "testapp.Shelf"}
    assert all("RunSQL" in reason for _, reason in result.skipped)
    # Not even with --runsql: the trigram index needs pg_trgm, which migrate may not create.
    assert prepare(gin, runsql=True).files == {}


def test_runsql_writes_the_index_meta_indexes_cannot_declare(db_project):
    """MariaDB: a TEXT column in an index of several columns needs a prefix length, which
    models.Index cannot state. --write leaves it, naming --runsql; --write --runsql writes
    it as a RunSQL of the app's migration, which migrate builds and unapplies."""
    if db_project.env["DBTUNE_DB"] != "mariadb":
        pytest.skip("needs MariaDB's TEXT prefix index: run with DBTUNE_DB=mariadb")
    (db_project / "publisher" / "search.py").write_text(
        "from publisher.models import Post\n\n\n"
        "def posts_saying(body):\n"
        "    return list(Post.objects.filter(body=body).order_by('-id'))\n"
    )
    manage(db_project, "migrate", "-v0")
    first = manage(db_project, "suggest_indexes", "publisher", "--write")  # the other indexes
    assert "(--runsql writes it)" in first.stderr
    assert "RunSQL" not in (db_project / "publisher/migrations/0002_dbtune_indexes.py").read_text()
    manage(db_project, "migrate", "-v0")
    out = manage(db_project, "suggest_indexes", "publisher", "--write", "--runsql").stdout
    assert "1 index written" in out
    migration = (db_project / "publisher/migrations/0003_dbtune_indexes.py").read_text()
    assert "migrations.RunSQL(" in migration and "`body`(100)" in migration
    assert "DROP INDEX" in migration
    [name] = re.findall(r"CREATE INDEX `(\w+)`", migration)
    twice = manage(db_project, "suggest_indexes", "publisher", "--write", "--runsql")
    assert f"creates {name} already: run migrate" in twice.stderr  # never a second copy
    assert not (db_project / "publisher/migrations/0004_dbtune_indexes.py").exists()
    manage(db_project, "migrate", "-v0")
    assert name in indexes(db_project, "publisher_post")
    again = json.loads(
        manage(db_project, "suggest_indexes", "publisher", "--format", "json").stdout
    )
    # Built, it is never suggested again; no model declares it, and the drift check says so.
    assert not [f for f in again if "body" in f["fields"] and f.get("index")]
    assert [f["kind"] for f in again if name in f["message"]] == ["unknown_in_database"]
    manage(db_project, "migrate", "publisher", "0002", "-v0")
    assert name not in indexes(db_project, "publisher_post")
