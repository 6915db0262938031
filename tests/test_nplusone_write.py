"""``dbtune_nplusone --write``: proven fixes written into the source with libcst, where the
queryset is built, keeping formatting and comments; anything else left as it was."""

import importlib
import json
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import pytest

from django_dbtune.findings import NPlusOneFinding, Proof
from django_dbtune.fix_targets import FixTarget, RowCall
from django_dbtune.nplusone import codemod
from tests.test_nplusone import shop  # noqa: F401  (fixture)
from tests.test_writer import manage

PROVEN = Proof("proven", before=11, after=1, status_before=200, status_after=200)

N_PLUS_ONE_PAGES = [
    "/crawler/pages/",
    "/publisher/businesses/",
    "/publisher/posts/",
    "/marketplace/jobs/",
    "/marketplace/freelancers/",
]


def counts(project):
    out = manage(project, "dbtune_capture", *N_PLUS_ONE_PAGES, "--format", "json").stdout
    return {page["url"]: page["queries"] for page in json.loads(out)}


def test_write_fixes_every_n_plus_one_of_the_example_project(project):
    """Every N+1 of KNOWN_ISSUES.md written, and no page's count grows with its rows."""
    manage(project, "migrate", "-v0")
    manage(project, "seed_demo", "--reset", "--scale", "0.3")
    out = manage(project, "dbtune_nplusone", *N_PLUS_ONE_PAGES, "--write").stdout
    assert out.count("Wrote ") == 5, out
    assert "Not written" not in out
    views = (project / "marketplace" / "views.py").read_text()
    assert "from django.db.models import Count" in views
    assert "profile.applications_count" in views
    annotated = 'annotate(applications_count=Count("applications", distinct=True))'
    assert f"UserProfile.objects.{annotated}" in views
    small = counts(project)
    manage(project, "seed_demo", "--reset", "--scale", "0.6")
    assert counts(project) == small
    assert all(count <= 3 for count in small.values()), small
    out = manage(project, "dbtune_nplusone", *N_PLUS_ONE_PAGES, "--check", "--no-proof")
    assert out.returncode == 0


