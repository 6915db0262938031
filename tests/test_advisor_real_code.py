"""The index advisor on code as real projects write it: annotations, aliases and relations
in sorts, searches on columns of every type, inheritance and proxies. Never a traceback;
advice only where an index can serve, on the table that holds the column; and every index
suggested is SQL the database accepts."""

import json
import textwrap
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection, transaction

POSTGRES_APPS = ["pgapp"] if apps.is_installed("tests.pgapp") else []


def suggest(tmp_path, settings, source, *labels):
    """suggest_indexes --format json on a project of one views.py: (the findings with
    evidence in it, stderr)."""
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(textwrap.dedent(source))
    out, err = StringIO(), StringIO()
    call_command(
        "suggest_indexes", *(labels or ("testapp",)), "--format", "json", stdout=out, stderr=err
    )
    found = json.loads(out.getvalue())
    return [
        f for f in found if any(e["file"] == "views.py" for e in f["evidence"])
    ], err.getvalue()


def index_fields(found, model):
    return {tuple(f["fields"]) for f in found if f["model"] == model and f["index"]}


def lines(source, marker):
    return [n for n, text in enumerate(textwrap.dedent(source).splitlines(), 1) if marker in text]


SORTS = """
from django.db.models import Count, F
from tests.testapp.models import Author, Book, Shelf

Author.objects.annotate(n=Count("books")).order_by("-n")
Shelf.objects.alias(size=F("row")).filter(label="a").order_by("size")  # alias
Shelf.objects.filter(code="c").order_by("-room", F("row").desc())
Author.objects.filter(name="a").order_by("books")
Book.objects.order_by("tags")
Shelf.objects.latest("newest")
Shelf.objects.filter(label="b").order_by("built", "-popularity", "row")  # cut
"""


@pytest.mark.django_db
def test_sorts_by_annotations_aliases_and_relations_never_stop_the_run(tmp_path, settings):
    found, err = suggest(tmp_path, settings, SORTS)
    assert not err
    # A sort by what is not a column of the table is left out, and so is what follows it.
    assert index_fields(found, "testapp.Shelf") == {("label", "built")}
    assert not index_fields(found, "testapp.Book"), "no index on a many-to-many"
    label = next(f for f in found if f["fields"] == ["label", "built"])
    # The alias sort leaves a filter on label, which the wider index serves too.
    assert [e["line"] for e in label["evidence"]] == lines(SORTS, "# alias") + lines(
        SORTS, "# cut"
    )


@pytest.mark.django_db
def test_a_call_site_the_rules_cannot_read_is_a_warning_not_the_end(
    tmp_path, settings, monkeypatch
):
    from django_dbtune.advisor import candidates

    source = """
    from tests.testapp.models import Shelf
    Shelf.objects.filter(label="a")
    Shelf.objects.filter(row=2).order_by("built")
    """
    real = candidates.candidates_for

    def fails_on_label(usage):
        if any(name == "label" for name, _ in usage.equality):
            raise ValueError("something unforeseen")
        return real(usage)

    monkeypatch.setattr(candidates, "candidates_for", fails_on_label)
    found, err = suggest(tmp_path, settings, source)
    assert err.strip() == (
        "warning: views.py:3: left out, the index rules could not read it "
        "(ValueError: something unforeseen)"
    )
    assert index_fields(found, "testapp.Shelf") == {("row", "built")}


SEARCHES = """
from tests.testapp.models import Book, Listing, Shelf

Shelf.objects.filter(row__icontains="1")
Shelf.objects.filter(built__icontains="2026")
Shelf.objects.filter(id__icontains="7")
Book.objects.filter(author__icontains="3")
Shelf.objects.filter(row__startswith="1")
Shelf.objects.filter(label__icontains="x")  # text
Listing.objects.filter(attributes__has_key="colour")  # json
Listing.objects.filter(attributes__icontains="red")
"""


