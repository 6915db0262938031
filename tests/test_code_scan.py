"""The code scan reads querysets from source files and turns them into index findings."""

import textwrap
from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import call_command

from django_dbtune.advisor.candidates import index_findings
from django_dbtune.advisor.queryset_chains import scan
from django_dbtune.schema import model_schemas

SOURCE = """
from django.db.models import Q
from django.shortcuts import get_object_or_404
from tests.testapp.models import Author, Book, Shelf


def related_lookup():
    return list(Book.objects.filter(author__name="Ada"))  # related


def q_objects():
    return Author.objects.filter(Q(name="a") | Q(email="b")).count()  # q-object


def in_a_loop(days):
    for day in days:
        Shelf.objects.filter(label="x", built__gte=day).order_by("built")  # loop


def boolean_alone():
    return Shelf.objects.filter(is_public=True)  # boolean


def same_constant_twice():
    first = Shelf.objects.filter(kind="staff").order_by("row")  # staff-1
    return first, Shelf.objects.filter(kind="staff").count()  # staff-2


def newest_by_name(name):
    return Author.objects.filter(name=name).latest("-email")  # latest


def newest_shelf():
    return Shelf.objects.filter(code="c").earliest()  # earliest


class ShelfViewSet:  # a Django REST framework view
    queryset = Shelf.objects.all()
    filterset_fields = ["label", "is_public", "room"]  # drf-filter
    ordering_fields = ("built", "row")  # drf-order


class AuthorFilter:  # a django-filter FilterSet
    class Meta:
        model = Author
        fields = ["name"]


def sorted_by_a_variable(key):
    return Shelf.objects.order_by(key)  # dynamic


def through_a_variable_and_an_instance(pk):
    author = get_object_or_404(Author, pk=pk)
    books = author.books.all()
    books = books.filter(title="x")  # covered-by-fk
    shelves = Shelf.objects.exclude(code="z")  # covered-exclude
    return books, shelves.filter(room="r")  # covered-unique-together
"""


def line(marker):
    return next(n for n, text in enumerate(SOURCE.splitlines(), 1) if f"# {marker}" in text)


@pytest.fixture
def project(tmp_path, settings):
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(SOURCE)
    (tmp_path / "broken.py").write_text("def nope(:\n")
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_x.py").write_text(
        "from tests.testapp.models import Shelf\nShelf.objects.filter(label='m')\n"
    )
    return tmp_path


def findings_of(root):
    schemas = {s.label: s for s in model_schemas(["testapp"], "default", read_database=False)}
    return {(f.kind, f.model, f.fields): f for f in index_findings(scan(root).usages, schemas)}


def lines_of(finding):
    return sorted(item.line for item in finding.evidence)


@pytest.mark.usefixtures("partial_indexes", "indexable_startswith")
def test_each_form_gives_the_index_that_serves_it(project):
    found = findings_of(project)
    assert set(found) == {
        # latest("-email") after a filter on name: one index serves it and the name filters.
        ("composite_candidate", "testapp.Author", ("name", "email")),
        ("composite_candidate", "testapp.Shelf", ("label", "built")),
        ("composite_candidate", "testapp.Shelf", ("kind", "row")),
        ("cannot_tell", "testapp.Shelf", ()),
        ("unindexed_filter", "testapp.Shelf", ("built",)),  # DRF ordering_fields
        ("unindexed_filter", "testapp.Shelf", ("row",)),  # DRF ordering_fields
    }
    name = found[("composite_candidate", "testapp.Author", ("name", "email"))]
    assert lines_of(name) == [line("related"), line("q-object"), line("latest")]
    assert name.severity == "medium"
    loop = found[("composite_candidate", "testapp.Shelf", ("label", "built"))]
    assert loop.severity == "high", "a query in a loop runs once per item"
    assert lines_of(loop) == sorted([line("drf-filter"), line("loop")])
    staff = found[("composite_candidate", "testapp.Shelf", ("kind", "row"))]
    assert staff.index.fields == ("row",)
    assert staff.index.condition == 'Q(kind="staff")'
    assert lines_of(staff) == [line("staff-1"), line("staff-2")]
    assert lines_of(found[("cannot_tell", "testapp.Shelf", ())]) == [line("dynamic")]