def module(tmp_path, monkeypatch, source, name="fixme"):
    """A project module with ``source``, imported."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    return path, importlib.import_module(name)


def finding(target, proof=PROVEN, call_site=None):
    return NPlusOneFinding(
        "n_plus_one", "shop.Book.author", 10, call_site, None, "x", target=target, proof=proof
    )


def plan(*findings):
    return codemod.plan(findings, since=time.time() + 1)


def test_an_existing_select_related_call_gets_the_path_and_comments_stay(tmp_path):
    path = tmp_path / "views.py"
    path.write_text(
        "def books():\n"
        "    # the list\n"
        '    return Book.objects.select_related("publisher").order_by("id")  # keep\n'
    )
    target = FixTarget("add", select_related=("author",), file=str(path), line=3)
    edits = plan(finding(target))
    assert edits.files[path] == (
        "def books():\n"
        "    # the list\n"
        '    return Book.objects.select_related("publisher", "author").order_by("id")  # keep\n'
    )


def test_a_chain_over_several_lines_gets_one_call_after_its_manager(tmp_path):
    path = tmp_path / "views.py"
    path.write_text(
        'books = (\n    Book.objects.filter(title__startswith="a")\n    .order_by("id")[:10]\n)\n'
    )
    target = FixTarget("add", prefetch_related=("tags",), file=str(path), line=3)
    [(_, place)] = plan(finding(target)).written
    assert place.endswith("views.py:3")
    text = plan(finding(target)).files[path]
    assert 'Book.objects.prefetch_related("tags").filter(title__startswith="a")' in text
    assert '.order_by("id")[:10]' in text


def test_an_admin_list_select_related_is_replaced_not_duplicated(tmp_path, monkeypatch):
    path, mod = module(
        tmp_path,
        monkeypatch,
        """
        class ModelAdmin:  # stands for django.contrib.admin.ModelAdmin
            pass

        def register(cls):
            return cls

        @register
        class BookAdmin(ModelAdmin):
            list_display = ["title", "author"]
            list_select_related = ("author",)  # joined
        """,
    )
    target = FixTarget(
        "add", list_select_related=("author", "editor"), owner_class=mod.BookAdmin, owner="x"
    )
    text = plan(finding(target)).files[path]
    assert text.count("list_select_related") == 1
    assert 'list_select_related = ("author", "editor")  # joined' in text


def test_an_admin_without_the_attribute_gets_it_after_list_display(tmp_path, monkeypatch):
    path, mod = module(
        tmp_path,
        monkeypatch,
        """
        class BookAdmin:
            \"\"\"Books.\"\"\"

            list_display = ["title", "author"]
            search_fields = ["title"]
        """,
    )
    target = FixTarget("add", list_select_related=("author",), owner_class=mod.BookAdmin)
    text = plan(finding(target)).files[path]
    expected = '    list_display = ["title", "author"]\n    list_select_related = ("author",)\n'
    assert expected in text


def test_an_existing_get_queryset_is_edited_never_replaced(tmp_path, monkeypatch):
    path, mod = module(
        tmp_path,
        monkeypatch,
        """
        class TagAdmin:
            def get_queryset(self, request):
                # only live tags
                return super().get_queryset(request).filter(live=True)
        """,
    )
    target = FixTarget("add", prefetch_related=("books",), owner_class=mod.TagAdmin)
    text = plan(finding(target)).files[path]
    assert text.count("def get_queryset") == 1
    assert "# only live tags" in text
    assert (
        'return super().get_queryset(request).prefetch_related("books").filter(live=True)' in text
    )


def test_a_view_with_a_queryset_attribute_has_it_edited(tmp_path, monkeypatch):
    path, mod = module(
        tmp_path,
        monkeypatch,
        """
        class Manager:  # stands for Book.objects
            def order_by(self, *fields):
                return self

        class Book:
            objects = Manager()

        class BookList:
            queryset = Book.objects.order_by("id")
        """,
    )
    target = FixTarget("add", select_related=("author",), owner_class=mod.BookList)
    text = plan(finding(target)).files[path]
    assert 'queryset = Book.objects.select_related("author").order_by("id")' in text


def test_unproven_changed_or_unrecognised_fixes_are_left_with_a_reason(tmp_path):
    path = tmp_path / "views.py"
    path.write_text("a = Book.objects.all(); b = Author.objects.all()\nc = 1\n")
    two = FixTarget("add", select_related=("author",), file=str(path), line=1)
    none = FixTarget("add", select_related=("author",), file=str(path), line=2)
    unproven = Proof("unproven", reason="x")
    edits = plan(finding(two), finding(none), finding(two, proof=unproven))
    assert edits.files == {}
    reasons = [why for _, why in edits.skipped]
    assert "more than one queryset chain on line 1; edit it by hand" in reasons
    assert "no queryset chain (Model.objects...) on line 2" in reasons
    assert "its fix is not proven" in reasons
    changed = codemod.plan([finding(two)], since=time.time() - 60)
    assert "changed after the pages ran" in changed.skipped[0][1]


def test_a_fix_for_subclass_rows_is_left_for_the_user_to_paste(tmp_path):
    path = tmp_path / "models.py"
    source = "def children(self):\n    return self.get_children().specific().live()\n"
    path.write_text(source)
    target = FixTarget("add", specific_select=("image",), file=str(path), line=2)
    edits = plan(finding(target))
    assert edits.files == {}
    assert "for_specific_subqueries" in edits.skipped[0][1]
    assert path.read_text() == source


def test_a_fix_for_a_queryset_a_template_builds_leaves_the_template_as_it_was(tmp_path):
    path = tmp_path / "detail.html"
    source = "{% for book in author.books.summarized %}{{ book.editor.name }}{% endfor %}\n"
    path.write_text(source)
    target = FixTarget("add", select_related=("editor",), file=str(path), line=1, in_template=True)
    edits = plan(finding(target))
    assert edits.files == {}
    assert "build it in the view" in edits.skipped[0][1]
    assert path.read_text() == source


def test_a_fix_in_a_subclass_of_an_installed_view_is_left_for_the_user_to_paste():
    from tests.shop.library import Listing

    target = FixTarget(
        "add",
        select_related=("author",),
        owner="tests.shop.library.Listing",
        owner_class=Listing,
        in_subclass=True,
    )
    edits = plan(finding(target))
    assert edits.files == {}
    assert "a subclass of an installed class" in edits.skipped[0][1]


def test_a_fix_for_a_count_written_by_hand_is_left_for_the_user_to_paste(tmp_path):
    """The annotation alone changes nothing: the code that counts per row must read it."""
    path = tmp_path / "views.py"
    source = "def rows():\n    return Author.objects.order_by('id')\n"
    path.write_text(source)
    call = RowCall("count", "books_count", "Coalesce(...)", "models.py", 9, "shop.models")
    target = FixTarget("add", row_calls=(call,), file=str(path), line=2)
    edits = plan(finding(target))
    assert edits.files == {}
    assert "paste the fix and change that code" in edits.skipped[0][1]
    assert path.read_text() == source


def test_a_count_fix_changes_the_read_too_or_nothing(tmp_path):
    path = tmp_path / "views.py"
    path.write_text(
        "from django.db import models\n"
        "\n"
        "def rows():\n"
        "    authors = Author.objects.order_by('id')\n"
        "    return [a.books.count() for a in authors]\n"
    )
    target = FixTarget("add", count_annotations=("books",), file=str(path), line=4)
    text = plan(finding(target, call_site=f"{path}:5 in rows")).files[path]
    assert "from django.db.models import Count" in text
    annotated = 'annotate(books_count=Count("books", distinct=True))'
    assert f"Author.objects.{annotated}.order_by('id')" in text
    # An author this queryset did not load (a created one) counts as before.
    read = 'a.books_count if hasattr(a, "books_count") else a.books.count()'
    assert f"return [{read} for a in authors]" in text
    elsewhere = plan(finding(target, call_site=f"{path}:3 in rows"))
    assert elsewhere.files == {}
    assert "no .<relation>.count() call on line 3" in elsewhere.skipped[0][1]


def test_a_count_read_where_no_edit_goes_leaves_the_count_and_writes_the_eager_loads(tmp_path):
    """A REST framework serializer method counts per row (its line is not the finding's
    trigger, or cannot be edited): the whole fix was left unwritten, the select_related the
    page needs with it, and the page stayed at 103 queries."""
    path = tmp_path / "views.py"
    path.write_text("def rows():\n    return Book.objects.order_by('id')\n")
    target = FixTarget(
        "add", select_related=("author",), count_annotations=("tags",), file=str(path), line=2
    )
    fix = '.select_related("author").annotate(tags_count=Count("tags", distinct=True))'
    unknown = NPlusOneFinding(
        "n_plus_one", "shop.Book.author", 10, None, None, fix, target=target, proof=PROVEN
    )
    edits = plan(unknown)
    assert edits.files[path] == (
        "def rows():\n    return Book.objects.select_related(\"author\").order_by('id')\n"
    )
    [(written, _)] = edits.written
    assert written.fix == '.select_related("author")'
    [(_, why)] = edits.skipped
    assert (
        why == "the line that reads each row is not known; the count is not written, the rest is"
    )
    # When the rest cannot be written either, nothing is, and the output does not say it was.
    elsewhere = replace(unknown, target=replace(target, line=1))
    edits = plan(elsewhere)
    assert edits.files == {} and edits.written == []
    assert edits.skipped == [(elsewhere, "the line that reads each row is not known")]


def test_a_count_fix_is_written_only_where_every_count_it_answers_is_read(tmp_path):
    """One fix annotates two counts, read on two lines: rewriting the one on the finding's
    line left the other running once per row, a fix other than the one proven."""
    path = tmp_path / "views.py"
    source = (
        "def rows():\n"
        "    authors = Author.objects.order_by('id')\n"
        "    return [\n"
        "        (a.books.count(),\n"
        "         a.tags.count()) for a in authors]\n"
    )
    path.write_text(source)
    target = FixTarget("add", count_annotations=("books", "tags"), file=str(path), line=2)
    edits = plan(finding(target, call_site=f"{path}:4 in rows"))
    assert edits.files == {}
    assert "no .tags.count() call on line 4" in edits.skipped[0][1]


def test_a_count_is_not_annotated_on_a_viewset_queryset_its_actions_read_too():
    """An annotation written on a viewset's ``queryset`` attribute joined the counted
    table under its other actions too: a ``stats`` action counting issues per status over
    that queryset then counted each issue once per comment. The eager loads are written,
    the count is left."""
    from tests.shop.views import LoadedBookViewSet

    target = FixTarget(
        "add",
        select_related=("editor",),
        count_annotations=("tags",),
        owner="tests.shop.views.LoadedBookViewSet",
        owner_class=LoadedBookViewSet,
    )
    fix = '.select_related("editor").annotate(tags_count=Count("tags", distinct=True))'
    found = NPlusOneFinding(
        "n_plus_one", "shop.Book.editor", 10, None, None, fix, target=target, proof=PROVEN
    )
    edits = plan(found)
    [(path, text)] = edits.files.items()
    assert path.name == "views.py"
    assert 'Book.objects.select_related("author", "editor").order_by("id")' in text
    assert "tags_count" not in text
    [(_, why)] = edits.skipped
    assert "serves its actions title too" in why


def test_the_count_import_goes_where_isort_puts_it_not_below_relative_imports(tmp_path):
    """A written fix must not fail the project's linter: libcst added the import after
    ``from .models import ...``, which ruff's and isort's import order reject."""
    path = tmp_path / "views.py"
    path.write_text(
        "from django.shortcuts import render\n"
        "\n"
        "from .models import Author\n"
        "\n"
        "\n"
        "def rows(request):\n"
        "    authors = Author.objects.order_by('id')\n"
        "    return [a.books.count() for a in authors]\n"
    )
    target = FixTarget("add", count_annotations=("books",), file=str(path), line=7)
    text = plan(finding(target, call_site=f"{path}:8 in rows")).files[path]
    assert text.startswith(
        "from django.db.models import Count\n"
        "from django.shortcuts import render\n"
        "\n"
        "from .models import Author\n"
    )
    checked = tmp_path / "checked.py"
    checked.write_text(text)
    ruff = shutil.which("ruff")
    if ruff is not None:  # the linter a project runs: its import order holds
        done = subprocess.run(
            [ruff, "check", "--isolated", "--select", "I", str(checked)], capture_output=True
        )
        assert done.returncode == 0, done.stdout.decode()


def test_every_fix_of_one_file_is_written_when_an_earlier_one_moves_its_lines(
    tmp_path, monkeypatch
):
    """Two admin pages in one --write: the count fix adds an import at the top and a method,
    which moved every line the next fix was located by ("BookAdmin is not found")."""
    path, mod = module(
        tmp_path,
        monkeypatch,
        """
        from django.contrib import admin
        # one line less than register()

        @admin.display
        class BookAdmin(admin.ModelAdmin):
            list_display = ["title", "tag_list"]

            def tag_list(self, obj):
                return ", ".join(t.label for t in obj.tags.all())

        @admin.display
        class AuthorAdmin(admin.ModelAdmin):
            list_display = ["name", "book_count"]

            def book_count(self, obj):
                return obj.books.count()

        def shelf():
            return Book.objects.order_by("id")
        """,
    )
    count = FixTarget("add", count_annotations=("books",), owner_class=mod.AuthorAdmin)
    tags = FixTarget("add", prefetch_related=("tags",), owner_class=mod.BookAdmin)
    chain = FixTarget("add", select_related=("author",), file=str(path), line=20)
    edits = plan(
        finding(count, call_site=f"{path}:17 in book_count"), finding(tags), finding(chain)
    )
    assert edits.skipped == []
    text = edits.files[path]
    assert "from django.db.models import Count" in text
    assert 'super().get_queryset(request).prefetch_related("tags")' in text
    annotated = 'annotate(books_count=Count("books", distinct=True))'
    assert f"super().get_queryset(request).{annotated}" in text
    read = 'obj.books_count if hasattr(obj, "books_count") else obj.books.count()'
    assert f"return {read}\n\n    def get_queryset" in text  # a blank line between
    assert text.index("import Count") > text.index("from django.contrib import admin")
    assert 'return Book.objects.select_related("author").order_by("id")' in text
    # Each place as the written file has it: the methods and the import moved the chain.
    lines = text.splitlines()
    line = lines.index('    return Book.objects.select_related("author").order_by("id")') + 1
    assert line > 20
    places = [place.rpartition("/")[2] for _, place in edits.written]
    assert places == ["fixme.py", "fixme.py", f"fixme.py:{line}"]
    compile(text, str(path), "exec")


def test_a_page_the_written_fixes_break_is_said_and_fails_the_command():
    """After --write, a page that answered 500 printed "36 -> 0 queries", and the command
    ended as if all went well."""
    from django_dbtune.management.pages import Page, after_writing

    before = [Page("/projects/1/", 200, queries=36), Page("/projects/", 200, queries=12)]
    after = {"/projects/1/": Page("/projects/1/", 500, queries=0)}
    lines, problem = after_writing(before, after)
    assert lines == [
        "  GET /projects/1/  36 -> 0 queries, status 500 (was 200)",
        "  GET /projects/  12 -> ? queries (not requested)",
    ]
    assert problem.startswith("A page answers differently with the fixes written: /projects/1/")
    assert "/projects/ (not requested again)" in problem
    # The pages could not be requested at all (an edit broke an import): said, and a failure.
    lines, problem = after_writing(before[1:], {}, "SyntaxError: invalid syntax")
    assert lines == [
        "  GET /projects/  12 -> ? queries (not requested: SyntaxError: invalid syntax)"
    ]
    assert problem
    assert after_writing(before[1:], {"/projects/": Page("/projects/", 200, queries=2)}) == (
        ["  GET /projects/  12 -> 2 queries"],
        "",
    )


@pytest.mark.usefixtures("shop")
def test_a_template_count_below_the_first_load_is_written_on_its_own_line():
    """The template reads the publisher on line 2 and counts the books on line 3: the
    merged fix looked for the count on line 2 ("no .count of the relation on template line
    2") and nothing was written."""

    from django.template.loader import render_to_string

    from django_dbtune.nplusone import detect
    from tests.shop.models import Author

    with detect() as report:
        authors = Author.objects.order_by("id")
        render_to_string("shop/author_counts.html", {"authors": authors})
    [found] = report.findings
    assert found.call_site.endswith("author_counts.html:2")
    edits = plan(replace(found, proof=PROVEN))
    assert edits.skipped == []
    [template] = [path for path in edits.files if path.name == "author_counts.html"]
    assert edits.files[template].splitlines()[2] == "{{ author.books_count }} books"