@pytest.mark.django_db
def test_searches_get_a_trigram_index_on_text_and_a_gin_index_on_json_only(tmp_path, settings):
    found, _ = suggest(tmp_path, settings, SEARCHES)
    searched = {(f["model"], tuple(f["fields"])): f for f in found if "searched" in f["message"]}
    # Numbers, dates, the primary key and foreign keys: no index on the column serves a
    # search of their text, so nothing is suggested (no trigram, no pattern ops).
    assert set(searched) == {("testapp.Shelf", ("label",)), ("testapp.Listing", ("attributes",))}
    assert not [f for f in found if f["fields"] == ["row"]]
    json_search = searched[("testapp.Listing", ("attributes",))]
    assert [e["line"] for e in json_search["evidence"]] == lines(SEARCHES, "# json")
    if connection.vendor != "postgresql":
        assert json_search["index"] is None
        assert "On PostgreSQL a GIN index serves it" in json_search["advice"]
        return
    assert searched[("testapp.Shelf", ("label",))]["index"]["opclasses"] == ["gin_trgm_ops"]
    assert json_search["index"]["opclasses"] == []
    assert "USING gin" in json_search["index"]["sql"]
    assert "gin_trgm_ops" not in json_search["index"]["sql"]
    assert "GinIndex(" in json_search["advice"]


GLOBAL_SEARCH = """
from django.db.models import Q
from search import LookupTypes
from tests.testapp.models import Shelf

DEFAULT_LOOKUP_TYPE = LookupTypes.PARTIAL


class SearchBackend:
    def search(self, value, kinds=None, lookup=DEFAULT_LOOKUP_TYPE):
        query = Q(**{f"label__{lookup}": value})
        if kinds:
            query &= Q(kind__in=kinds)
        return Shelf.objects.filter(query)[:1000]  # search
"""


@pytest.mark.django_db
def test_a_search_whose_lookup_is_a_constant_of_another_module_gets_its_index(tmp_path, settings):
    """NetBox's global search: ``Q(**{f"value__{lookup}": value})``, the lookup a default
    taken from a class of the project's search package."""
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "__init__.py").write_text(
        'class LookupTypes:\n    PARTIAL = "icontains"\n    EXACT = "iexact"\n'
    )
    found, err = suggest(tmp_path, settings, GLOBAL_SEARCH)
    assert not err
    (label,) = [f for f in found if f["fields"] == ["label"]]
    assert "searched" in label["message"]
    assert [e["line"] for e in label["evidence"]] == lines(GLOBAL_SEARCH, "# search")
    if connection.vendor != "postgresql":
        assert label["index"] is None
        return
    assert label["index"]["opclasses"] == ["gin_trgm_ops"]
    assert "UPPER" in label["index"]["sql"].upper()


ARRAYS = """
from tests.pgapp.models import Device

Device.objects.filter(roles__contains=["edge"])
Device.objects.filter(roles__overlap=["core", "edge"])
"""


@pytest.mark.django_db
def test_array_containment_gets_a_plain_gin_index(tmp_path, settings, postgres_only):
    found, _ = suggest(tmp_path, settings, ARRAYS, "pgapp")
    (roles,) = found
    assert (roles["model"], roles["fields"]) == ("pgapp.Device", ["roles"])
    assert roles["index"]["opclasses"] == []
    assert 'USING gin ("roles")' in roles["index"]["sql"]
    assert [e["line"] for e in roles["evidence"]] == [4, 5]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(roles["index"]["sql"])
        transaction.set_rollback(True)


INHERITANCE = """
from tests.shop.models import Poster
from tests.testapp.models import StaffShelf

Poster.objects.filter(kind="framed")  # parent-column
Poster.objects.order_by("name")
StaffShelf.objects.filter(label__startswith="a")  # proxy
"""


@pytest.mark.django_db
def test_a_parents_column_and_a_proxys_query_are_advised_on_the_table_that_holds_them(
    tmp_path, settings
):
    found, err = suggest(tmp_path, settings, INHERITANCE, "testapp", "shop")
    assert not err
    # Poster's table has no kind or name column: an index there fails (models.E016).
    assert not [f for f in found if f["model"] == "shop.Poster" and f["index"]]
    # Item's Meta.ordering (kind, -name), which Poster inherits, completes the index.
    (kind,) = [f for f in found if f["model"] == "shop.Item" and f["fields"][:1] == ["kind"]]
    # (With the changelist of ItemAdmin, which sorts by that ordering too.)
    assert set(lines(INHERITANCE, "# parent-column")) <= {e["line"] for e in kind["evidence"]}
    (label,) = [f for f in found if f["model"] == "testapp.Shelf" and f["fields"] == ["label"]]
    assert [e["line"] for e in label["evidence"]] == lines(INHERITANCE, "# proxy")