def test_files_that_do_not_parse_are_skipped_and_said(project):
    result = scan(project)
    assert [path for path, _ in result.skipped] == ["broken.py"]
    assert "SyntaxError" in result.skipped[0][1]


@pytest.mark.django_db
def test_a_file_with_a_coding_cookie_is_read_in_its_encoding(tmp_path, settings):
    """Python reads a file in the encoding its PEP 263 cookie names; so does the scan."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "legacy.py").write_bytes(
        b"# -*- coding: latin-1 -*-\n"
        b"from tests.testapp.models import Shelf\n"
        b'Shelf.objects.filter(label="caf\xe9", built__gte=1).order_by("built")\n'
    )
    out, err = StringIO(), StringIO()
    call_command("suggest_indexes", "testapp", stdout=out, stderr=err)
    assert "does not parse" not in err.getvalue()
    assert "legacy.py:3" in out.getvalue()


def test_migrations_and_tests_are_not_scanned(project):
    (project / "tests").mkdir()
    (project / "tests" / "helpers.py").write_text(
        "from tests.testapp.models import Shelf\nShelf.objects.filter(label='t')\n"
    )
    (project / "test_views.py").write_text(
        "from tests.testapp.models import Shelf\nShelf.objects.filter(label='t')\n"
    )
    files = {usage.file for usage in scan(project).usages}
    assert files == {"views.py"}


def test_installed_code_inside_the_project_is_not_scanned(project):
    # The same rule as everywhere else decides what is installed code: site-packages and
    # dist-packages folders (a system Python's), and virtual environments.
    query = "from tests.testapp.models import Shelf\nShelf.objects.filter(label='i')\n"
    for folder in ("site-packages/shop", "lib/python3/dist-packages/shop", "env/bin"):
        (project / folder).mkdir(parents=True)
        (project / folder / "views.py").write_text(query)
    (project / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    files = {usage.file for usage in scan(project).usages}
    assert files == {"views.py"}


def test_one_constant_at_one_site_is_no_reason_for_a_partial_index(tmp_path, settings):
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from tests.testapp.models import Shelf
            Shelf.objects.filter(kind="staff").order_by("row")
        """)
    )
    (finding,) = findings_of(tmp_path).values()
    assert finding.index.fields == ("kind", "row")
    assert finding.index.condition is None


def test_a_partial_index_is_only_for_call_sites_that_compare_to_its_constant(tmp_path, settings):
    """Two views filter kind="staff"; a command excludes two kinds at once (Wagtail's
    purge_revisions: status is in progress OR needs changes). An index on kind WHERE
    kind="staff" would serve neither side of that OR: the index its evidence names is a
    plain one."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from django.db.models import Q
            from tests.testapp.models import Shelf
            Shelf.objects.filter(kind="staff", row=1)
            Shelf.objects.filter(kind="staff", row=2)
            Shelf.objects.exclude(Q(kind="staff") | Q(kind="public"))  # either
        """)
    )
    either = [
        finding
        for finding in findings_of(tmp_path).values()
        if any(site.code.endswith("# either") for site in finding.evidence)
    ]
    assert [finding.index.condition for finding in either] == [None]


def test_latest_sorts_by_get_latest_by_descending(project):
    usages = {usage.line: usage for usage in scan(project).usages}
    assert usages[line("latest")].sort == ["email"], "latest('-email') sorts email ascending"
    assert usages[line("earliest")].sort == ["built"]


def test_rest_framework_filterset_and_ordering_fields(project):
    found = findings_of(project)
    # The label filter is a leading prefix of the loop's (label, built): one index for both.
    label = found[("composite_candidate", "testapp.Shelf", ("label", "built"))]
    assert line("drf-filter") in lines_of(label)
    built = found[("unindexed_filter", "testapp.Shelf", ("built",))]
    assert lines_of(built) == [line("drf-order")]
    # room leads unique_together; is_public is a boolean; row is second in (room, row).
    assert ("unindexed_filter", "testapp.Shelf", ("room",)) not in found
    assert ("unindexed_filter", "testapp.Shelf", ("is_public",)) not in found
    assert found[("unindexed_filter", "testapp.Shelf", ("row",))].severity == "medium"


def test_case_insensitive_lookups_get_no_plain_index(tmp_path, settings):
    # iexact and istartswith compare UPPER(column) on PostgreSQL, which no plain index on
    # the column serves; startswith is a prefix search an index can serve.
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from tests.testapp.models import Author, Shelf
            Author.objects.filter(name__iexact="ada")
            Shelf.objects.filter(label__istartswith="a")
            Shelf.objects.exclude(code__iexact="z")
            Shelf.objects.filter(label__startswith="a")  # prefix
        """)
    )
    found = findings_of(tmp_path)
    assert set(found) == {("unindexed_filter", "testapp.Shelf", ("label",))}
    (site,) = found[("unindexed_filter", "testapp.Shelf", ("label",))].evidence
    assert site.code.endswith("# prefix")


def test_isnull_is_an_equality_filter(tmp_path, settings):
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from tests.testapp.models import Shelf
            Shelf.objects.filter(built__isnull=True).order_by("row")
            Shelf.objects.filter(built__isnull=True).order_by("row")
        """)
    )
    (finding,) = findings_of(tmp_path).values()
    assert (finding.kind, finding.fields) == ("composite_candidate", ("built", "row"))
    # isnull=True does not compare built to True: no partial index "built = True".
    assert finding.index.condition is None


@pytest.mark.usefixtures("indexable_startswith")
def test_a_prefix_search_after_equality_columns_declares_an_index_django_accepts(
    tmp_path, settings
):
    """models.Index needs one operator class per field: the static rules and the workload
    proof share the rule that gives them (pattern ops on each text column)."""
    from django.db import connection

    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from tests.testapp.models import Shelf
            Shelf.objects.filter(label="a", code__startswith="b")
            Shelf.objects.filter(row=1, code__startswith="c")
        """)
    )
    found = findings_of(tmp_path)
    text = found[("composite_candidate", "testapp.Shelf", ("label", "code"))]
    number = found[("composite_candidate", "testapp.Shelf", ("row", "code"))]
    for finding in (text, number):
        index = finding.index.as_index()  # raises where fields and opclasses disagree
        assert len(index.opclasses) in (0, len(index.fields))
    if connection.vendor == "postgresql":
        assert text.index.opclasses == ("varchar_pattern_ops", "varchar_pattern_ops")
        # An integer column takes no pattern class: the index serves the equality column,
        # and the advice says why the prefix column is not served.
        assert number.index.opclasses == ()
        assert "row" in number.advice and "pattern" in number.advice


@pytest.mark.usefixtures("partial_indexes", "indexable_startswith")
def test_a_partial_prefix_index_declares_a_class_for_each_field_it_keeps(tmp_path, settings):
    """The constant column moves into the condition: the operator classes follow the fields
    the index keeps, not the candidate's."""
    from django.db import connection

    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from tests.testapp.models import Shelf
            Shelf.objects.filter(kind="staff", label__startswith="a")
            Shelf.objects.filter(kind="staff", label__startswith="b")
        """)
    )
    (finding,) = findings_of(tmp_path).values()
    assert finding.index.fields == ("label",)
    assert finding.index.condition is not None
    index = finding.index.as_index()  # raised: two classes for one field
    if connection.vendor == "postgresql":
        assert tuple(index.opclasses) == ("varchar_pattern_ops",)


# --- What real projects write ----------------------------------------------------------------


def asks(root):
    """Each usage as (model label, line's trailing marker, the fields it filters or sorts)."""
    found = set()
    for usage in scan(root).usages:
        fields = tuple(
            [name for name, _ in usage.equality] + usage.ranges + usage.patterns + usage.sort
        )
        found.add((usage.model._meta.label, usage.code.rsplit("# ", 1)[-1], fields))
    return found


def test_models_read_through_their_module_or_get_model_are_followed(tmp_path, settings):
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from django.apps import apps
            from tests.testapp import models
            import tests.testapp.models as library
            from . import models as here

            Shelf = apps.get_model("testapp", "Shelf")


            def shelves():
                return models.Shelf.objects.filter(label="a")  # module


            def authors():
                return library.Author.objects.filter(name="b")  # aliased


            def relative():
                return here.Shelf.objects.filter(code="c")  # relative


            def loaded():
                return Shelf.objects.filter(kind="d")  # get_model
        """)
    )
    assert asks(tmp_path) == {
        ("testapp.Shelf", "module", ("label",)),
        ("testapp.Author", "aliased", ("name",)),
        ("testapp.Shelf", "relative", ("code",)),
        ("testapp.Shelf", "get_model", ("kind",)),
    }


def test_a_chain_goes_on_through_the_projects_own_manager_and_queryset_methods(tmp_path, settings):
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from tests.shop.models import Note, Product

            def products():
                return Product.objects.in_stock().filter(name="x")  # manager-method

            def notes():
                return Note.objects.all().visible().order_by("text")  # queryset-method

            def unknown():
                return Product.objects.nowhere().filter(name="y")  # not-a-method
        """)
    )
    assert asks(tmp_path) == {
        ("shop.Product", "manager-method", ("name",)),
        ("shop.Note", "queryset-method", ("text",)),
    }