EXAMPLE_APPS = ["crawler", "publisher", "marketplace", "dashboard"]


@pytest.mark.django_db
def test_every_suggested_index_is_sql_postgresql_accepts(tmp_path, settings, postgres_only):
    """Each index the advisor suggests on the example project and the test apps, with the
    real-code call sites above, is built in a transaction that is rolled back."""
    from django_dbtune.advisor.suggest import static_report

    labels = ["testapp", "shop", *POSTGRES_APPS]
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text("\n".join([SORTS, SEARCHES, INHERITANCE, ARRAYS]))
    found = static_report(labels, "default").findings
    settings.DBTUNE = {}  # the example project's own code
    found += static_report([*EXAMPLE_APPS, *labels], "default").findings
    indexes = [f for f in found if f.index is not None]
    assert {f.model.split(".")[0] for f in indexes} >= {"crawler", "testapp", "shop", "pgapp"}
    for finding in indexes:
        model = apps.get_model(finding.model)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            if finding.index.sql:
                cursor.execute(finding.index.sql)
            else:
                with connection.schema_editor(atomic=False) as editor:
                    editor.add_index(model, finding.index.as_index())
            transaction.set_rollback(True)


PILES_UP = """
from tests.testapp.models import Reminder

def unread(request):
    return Reminder.objects.filter(author=request.user.author, read_at=None).count()  # unread

def unread_too(request):
    return Reminder.objects.filter(read_at__isnull=True, author=request.user.author)  # unread

def open_one(request):
    return Reminder.open.get_or_create(author=request.user.author)  # open

def by_subject(request, subject):
    return Reminder.objects.filter(author=request.user.author, subject=subject)
"""


@pytest.mark.django_db
def test_one_parents_rows_in_one_state_get_an_index_the_foreign_keys_does_not_replace(
    tmp_path, settings
):
    """The foreign key's index reads all of an author's reminders; unread or open ones are
    few once the others pile up. A state a manager's own get_queryset filters counts too."""
    found, err = suggest(tmp_path, settings, PILES_UP)
    assert not err
    # A second column compared to a value the call passes: the key's index narrows already.
    assert index_fields(found, "testapp.Reminder") == {("author", "read_at"), ("author", "state")}
    unread = next(f for f in found if f["fields"] == ["author", "read_at"])
    assert [e["line"] for e in unread["evidence"]] == lines(PILES_UP, "# unread")
    assert "reads every Reminder of one Author, whatever its read_at" in unread["message"]
    opened = next(f for f in found if f["fields"] == ["author", "state"])
    assert [e["line"] for e in opened["evidence"]] == lines(PILES_UP, "# open")


NULLS_PLACED = """
from tests.testapp.models import Route

def routes(request):
    return Route.objects.all()[:50]
"""


@pytest.mark.django_db
def test_a_sort_that_places_nulls_gets_an_index_that_places_them_too(tmp_path, settings):
    """NetBox sorts prefixes by F("vrf").asc(nulls_first=True): on PostgreSQL a plain index
    leaves the sort in place, so the index says NULLS FIRST; elsewhere NULLs come first
    ascending anyway, and the plain index serves."""
    found, err = suggest(tmp_path, settings, NULLS_PLACED)
    assert not err
    (route,) = [f for f in found if f["model"] == "testapp.Route"]
    assert route["fields"] == ["author", "name", "id"]
    postgres = connection.vendor == "postgresql"
    assert route["index"]["nulls_first"] == (["author"] if postgres else [])
    assert ("places the NULLs of author first" in route["message"]) is postgres
    if not postgres:
        return
    from django_dbtune.findings import ProposedIndex
    from tests.testapp.models import Route

    index = ProposedIndex(
        tuple(route["fields"]), route["index"]["name"], nulls=(("author", True),)
    ).as_index()
    sql, params = Route.objects.all()[:50].query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        with connection.schema_editor(atomic=False) as editor:
            editor.add_index(Route, index)
        cursor.execute("EXPLAIN " + sql, params)
        plan = " ".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    assert "Sort" not in plan and index.name in plan