def test_test_code_is_not_scanned_wherever_it_lives(project):
    query = "from tests.testapp.models import Shelf\nShelf.objects.filter(label='t')\n"
    (project / "shop").mkdir()
    for name in ("tests.py", "factories.py", "conftest.py"):
        (project / "shop" / name).write_text(query)
    (project / "utilities" / "testing").mkdir(parents=True)
    (project / "utilities" / "testing" / "base.py").write_text(query)
    # Test apps and helpers shipped inside a package (Wagtail's wagtail/test/testapp,
    # django CMS's cms/test_utils/project).
    for folder in ("test/testapp", "test_utils/project"):
        (project / "cms" / folder).mkdir(parents=True)
        (project / "cms" / folder / "models.py").write_text(query)
    assert {usage.file for usage in scan(project).usages} == {"views.py"}


def test_list_views_and_changelists_declared_with_a_model_sort_by_its_ordering(tmp_path, settings):
    from django_dbtune.advisor.admin_usage import admin_usages
    from django_dbtune.advisor.candidates import candidates_for

    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from django.views import generic
            from tests.shop.models import Item

            class ItemList(generic.ListView):
                model = Item  # meta-ordering

            class NewestItems(generic.ListView):
                model = Item  # own-ordering
                ordering = ["-name"]

            class ItemDetail(generic.DetailView):
                model = Item  # one-row
        """)
    )
    wanted = {
        usage.code.rsplit("# ", 1)[-1]: [c.fields for c in candidates_for(usage)]
        for usage in scan(tmp_path).usages
    }
    assert wanted == {"meta-ordering": [("kind", "-name")], "own-ordering": [("-name",)]}
    [changelist] = [u for u in admin_usages(["shop"]) if u.model._meta.label == "shop.Item"]
    assert [c.fields for c in candidates_for(changelist)] == [("kind", "-name")]


def test_a_related_manager_of_an_instance_from_anywhere_filters_on_its_key_too(tmp_path, settings):
    """``self.review_set`` or a parameter's: the one model with that reverse accessor. An
    accessor several models have says nothing."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "models.py").write_text(
        textwrap.dedent("""
            class Page:
                def reviews(self):
                    return self.review_set.filter(text="x")  # through-self

            def loans(book):
                return book.legacyloan_set.filter(id__gt=3)  # parameter

            def ambiguous(author):
                return author.books.filter(title="y")  # books-of-two-models
        """)
    )
    found = asks(tmp_path)
    assert ("shop.Review", "through-self", ("book", "text")) in found
    assert ("testapp.LegacyLoan", "parameter", ("book", "id")) in found
    assert not any(marker == "books-of-two-models" for _, marker, _ in found)


def test_models_a_file_defines_are_known_in_it(tmp_path, settings):
    """A model's own module queries it by its class name (a CMS page's get_context), also
    above the class."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "models.py").write_text(
        textwrap.dedent("""
            class Index:
                def get_context(self):
                    return Shelf.objects.filter(label="z").order_by("-built")  # own-model

            class Shelf(models.Model):
                pass
        """)
    )
    found = {(label, marker) for label, marker, _ in asks(tmp_path)}
    assert found == {("testapp.Shelf", "own-model")}


def test_admin_search_fields_with_a_lookup_named_at_the_end_are_read():
    """``"code__exact"`` searches code for equality; ``"^label"`` and ``"=room"`` compare
    UPPER(column), which no plain index serves; ``"code"`` alone is icontains."""
    from django.contrib import admin

    from django_dbtune.advisor.admin_usage import admin_usages
    from tests.testapp.admin import ShelfAdmin
    from tests.testapp.models import Shelf

    original = ShelfAdmin.search_fields
    ShelfAdmin.search_fields = ["code__exact", "kind__startswith", "^label", "=room"]
    try:
        usages = [
            u for u in admin_usages(["testapp"]) if u.model is Shelf and "search_fields" in u.code
        ]
    finally:
        ShelfAdmin.search_fields = original
    assert admin.site.is_registered(Shelf)
    searched = {(name, kind) for u in usages for name, kind in _asked(u)}
    assert ("code", "equality") in searched
    assert ("kind", "pattern") in searched
    assert not {name for name, _ in searched} & {"label", "room"}


def _asked(usage):
    yield from ((name, "equality") for name, _ in usage.equality)
    yield from ((name, "pattern") for name in usage.patterns)
    yield from ((name, "contains") for name, _ in usage.contains)


@pytest.mark.usefixtures("partial_indexes")
def test_a_partial_index_never_takes_the_name_of_an_index_the_table_has(project):
    """Django names an index after its table and fields only: the partial (row) WHERE
    kind="staff" would be named like a plain index on row, and a migration adding it where
    that index exists fails (NetBox: extras_cust_group_n_5a8be0_idx)."""
    from django_dbtune.advisor.schema_rules import proposed_index
    from django_dbtune.schema import IndexInfo
    from tests.testapp.models import Shelf

    plain = proposed_index(Shelf, ["row"]).name
    schemas = {s.label: s for s in model_schemas(["testapp"], "default", read_database=False)}
    schemas["testapp.Shelf"].actual = [IndexInfo(plain, ("row",), "database")]
    found = {(f.kind, f.model, f.fields): f for f in index_findings(scan(project).usages, schemas)}
    staff = found[("composite_candidate", "testapp.Shelf", ("kind", "row"))]
    assert staff.index.condition == 'Q(kind="staff")'
    assert staff.index.name != plain
    assert len(staff.index.name) <= 30 and staff.index.name.endswith("_idx")
    assert staff.message.startswith("2 places filter Shelf"), staff.message


def test_code_no_request_runs_ranks_below_request_paths_and_says_why(tmp_path, settings):
    """A management command's loop is no request's: low, under a view's medium."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    command = tmp_path / "shop" / "management" / "commands"
    command.mkdir(parents=True)
    query = "from tests.testapp.models import Shelf\n"
    (command / "nightly.py").write_text(
        query
        + "def handle(days):\n    for day in days:\n        Shelf.objects.filter(built__gte=day)\n"
    )
    (tmp_path / "shop" / "tasks.py").write_text(query + "Shelf.objects.filter(label='t')\n")
    (tmp_path / "views.py").write_text(query + "Shelf.objects.filter(kind='k', row=1)\n")
    found = findings_of(tmp_path)
    built = found[("unindexed_filter", "testapp.Shelf", ("built",))]
    assert built.severity == "low"
    assert built.message.endswith(
        "Ranked low: no request runs it, only management commands, tasks or the admin."
    )
    assert found[("unindexed_filter", "testapp.Shelf", ("label",))].severity == "low"
    view = found[("composite_candidate", "testapp.Shelf", ("kind", "row"))]
    assert view.severity == "medium" and view.message.endswith("Ranked medium: a request runs it.")