CUSTOM_METHODS = """
from tests.testapp.models import Reminder

def inbox(request):
    return Reminder.objects.unread().filter(author=request.user.author)  # unread

def others(request):
    return Reminder.objects.by_others(request.user.author).order_by("subject")  # others
"""


@pytest.mark.django_db
def test_a_custom_queryset_method_adds_what_its_body_filters(tmp_path, settings):
    """Reminder.objects.unread() filters read_at=None in its body: with the author the
    call passes, that is the composite the foreign key's index does not replace. A filter
    the body runs on another model is not this chain's."""
    found, err = suggest(tmp_path, settings, CUSTOM_METHODS)
    assert not err
    fields = index_fields(found, "testapp.Reminder")
    assert ("author", "read_at") in fields
    unread = next(f for f in found if f["fields"] == ["author", "read_at"])
    assert [e["line"] for e in unread["evidence"]] == lines(CUSTOM_METHODS, "# unread")
    assert not index_fields(found, "testapp.Author"), "Author.objects.filter is another chain"
    # exclude(author=...) is a filter no composite serves: the sort alone is suggested.
    assert ("subject",) in fields


AMBIGUOUS = """
def recent(author):
    return author.books.filter(title="x")  # ambiguous
"""


@pytest.mark.django_db
def test_a_related_manager_several_models_have_is_left_out_and_said_so(tmp_path, settings):
    """``books`` is the reverse relation of shop.Author and testapp.Author: which one a
    parameter is cannot be told, so the call is named in a warning, not guessed."""
    found, err = suggest(tmp_path, settings, AMBIGUOUS, "testapp", "shop")
    assert not found
    (line,) = lines(AMBIGUOUS, "# ambiguous")
    assert err.strip() == (
        f"warning: views.py:{line}: left out, 'books' is the reverse relation of several "
        "models (shop.Author, testapp.Author), and which one this reads cannot be told"
    )


ONLY_SOMETIMES = """
from tests.testapp.models import Reminder

def staff_or_not(request):
    return Reminder.objects.visible_to(request.user).filter(author=request.user.author)

def listed(request):
    return Reminder.objects.visible_to(request.user).filter(author=1).order_by("read_at")

def about(request, subject):
    return Reminder.objects.about(subject).order_by("read_at")
"""


@pytest.mark.django_db
def test_a_method_that_filters_only_sometimes_adds_nothing(tmp_path, settings):
    """visible_to() filters state="open" for some users only, and about() filters subject in
    a subquery: neither is every call's filter, so no (partial) index is built on it."""
    found, err = suggest(tmp_path, settings, ONLY_SOMETIMES)
    assert not err
    reminders = [f for f in found if f["model"] == "testapp.Reminder"]
    assert not [f for f in reminders if f["index"] and f["index"]["condition"]]
    assert not [f for f in reminders if "state" in f["fields"] or "subject" in f["fields"]]


PREFIX_AND_NULLS = """
from tests.testapp.models import Tagline

def lookup(request, start):
    return Tagline.objects.filter(code__startswith=start)[:20]
"""


@pytest.mark.usefixtures("indexable_startswith")
@pytest.mark.django_db
def test_a_prefix_search_on_a_column_sorted_with_its_nulls_placed_is_valid_code(
    tmp_path, settings
):
    """Django declares an operator class only for plain fields, not for the expression that
    places NULLs: the index serves the search, and its code is an Index Django accepts."""
    from django.db import models

    from django_dbtune.findings import ProposedIndex

    found, err = suggest(tmp_path, settings, PREFIX_AND_NULLS)
    assert not err
    (tagline,) = [f for f in found if f["model"] == "testapp.Tagline"]
    index = tagline["index"]
    assert index["nulls_first"] == []
    proposed = ProposedIndex(tuple(index["fields"]), index["name"], tuple(index["opclasses"]))
    eval(proposed.as_code(), {"models": models})  # raises if Django refuses it
    if connection.vendor == "postgresql":
        assert index["opclasses"] == ["varchar_pattern_ops"]