@pytest.mark.usefixtures("partial_indexes")
def test_a_partial_index_serves_the_calls_that_compare_to_its_constant(tmp_path, settings):
    """Book has (sponsor) WHERE title="x": a filter on sponsor with title="x" is served;
    with another title it is not."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from tests.testapp.models import Book

            def served(author):
                return Book.objects.filter(sponsor=author, title="x")

            def other_title(author):
                return Book.objects.filter(sponsor=author, title="y")
        """)
    )
    found = findings_of(tmp_path)
    [(kind, model, fields)] = [key for key in found if key[1] == "testapp.Book"]
    assert fields == ("sponsor", "title")
    [site] = found[(kind, model, fields)].evidence
    assert 'title="y"' in site.code


def test_q_objects_held_in_variables_are_read(tmp_path, settings):
    """Each field of a Q object is a filter of its own (a Q may be an OR)."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from django.db.models import Q
            from tests.testapp.models import Shelf

            def search(label, built):
                condition = Q(label=label)
                condition &= Q(built__gte=built)
                return Shelf.objects.filter(condition)  # q-variable
        """)
    )
    [usage] = scan(tmp_path).usages
    assert usage.code.endswith("# q-variable")
    assert set(usage.single) == {"label", "built"}


CLASS_QUERYSETS = """
from django.views import generic
from tests.testapp.models import Author, Shelf
from .helpers import sort_queryset


class ShelfList(generic.ListView):
    model = Shelf

    def get_queryset(self):
        queryset = sort_queryset(super().get_queryset(), self.request)
        queryset = queryset.filter(label="a")  # returned
        queryset = self.add_room(queryset, "r")
        return queryset

    def add_room(self, queryset, room):
        return queryset.filter(room=room)  # parameter

    def get_context_data(self, **kwargs):
        return {"staff": self.get_queryset().filter(kind="staff")}  # get-queryset

    def newest(self):
        return self.model.objects.order_by("-built")  # self-model


class AuthorFilter:  # a django-filter FilterSet
    class Meta:
        model = Author

    def search(self, queryset, name, value):
        return queryset.filter(books__title=value)  # filter-method


def not_a_method(queryset):
    return queryset.filter(code="x")  # no-class


class NoModel:
    def get_queryset(self):
        queryset = sort_queryset(None, None)
        return queryset.filter(code="y")  # no-model
"""


def test_the_methods_of_a_class_whose_model_is_known_filter_its_queryset(tmp_path, settings):
    """A view's or filter set's methods get the model's queryset from Django's hooks: the
    ``queryset`` parameter, ``self.get_queryset()``, ``super().get_queryset()``,
    ``self.model``, and what ``get_queryset`` returns, through calls the scan does not read."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(CLASS_QUERYSETS)
    found = {ask for ask in asks(tmp_path) if ask[2]}  # what filters or sorts something
    assert found == {
        ("testapp.Shelf", "returned", ("label",)),
        ("testapp.Shelf", "parameter", ("room",)),
        ("testapp.Shelf", "get-queryset", ("kind",)),
        ("testapp.Shelf", "self-model", ("-built",)),
        ("testapp.Book", "filter-method", ("title",)),
    }


def test_lookups_unpacked_from_a_dict_with_keys_the_source_tells_are_read(tmp_path, settings):
    """``filter(**{...})`` and ``Q(**{...})``: each key that is a literal, or an f-string of
    names bound to strings (a parameter's default, a constant of this module or of another
    of the project's, read without importing it). A key that cannot be told is left out,
    and so is a constant of installed code."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "__init__.py").write_text(
        textwrap.dedent("""
            class LookupTypes:
                PARTIAL = "icontains"
                EXACT = "iexact"
        """)
    )
    (tmp_path / "search" / "fields.py").write_text('ROOM = "room"\n')
    (tmp_path / "search" / "backends.py").write_text(
        textwrap.dedent("""
            from django.db.models import Q
            from django.db.models.constants import LOOKUP_SEP
            from search.fields import ROOM
            from tests.testapp.models import Shelf
            from . import LookupTypes

            DEFAULT_LOOKUP_TYPE = LookupTypes.PARTIAL
            BUILT = "built"


            def literal(label, day):
                return Shelf.objects.filter(**{"label": label, BUILT + "__gte": day})  # literal

            def search(value, lookup=DEFAULT_LOOKUP_TYPE):
                query = Q(**{f"label__{lookup}": value})
                return Shelf.objects.filter(query)  # default

            def imported(value):
                return Shelf.objects.filter(**{f"{ROOM}__exact": value})  # imported

            def untold(field, value):
                return Shelf.objects.filter(**{f"{field}__gte": value, "code": 1})  # untold

            def installed(value):
                return Shelf.objects.filter(**{f"kind{LOOKUP_SEP}exact": value})  # installed

            def grown(day, pair, lookup="exact"):
                key = BUILT
                key += "__gte"
                lookup, value = pair
                return Shelf.objects.filter(**{key: day, f"code__{lookup}": value})  # grown
        """)
    )
    read = {
        usage.code.rsplit("# ", 1)[-1]: (
            [name for name, _ in usage.equality] + usage.single,
            usage.ranges,
            usage.contains,
        )
        for usage in scan(tmp_path).usages
    }
    assert read == {
        "literal": (["label"], ["built"], []),
        "default": ([], [], [("label", True)]),
        "imported": (["room"], [], []),
        "untold": (["code"], [], []),
        "installed": ([], [], []),
        # A name holds what it was last bound to: "built__gte", and no string for lookup.
        "grown": ([], ["built"], []),
    }


@pytest.mark.usefixtures("partial_indexes")
def test_two_indexes_on_the_same_fields_in_one_run_get_two_names(tmp_path, settings):
    """A plain index on label and a partial one on label WHERE kind="staff", which Django
    would name alike."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from tests.testapp.models import Shelf
            Shelf.objects.filter(label="a")
            Shelf.objects.filter(kind="staff").order_by("label")
            Shelf.objects.filter(kind="staff").order_by("label").first()
        """)
    )
    indexes = [f.index for f in findings_of(tmp_path).values() if f.index is not None]
    assert sorted(i.condition or "" for i in indexes) == ["", 'Q(kind="staff")']
    assert {i.fields for i in indexes} == {("label",)}
    assert len({i.name for i in indexes}) == 2


def test_pk_in_a_lookup_is_the_primary_keys_own_name():
    """``pk`` (as a recorded workload or the Indexes panel may name it) is the id column:
    a prefix search and a sort on it are read, never a warning that the call site could
    not be read."""
    from django_dbtune.advisor.code_scan import Usage
    from tests.testapp.models import Shelf

    search = Usage(Shelf, "views.py", 1, "Shelf.objects.filter(pk__startswith=t)")
    search.add("pk", "startswith")
    newest = Usage(Shelf, "views.py", 2, 'Shelf.objects.filter(label=t).order_by("-pk")')
    newest.add("label", "exact")
    newest.sort, newest.explicit_sort = ["-pk"], True
    warnings = []
    schemas = {s.label: s for s in model_schemas(["testapp"], "default", read_database=False)}
    found = index_findings([search, newest], schemas, warnings)
    assert warnings == []
    assert ("label", "-id") in {f.fields for f in found}


def test_a_search_behind_a_list_page_ranks_like_any_other_index(tmp_path, settings):
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        textwrap.dedent("""
            from tests.testapp.models import Shelf
            def shelves(q):
                return Shelf.objects.filter(label__icontains=q)[:20]
        """)
    )
    [search] = [f for f in findings_of(tmp_path).values() if f.fields == ("label",)]
    assert search.severity == "high"


class ProjectAdmin(admin.ModelAdmin):
    """A project's base admin: its subclasses inherit the filter."""

    list_filter = ["kind"]  # base-filter


class InheritingItemAdmin(ProjectAdmin):  # inheriting-admin
    """Sets nothing itself: its filter comes from its parent, and its changelist sorts by
    the model's Meta.ordering (no ordering, no list_display of its own)."""


@pytest.mark.parametrize(
    ("admin_class", "sort_line"),
    [
        (InheritingItemAdmin, ("tests/test_code_scan.py", "# inheriting-admin")),
        # Registered with no class of the project's: the sort is the model's own ordering.
        (admin.ModelAdmin, ("tests/shop/models.py", 'ordering = ["kind", "-name"]')),
    ],
)
def test_an_admin_option_set_by_a_parent_or_by_django_points_at_the_projects_line(
    admin_class, sort_line
):
    from django_dbtune.advisor.admin_usage import admin_usages
    from tests.shop.admin import ItemAdmin
    from tests.shop.models import Item

    admin.site.unregister(Item)
    admin.site.register(Item, admin_class)
    try:
        usages = [u for u in admin_usages(["shop"]) if u.model is Item]
    finally:
        admin.site.unregister(Item)
        admin.site.register(Item, ItemAdmin)
    sites = {(usage.file, usage.code) for usage in usages}
    assert all(usage.line > 0 for usage in usages), sites
    sort = next(u for u in usages if not u.equality)
    assert sort.file == sort_line[0] and sort_line[1] in sort.code
    if admin_class is InheritingItemAdmin:
        [kind] = [u for u in usages if u.equality]
        assert kind.code.endswith("# base-filter")


MODEL_METHODS = """
from django.db import models


class Stamped(models.Model):
    def recent_links(self):
        return self.links.filter(url="x")  # abstract


class Shelf(models.Model):
    def recent(self):
        return self.links.filter(url="x")  # own


def anywhere(thing):
    return thing.links.filter(url="y")  # unknown
"""


def test_in_a_models_own_methods_self_is_one_of_its_rows(tmp_path, settings):
    """``links`` is the reverse relation of two models; in a model's own
    method (an abstract one's, when one model alone inherits it) ``self`` tells which. Of
    anything else, the call is named in a note, not guessed."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "models.py").write_text(MODEL_METHODS)
    scanned = scan(tmp_path)
    found = {(u.model._meta.label, u.line): u.equality for u in scanned.usages}

    def at(marker):
        return next(n for n, t in enumerate(MODEL_METHODS.splitlines(), 1) if marker in t)

    assert found[("testapp.NoteLink", at("# abstract"))] == [("note", ...), ("url", "x")]
    assert found[("testapp.ShelfLink", at("# own"))] == [("shelf", ...), ("url", "x")]
    assert [n.split(": ", 1)[0] for n in scanned.notes] == [f"library/models.py:{at('# unknown')}"]
