"""Every fix proven before it is shown: the page (or test) runs again with the fix applied
in-process, in a transaction rolled back, and the finding says what that measured."""

import json
import threading
import time
from dataclasses import replace
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test.utils import CaptureQueriesContext

from django_dbtune.findings import NPlusOneFinding
from django_dbtune.fix_targets import FixTarget
from django_dbtune.nplusone.proof import Outcome, forget_proofs, judged
from tests.shop.admin import BookAdmin, TagAdmin
from tests.shop.models import Author, Book, Publisher
from tests.test_nplusone import products, shop  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("shop")


def pages(*args):
    out = StringIO()
    call_command("dbtune_nplusone", *args, "--format", "json", stdout=out)
    return {page["url"]: page for page in json.loads(out.getvalue())}


def count_queries(client, url):
    from django.db import connection

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("boss", "boss@example.com", "pw")


def test_a_view_fix_is_proven_by_the_count_the_page_reaches_with_it(client):
    [finding] = pages("/shop/books/")["/shop/books/"]["findings"]
    proof = finding["proof"]
    assert proof["verdict"] == "proven"
    # What the page really runs, as it is and with the fix pasted in (the fixed view).
    assert proof["before"] == count_queries(client, "/shop/books/")
    assert proof["after"] == count_queries(client, "/shop/books/fixed/")
    assert proof["status_before"] == proof["status_after"] == 200
    assert finding["target"]["select_related"] == ["author"]
    assert finding["target"]["file"] == "tests/shop/views.py"


def test_the_proof_writes_nothing_and_the_text_says_it():
    books = Book.objects.count()
    out = StringIO()
    call_command("dbtune_nplusone", "/shop/books/", stdout=out)
    assert f"proven: re-run with the fix, {books + 1} -> 1 queries, status 200 as before" in (
        out.getvalue()
    )
    assert Book.objects.count() == books


def test_a_generic_view_fix_is_proven_on_its_class():
    [finding] = pages("/shop/books/generic/")["/shop/books/generic/"]["findings"]
    assert finding["target"]["owner"] == "tests.shop.views.BookListView"
    assert finding["proof"]["verdict"] == "proven"
    assert finding["proof"]["after"] == 1


def test_an_admin_fix_is_proven_and_the_admin_class_is_left_as_it_was(admin_user):
    Book.objects.update(editor=Author.objects.first())
    before = BookAdmin.__dict__.get("list_select_related", "unset")
    [finding] = pages("/admin/shop/book/", "--user", "boss")["/admin/shop/book/"]["findings"]
    assert finding["fix"].startswith("list_select_related = (")
    proof = finding["proof"]
    assert proof["verdict"] == "proven", proof
    assert proof["after"] < proof["before"]
    assert BookAdmin.__dict__.get("list_select_related", "unset") == before


def test_a_fix_inside_an_admins_own_get_queryset_is_proven(admin_user):
    [finding] = pages("/admin/shop/tag/", "--user", "boss")["/admin/shop/tag/"]["findings"]
    assert "TagAdmin.get_queryset returns" in finding["fix"]
    assert finding["proof"]["verdict"] == "proven"
    assert "get_queryset" in vars(TagAdmin)


def test_a_per_row_count_in_an_admin_column_is_proven_in_the_admins_get_queryset(admin_user):
    from django.contrib.admin import site

    from tests.shop.admin import PublisherAdmin

    url = "/admin/shop/publisher/"
    [finding] = pages(url, "--user", "boss")[url]["findings"]
    assert finding["fix"].startswith(
        "def get_queryset(self, request): return super().get_queryset(request).annotate("
        'authors_count=Coalesce(Subquery(Author.objects.filter(publisher=OuterRef("pk"), '
        'name__in=["A0", "A1"])'
    ), finding["fix"]
    assert finding["fix"].endswith("  # on tests.shop.admin.PublisherAdmin")
    proof = finding["proof"]
    assert proof["verdict"] == "proven", proof
    assert (proof["before"], proof["after"]) == (proof["after"] + 2, proof["after"])
    # What each row would show with the annotation is what the column shows.
    admin = site._registry[Publisher]
    annotated = Publisher.objects.annotate(authors_count=_annotation(finding["fix"]))
    assert {p.authors_count for p in annotated} == {admin.early_authors(p) for p in annotated}
    assert "get_queryset" not in vars(PublisherAdmin)


def _annotation(fix):
    from django.db.models import Count, OuterRef, Subquery
    from django.db.models.functions import Coalesce

    expression = fix.split(".annotate(authors_count=", 1)[1].rsplit(")  # on", 1)[0]
    names = {"Count": Count, "OuterRef": OuterRef, "Subquery": Subquery, "Coalesce": Coalesce}
    return eval(expression, {**names, "Author": Author})


def test_an_unused_join_is_advised_away_only_when_running_without_it_costs_nothing():
    [finding] = pages("/shop/books/titles/")["/shop/books/titles/"]["findings"]
    assert finding["kind"] == "unused_select_related"
    assert finding["proof"]["verdict"] == "proven"
    assert finding["proof"]["after"] == finding["proof"]["before"]
    assert "on this run's data only" in finding["advice"]


def test_a_join_read_where_the_detector_cannot_see_is_never_called_unused():
    # Before proofs, this page was told to remove select_related("author"): it would have
    # gone from 1 query to one per book.
    assert pages("/shop/books/paused/")["/shop/books/paused/"]["findings"] == []


def test_a_fix_that_needs_the_reading_code_changed_too_is_labelled_unproven():
    from django_dbtune.nplusone import detect
    from django_dbtune.nplusone.proof import rerun

    with detect() as report:
        for author in Author.objects.all():
            author.books.exists()
    [finding] = rerun(report.findings, lambda: None)
    assert finding.proof.verdict == "unproven"
    assert "changes how rows are read" in finding.proof.reason
    assert "  suggestion (unproven): .annotate(has_books=Exists(" in finding.message


def test_a_count_per_row_is_proven_with_the_annotation_read_instead():
    from django_dbtune.nplusone import detect

    def page():
        return [author.books.count() for author in Author.objects.order_by("id")]

    with detect() as report:
        expected = page()
    [finding] = report.findings
    assert finding.fix == '.annotate(books_count=Count("books", distinct=True))'
    # A created object (a REST framework POST answers with it) never went through the
    # queryset: reading the annotation alone raised AttributeError there.
    assert "has no books_count: where both can come, read obj.books_count if hasattr(" in (
        finding.advice
    )

    [proven] = rerun_page(report.findings, page, expected)
    assert proven.proof.verdict == "proven", proven.proof
    assert (proven.proof.before, proven.proof.after) == (1 + Author.objects.count(), 1)


def test_a_count_fix_counts_right_on_a_queryset_whose_filter_joins_many_rows():
    """A filter across a many-valued relation (django-filter's ``?tags=1&tags=2``) joins one
    row per match: a plain ``Count("review")`` there counts each review once per matching
    tag, and the page showed 6 reviews for a book with 3."""
    from django.db.models import Q

    from django_dbtune.nplusone import detect
    from tests.shop.models import Review, Tag

    red, blue = Tag.objects.create(name="red"), Tag.objects.create(name="blue")
    books = list(Book.objects.order_by("id")[:3])
    for book in books:
        book.tags.add(red, blue)
        Review.objects.bulk_create(Review(book=book, text=str(n)) for n in range(3))

    def page():
        tagged = Book.objects.filter(Q(tags=red) | Q(tags=blue)).distinct().order_by("id")
        return [(book.pk, book.review_set.count()) for book in tagged]

    with detect() as report:
        expected = page()
    assert [count for _, count in expected] == [3, 3, 3]
    [finding] = report.findings
    assert finding.fix == '.annotate(review_set_count=Count("review", distinct=True))'
    [proven] = rerun_page(report.findings, page, expected)
    assert proven.proof.verdict == "proven", proven.proof


def test_a_fix_on_a_cached_queryset_is_proven(settings):
    """``.cached()`` rows fill the queryset past ``_fetch_all``: the proof never saw the
    queryset evaluate and said "the queryset it changes was not evaluated"."""
    from django_dbtune.nplusone import detect

    settings.DBTUNE = {"CACHE_ENABLED": True}

    def page():
        books = Book.cached_objects.order_by("id").cached()
        return [(book.title, book.author.name) for book in books]

    # Inside the test's transaction the cache stores nothing: each run fills the queryset
    # from the database, past ``_fetch_all``, as a miss does.
    page()
    with detect() as report:
        expected = page()
    [finding] = report.findings
    assert finding.fix == '.select_related("author")'
    [proven] = rerun_page(report.findings, page, expected)
    assert proven.proof.verdict == "proven", proven.proof
    assert proven.proof.after == 1


def rerun_page(findings, page, expected):
    """The findings proven by running ``page`` again, which must still return ``expected``."""
    from django_dbtune.nplusone.proof import rerun

    def again():
        assert page() == expected  # the fix changes the queries, never what the page shows
        return 200

    return rerun(findings, again)


def finding(action="add"):
    target = FixTarget(action, select_related=("author",), file="v.py", line=3)
    return NPlusOneFinding("n_plus_one", "shop.Book.author", 5, None, None, "x", target=target)


@pytest.mark.parametrize(
    ("after", "hits", "reason"),
    [
        (Outcome(2, 500, "FieldError: bad"), 1, "raised FieldError: bad"),
        (Outcome(2, 500), 1, "another status"),
        (Outcome(6, 200), 1, "did not go down"),
        (Outcome(2, 200), 0, "was not evaluated"),
    ],
)
def test_a_fix_that_raises_changes_the_status_or_saves_nothing_is_unproven(after, hits, reason):
    proven = judged(finding(), Outcome(6, 200), after, hits)
    assert proven.proof.verdict == "unproven"
    assert reason in proven.proof.reason


def test_a_fix_that_changes_what_the_page_shows_is_unproven():
    """A page the same every time as it is, and another with the fix (a Count multiplied by
    a join showed 6 comments for 3): fewer queries, but not a fix."""
    from django_dbtune.nplusone.proof import prove

    def run(targets):
        return Outcome(2 if targets else 6, 200, content="6 comments" if targets else "3"), 1

    [judged_finding] = prove([finding()], run)
    assert judged_finding.proof.verdict == "unproven"
    assert "the fix changes what it shows" in judged_finding.proof.reason


def test_a_page_new_on_every_run_is_proven_on_its_queries_alone():
    """A CSRF token or the time makes each answer new: what the page shows is not compared."""
    from itertools import count

    from django_dbtune.nplusone.proof import prove

    runs = count()

    def run(targets):
        return Outcome(2 if targets else 6, 200, content=f"token {next(runs)}"), 1

    [judged_finding] = prove([finding()], run)
    assert judged_finding.proof.verdict == "proven", judged_finding.proof


@pytest.mark.django_db(transaction=True)
def test_under_asgi_the_middleware_names_the_command_that_proves_its_findings(settings):
    """The middleware's async path never runs a request again: its findings say so and
    name the command, as the settings page says."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    settings.MIDDLEWARE = ["django_dbtune.middleware.NPlusOneMiddleware", *settings.MIDDLEWARE]
    settings.DBTUNE = {"NPLUSONE_PROVE": True}
    forget_proofs()
    response = async_to_sync(AsyncClient().get)("/shop/books/async/")
    assert response.status_code == 200
    [found] = response.asgi_request.dbtune_nplusone.findings
    assert found.proof is None or found.proof.verdict != "proven"
    assert "manage.py dbtune_nplusone /shop/books/async/ proves it" in found.message


def test_the_middleware_proves_each_fix_once_per_process(client, settings):
    from django.db import connection

    settings.MIDDLEWARE = ["django_dbtune.middleware.NPlusOneMiddleware", *settings.MIDDLEWARE]
    settings.DBTUNE = {"NPLUSONE_PROVE": True}
    forget_proofs()
    page = Book.objects.count() + 1
    with CaptureQueriesContext(connection) as first:
        response = client.get("/shop/books/")
    [found] = response.wsgi_request.dbtune_nplusone.findings
    assert found.proof.verdict == "proven"
    assert len(first) >= 2 * page + 1  # the page, again as it is, and with the fix
    with CaptureQueriesContext(connection) as second:
        response = client.get("/shop/books/")
    assert len(second) == page
    kept = response.wsgi_request.dbtune_nplusone.findings[0].proof
    assert kept == replace(found.proof, earlier=True)  # the same counts, said to be earlier
    assert "on an earlier request of this page" in kept.text
    forget_proofs()


def test_a_proofs_runs_are_not_counted_as_the_pages_queries(client, settings):
    # CaptureMiddleware (or dbtune_capture, or a workload file) around a middleware that
    # proves: the page's log holds the page's queries, not the runs of the proof as well.
    from django.db import connection

    capture = "django_dbtune.middleware.CaptureMiddleware"
    rest = [name for name in settings.MIDDLEWARE if name != capture]
    settings.MIDDLEWARE = [capture, "django_dbtune.middleware.NPlusOneMiddleware", *rest]
    settings.DBTUNE = {"NPLUSONE_PROVE": True}
    forget_proofs()
    with CaptureQueriesContext(connection) as ran:
        response = client.get("/shop/books/")
    [found] = response.wsgi_request.dbtune_nplusone.findings
    assert found.proof.verdict == "proven"
    page = Book.objects.count() + 1
    assert len(ran) >= 2 * page + 1  # the proof did run the page again
    assert len(response.wsgi_request.dbtune_queries) == page
    forget_proofs()


def test_the_middleware_never_runs_an_unsafe_request_again(client, settings):
    from django.db import connection

    settings.MIDDLEWARE = ["django_dbtune.middleware.NPlusOneMiddleware", *settings.MIDDLEWARE]
    settings.DBTUNE = {"NPLUSONE_PROVE": True}
    forget_proofs()
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/shop/books/")
    [found] = response.wsgi_request.dbtune_nplusone.findings
    assert found.proof.verdict == "unproven"
    assert "a POST request is never run again" in found.proof.reason
    assert len(queries) == Book.objects.count() + 1


def test_a_related_manager_read_in_a_detail_template_is_fixed_on_the_views_queryset():
    author = Author.objects.first()
    Book.objects.update(editor=author)
    url = f"/shop/authors/{author.pk}/"
    [finding] = pages(url)[url]["findings"]
    assert finding["relation"] == "shop.Book.editor"
    assert finding["fix"] == (
        'queryset = Author.objects.prefetch_related("books__editor")'
        "  # on tests.shop.views.AuthorDetailView"
    )
    assert finding["call_site"] == "tests/shop/templates/shop/author_detail.html:4"
    proof = finding["proof"]
    assert proof["verdict"] == "proven", proof
    assert proof["after"] < proof["before"]


def test_a_related_managers_chain_built_by_a_template_is_fixed_where_the_template_runs_it():
    """author.books.summarized in the template: a filter past the related manager, which
    a prefetch on the view would not serve (it did not lower the count). The fix goes on
    the queryset the template runs, to be built in the view."""
    author = Author.objects.first()
    Book.objects.update(editor=author)
    books = author.books.count()
    url = f"/shop/authors/{author.pk}/summaries/"
    [finding] = pages(url)[url]["findings"]
    assert finding["relation"] == "shop.Book.editor"
    assert finding["fix"] == '.select_related("editor")'
    assert finding["queryset_site"] == "tests/shop/templates/shop/author_summaries.html:3"
    assert "build it in the view" in finding["advice"]
    assert finding["target"]["in_template"] is True
    proof = finding["proof"]
    assert proof["verdict"] == "proven", proof
    assert (proof["before"], proof["after"]) == (2 + books, 2)


def test_a_reversed_related_manager_in_a_template_is_fixed_where_the_template_runs_it():
    """author.books.reverse: the same SQL when the books have no order, but a new query
    even after a prefetch (the view's prefetch did not lower the count)."""
    author = Author.objects.first()
    Book.objects.update(editor=author)
    url = f"/shop/authors/{author.pk}/reversed/"
    [finding] = pages(url)[url]["findings"]
    assert finding["queryset_site"] == "tests/shop/templates/shop/author_reversed.html:3"
    assert finding["proof"]["verdict"] == "proven", finding["proof"]


def test_a_default_manager_that_annotates_leaves_a_plain_template_read_to_the_prefetch(
    monkeypatch,
):
    """A default manager annotating with Exists(): every queryset it builds holds its own
    subquery, equal to no other, but a template's author.books.all is still served by the
    view's prefetch."""
    from django.db.models import Exists, OuterRef

    from tests.shop.models import Review

    manager_class = type(Book._default_manager)
    built = manager_class.get_queryset

    def annotated(self):
        reviews = Review.objects.filter(book=OuterRef("pk"))
        return built(self).annotate(reviewed=Exists(reviews))

    monkeypatch.setattr(manager_class, "get_queryset", annotated)
    author = Author.objects.first()
    Book.objects.update(editor=author)
    url = f"/shop/authors/{author.pk}/"
    [finding] = pages(url)[url]["findings"]
    assert finding["fix"] == (
        'queryset = Author.objects.prefetch_related("books__editor")'
        "  # on tests.shop.views.AuthorDetailView"
    )
    assert finding["proof"]["verdict"] == "proven", finding["proof"]


def test_an_admin_fix_keeps_the_joins_the_admin_made_by_itself(admin_user, client):
    """Before Django 6.1 the admin joins every non-null foreign key in depth (book and
    book__author here) when list_display shows one: a list_select_related naming only
    list_display's relations dropped book__author and added a query per row."""
    from tests.shop.models import Review

    for book in Book.objects.all():
        Review.objects.create(book=book, reviewer=book.author, text="good")
    [finding] = pages("/admin/shop/review/", "--user", "boss")["/admin/shop/review/"]["findings"]
    assert "book__author" in finding["fix"]
    proof = finding["proof"]
    assert proof["verdict"] == "proven", proof
    client.force_login(admin_user)
    from tests.shop.admin import ReviewAdmin

    ReviewAdmin.list_select_related = tuple(finding["target"]["list_select_related"])
    try:
        after = count_queries(client, "/admin/shop/review/")
    finally:
        del ReviewAdmin.list_select_related
    Review.objects.create(book=Book.objects.first(), reviewer=None, text="more rows")
    ReviewAdmin.list_select_related = tuple(finding["target"]["list_select_related"])
    try:
        assert count_queries(client, "/admin/shop/review/") == after  # no growth with rows
    finally:
        del ReviewAdmin.list_select_related


def test_a_count_through_another_relation_is_fixed_by_a_prefetch_not_an_annotation():
    """Author -> books -> a count per book: Count("books__tags") on the author would count
    per author, so the fix prefetches and .count() reads the prefetched rows."""
    from django_dbtune.nplusone import detect

    def page():
        return [
            [book.tags.count() for book in author.books.all()]
            for author in Author.objects.order_by("id")
        ]

    with detect() as report:
        expected = page()
    found = [f for f in report.findings if "shop.Book.tags" in f.relations]
    assert [f.fix for f in found] == ['.prefetch_related("books__tags")'], report.message()

    [proven] = rerun_page(found, page, expected)
    assert proven.proof.verdict == "proven", proven.proof


# Django 6.1 deprecates the bare call this test is about.
@pytest.mark.filterwarnings("ignore:Calling select_related\\(\\) with no arguments")
def test_a_join_missing_from_a_bare_select_related_is_named_in_that_call(tmp_path):
    """select_related() with no names joins only non-null foreign keys and overrides named
    ones added before it: the fix names them all, to be written into that call."""
    from django_dbtune.nplusone import codemod, detect
    from django_dbtune.nplusone.proof import rerun

    Book.objects.update(editor=Author.objects.first())

    def page():
        books = Book.objects.filter(title__startswith="B")
        return [book.editor.name for book in books.select_related()]

    with detect() as report:
        page()
    [finding] = report.findings
    assert finding.fix == '.select_related("author", "editor")'
    assert "select_related() with no names" in finding.advice
    [proven] = rerun(report.findings, lambda: bool(page()) and None)
    assert proven.proof.verdict == "proven", proven.proof
    assert proven.proof.after == 1
    path = tmp_path / "views.py"
    path.write_text("books = Book.objects.filter(x=1)\nrows = books.select_related()\n")
    at_build = replace(proven.target, file=str(path), line=1)
    at_call = replace(proven.target, file=str(path), line=2)
    edits = codemod.plan([replace(proven, target=at_build)], since=time.time() + 1)
    assert "name the relations in it by hand" in edits.skipped[0][1]
    edits = codemod.plan([replace(proven, target=at_call)], since=time.time() + 1)
    assert 'books.select_related("author", "editor")' in edits.files[path]


GENERIC_FIX = (
    '.prefetch_related(GenericPrefetch("target", [Book.objects.select_related("author")]))'
)


def test_a_relation_past_a_generic_foreign_key_is_joined_for_its_type_only():
    """select_related("target__author") raises FieldError: a generic foreign key is no join;
    GenericPrefetch joins the author for the book rows."""
    from django_dbtune.nplusone import detect
    from tests.shop.models import Comment

    def page():
        return [comment.target.author.name for comment in Comment.objects.order_by("id")]

    with detect() as report:
        expected = page()
    [finding] = report.findings
    assert finding.fix == GENERIC_FIX
    assert finding.target.generic_prefetch == (
        ("target", "shop.Book", "author", "select_related"),
    )

    [proven] = rerun_page(report.findings, page, expected)
    assert proven.proof.verdict == "proven", proven.proof
    assert proven.proof.after == 2  # comments; their books joined with the authors


def test_a_generic_relation_of_several_types_gets_a_fix_that_holds_for_every_type():
    """A plain prefetch_related("target__author") raises when a comment is about an author,
    which has no author: the fix joins it for books only, and the proof shows it runs."""
    from django.contrib.contenttypes.prefetch import GenericPrefetch

    from django_dbtune.nplusone import detect
    from tests.shop.models import Comment

    for author in Author.objects.all():
        Comment.objects.create(target=author, text="prolific")

    def page():
        return [
            c.target.author.name if isinstance(c.target, Book) else c.target.name
            for c in Comment.objects.order_by("id")
        ]

    with detect() as report:
        expected = page()
    [finding] = [f for f in report.findings if f.path == "target__author"] or report.findings
    assert GENERIC_FIX in finding.fix, finding.fix
    [proven] = [
        judged
        for judged in rerun_page(report.findings, page, expected)
        if judged.path == finding.path
    ]
    assert proven.proof.verdict == "proven", proven.proof
    books = Book.objects.select_related("author")
    pasted = Comment.objects.prefetch_related(GenericPrefetch("target", [books]))
    assert [c.target.pk for c in pasted.order_by("id")] == [
        c.target.pk for c in Comment.objects.order_by("id")
    ]


def test_a_count_through_a_default_reverse_accessor_is_proven(db):
    """book.review_set.count() per row: Count() must name "review", or the proof's re-run
    raises FieldError and the fix is never offered."""
    from django_dbtune.nplusone import detect
    from tests.shop.models import Review

    for book in Book.objects.all():
        Review.objects.create(book=book, text="good")

    def page():
        return [book.review_set.count() for book in Book.objects.order_by("id")]

    with detect() as report:
        expected = page()
    [finding] = report.findings
    assert finding.fix == '.annotate(review_set_count=Count("review", distinct=True))'

    [proven] = rerun_page(report.findings, page, expected)
    assert proven.proof.verdict == "proven", proven.proof
    assert (proven.proof.before, proven.proof.after) == (1 + Book.objects.count(), 1)


@pytest.mark.usefixtures("products")
def test_django_taggit_tags_in_a_template_are_proven_by_a_prefetch():
    [finding] = pages("/shop/products/")["/shop/products/"]["findings"]
    assert finding["relation"] == "shop.Product.tags"
    assert finding["fix"] == '.prefetch_related("tags")'
    proof = finding["proof"]
    assert (proof["verdict"], proof["before"], proof["after"]) == ("proven", 5, 2)


def test_an_n_plus_one_inside_a_librarys_view_is_reported_with_no_place_for_a_fix(settings):
    """A CMS's own listing loading the project's rows one by one: no project line, but still
    the project's pages, so it is reported (it used to vanish), labelled unproven."""
    settings.DBTUNE = {"IGNORED_MODULES": ["tests.shop.library"]}
    [finding] = pages("/shop/library/listing/")["/shop/library/listing/"]["findings"]
    assert finding["relation"] == "shop.Book.author"
    assert finding["call_site"] is None
    assert finding["proof"]["verdict"] == "unproven"
    assert "no place to apply the fix" in finding["proof"]["reason"]


def test_an_n_plus_one_in_a_librarys_class_based_view_is_fixed_in_a_subclass_of_it(settings):
    """A library's listing view (a Django ListView the library defines): the fix used to go
    "on" the library's class, which the project cannot edit. It goes in a subclass, proven
    on the view's querysets; written as the advice says, the subclass runs one query."""
    from django.db import connection
    from django.test import RequestFactory

    from tests.shop.library import Listing

    settings.DBTUNE = {"IGNORED_MODULES": ["tests.shop.library"]}
    url = "/shop/library/books/"
    [finding] = pages(url)[url]["findings"]
    assert finding["fix"] == (
        'Listing.as_view(queryset=Book.objects.select_related("author")) where the project '
        "calls Listing.as_view(), or a subclass of tests.shop.library.Listing whose "
        'get_queryset() returns super().get_queryset().select_related("author"), used in its '
        "place"
    )
    assert finding["queryset_site"] == (
        "tests.shop.library.Listing (installed code builds its queryset)"
    )
    assert finding["target"]["in_subclass"] is True
    proof = finding["proof"]
    assert proof["verdict"] == "proven", proof
    assert (proof["before"], proof["after"]) == (1 + Book.objects.count(), 1)

    class Mine(Listing):
        def get_queryset(self):
            return super().get_queryset().select_related("author")

    with CaptureQueriesContext(connection) as queries:
        assert Mine.as_view()(RequestFactory().get(url)).status_code == 200
    assert len(queries) == 1


def test_djangos_generic_view_used_as_it_is_takes_the_fix_in_as_view():
    """ListView.as_view(model=Book) in a URLconf: as_view(queryset=...) is the fix, and
    pasted as written the page runs one query."""
    from django.db import connection
    from django.test import RequestFactory
    from django.views.generic import ListView

    url = "/shop/generic/books/"
    [finding] = pages(url)[url]["findings"]
    assert finding["fix"].startswith(
        'ListView.as_view(queryset=Book.objects.select_related("author")) where the project '
        "calls ListView.as_view(), or a subclass of django.views.generic.list.ListView"
    )
    assert finding["proof"]["verdict"] == "proven", finding["proof"]
    view = ListView.as_view(
        queryset=Book.objects.select_related("author"), template_name="shop/generic_books.html"
    )
    with CaptureQueriesContext(connection) as queries:
        view(RequestFactory().get(url)).render()
    assert len(queries) == 1


@pytest.mark.parametrize("url", ["/shop/library/dashboard/", "/shop/library/authors/"])
def test_no_subclass_fix_where_no_method_of_the_view_returns_the_queryset(settings, url):
    """A library view building the queryset in get_context_data (whose override returns a
    dict), or listing another model than the rows read: a subclass fix there raised when
    pasted (AttributeError, FieldError), so the finding has no place instead."""
    settings.DBTUNE = {"IGNORED_MODULES": ["tests.shop.library"]}
    [finding] = pages(url)[url]["findings"]
    assert finding["relation"] == "shop.Book.author"
    assert "subclass" not in finding["fix"]
    assert finding["proof"]["verdict"] == "unproven"
    assert "no place to apply the fix" in finding["proof"]["reason"]


def test_a_queryset_an_installed_views_method_builds_is_fixed_by_overriding_that_method(settings):
    """A library's view builds its queryset in a method of its own and the template reads
    it after the view returned (a TemplateResponse, as Wagtail's listings): the view is no
    longer on the stack, but the method that built the queryset is known."""
    settings.DBTUNE = {"IGNORED_MODULES": ["tests.shop.library"]}
    url = "/shop/library/shelf/"
    [finding] = pages(url)[url]["findings"]
    assert finding["fix"] == (
        "a subclass of tests.shop.library.Shelf whose get_base_queryset() returns "
        'super().get_base_queryset().select_related("author"), used in its place'
    )
    proof = finding["proof"]
    assert proof["verdict"] == "proven", proof
    assert (proof["before"], proof["after"]) == (1 + Book.objects.count(), 1)


# --- Rows of subclasses (a CMS's .specific()), and filtered related reads ----------------------


@pytest.fixture
def items(settings):
    """Posters and mugs, listed through Item.objects.specific(): a library loads each kind
    with a query of its own, as Wagtail's page querysets do."""
    from tests.shop.models import Mug, Poster, Publisher

    settings.DBTUNE = {"IGNORED_MODULES": ["tests.shop.specific"]}
    makers = list(Publisher.objects.all())
    for n, author in enumerate(Author.objects.order_by("id")[:4]):
        Poster.objects.create(name=f"poster {n}", kind="poster", artist=author)
        Mug.objects.create(name=f"mug {n}", kind="mug", maker=makers[n % len(makers)])


def posters_artists():
    from tests.shop.models import Item

    return [item.artist.name for item in Item.objects.filter(kind="poster").specific()]


def poster_artists():
    from tests.shop.models import Poster

    return [poster.artist.name for poster in Poster.objects.order_by("id").specific()]


@pytest.mark.parametrize("page", [posters_artists, poster_artists])
def test_subclass_rows_are_fixed_with_the_querysets_own_subquery_loads(items, page):
    """Item.objects...specific(): the queryset cannot name a subclass's relation
    (select_related("artist") on Item raises). Poster.objects...specific(): the rows come
    from the iterable's own query, so the queryset's plain select_related("artist") joins
    rows nobody reads (Wagtail's page listings: "still 43 queries"). Its
    for_specific_subqueries loads reach them both, and the proof applies them."""
    from django_dbtune.nplusone import detect
    from tests.shop.models import Poster

    with detect() as report:
        expected = page()
    [finding] = report.findings
    assert finding.relation == "shop.Poster.artist"
    assert finding.fix == '.select_related("artist", for_specific_subqueries=True)'
    [proven] = rerun_page(report.findings, page, expected)
    assert proven.proof.verdict == "proven", proven.proof
    # The kinds, the posters, one artist each; then the kinds and the posters joined.
    assert (proven.proof.before, proven.proof.after) == (2 + Poster.objects.count(), 2)


def test_subclass_relations_of_two_kinds_on_one_queryset_are_not_offered_as_proven(items):
    """Each subclass's query must know every name: the proof shows the fix raises."""
    from django_dbtune.nplusone import detect
    from tests.shop.models import Item

    def page():
        return [
            item.artist.name if item.kind == "poster" else item.maker.name
            for item in Item.objects.order_by("id").specific()
        ]

    with detect() as report:
        expected = page()
    assert len(report.findings) == 1
    [judged_] = rerun_page(report.findings, page, expected)
    assert judged_.proof.verdict == "unproven"
    assert "raised FieldError" in judged_.proof.reason


def _first_long_book(author):
    """Reads the prefetched books when there are some, as Wagtail reads renditions."""
    if "books" in getattr(author, "_prefetched_objects_cache", {}):
        return next((b.title for b in author.books.all() if len(b.title) > 1), None)
    book = author.books.filter(title__regex=r"^..").first()
    return book.title if book else None


def test_a_filtered_read_that_uses_prefetched_rows_is_proven_with_a_plain_prefetch():
    from django_dbtune.nplusone import detect

    def page():
        return [_first_long_book(author) for author in Author.objects.order_by("id")]

    with detect() as report:
        expected = page()
    [finding] = report.findings
    # Until a re-run shows otherwise, the fix that holds for any filtered read.
    assert finding.fix.startswith('.prefetch_related(Prefetch("books"')
    [proven] = rerun_page(report.findings, page, expected)
    assert proven.proof.verdict == "proven", proven.proof
    assert proven.fix == '.prefetch_related("books")'
    assert proven.proof.after == 2


def test_a_filtered_read_that_queries_anyway_keeps_the_general_fix():
    from django_dbtune.nplusone import detect

    def page():
        return [
            getattr(author.books.filter(title__regex=r"^..").first(), "title", None)
            for author in Author.objects.order_by("id")
        ]

    with detect() as report:
        expected = page()
    [judged_] = rerun_page(report.findings, page, expected)
    assert judged_.proof.verdict == "unproven"
    assert "did not go down" in judged_.proof.reason
    assert 'suggestion (unproven): .prefetch_related(Prefetch("books"' in judged_.message


def test_a_page_that_caches_in_local_memory_is_proven_as_on_its_first_run(settings):
    """Each re-run starts from empty local-memory caches (Wagtail keeps renditions and
    template fragments there), so it repeats what the first run did; what the first run
    cached is still there afterwards."""
    from django.core.cache import cache

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

    from django_dbtune.nplusone import detect

    def page():
        names = cache.get("book-authors")
        if names is None:
            names = [book.author.name for book in Book.objects.order_by("id")]
            cache.set("book-authors", names)
        return names

    cache.delete("book-authors")
    with detect() as report:
        expected = page()
    [proven] = rerun_page(report.findings, page, expected)
    assert proven.proof.verdict == "proven", proven.proof
    assert (proven.proof.before, proven.proof.after) == (1 + Book.objects.count(), 1)
    assert cache.get("book-authors") == expected
    cache.delete("book-authors")


MEMO: dict[str, list[str]] = {}


def test_a_page_that_no_longer_repeats_the_loads_when_run_again_says_so():
    """A cache the re-runs cannot start empty (a module's own memo, Redis): they load
    nothing per row, so they cannot show what the fix saves."""
    from django_dbtune.nplusone import detect

    def page():
        if "names" not in MEMO:
            MEMO["names"] = [book.author.name for book in Book.objects.order_by("id")]
        return MEMO["names"]

    MEMO.clear()
    with detect() as report:
        expected = page()
    [judged_] = rerun_page(report.findings, page, expected)
    assert judged_.proof.verdict == "unproven"
    assert "no longer ran these queries per row" in judged_.proof.reason
    MEMO.clear()


def test_a_filtered_read_is_proven_on_its_own_never_merged_into_a_fix_that_works():
    """Merged into the author join, the plain prefetch that saves nothing would be called
    proven by the join's saving."""
    from django_dbtune.nplusone import detect

    def page():
        return [
            (
                book.author.name,
                getattr(book.author.books.filter(title__regex=r"^..").first(), "pk", 0),
            )
            for book in Book.objects.order_by("id")
        ]

    with detect() as report:
        expected = page()
    judged_ = {f.relations: f for f in rerun_page(report.findings, page, expected)}
    assert judged_[("shop.Book.author",)].proof.verdict == "proven"
    filtered = judged_[("shop.Author.books",)]
    assert filtered.proof.verdict == "unproven", filtered.proof
    assert filtered.fix.startswith('.prefetch_related(Prefetch("author__books"')


def test_one_relation_looped_at_two_places_has_each_fix_proven_on_its_own():
    from django_dbtune.nplusone import detect

    def page():
        first = [book.author.name for book in Book.objects.order_by("id")]
        again = [book.author.name for book in Book.objects.order_by("-id")]
        return first, again

    with detect() as report:
        expected = page()
    assert len(report.findings) == 2
    for proven in rerun_page(report.findings, page, expected):
        assert proven.proof.verdict == "proven", proven.proof


@pytest.mark.django_db(transaction=True)
def test_a_proof_leaves_a_request_in_another_thread_as_written():
    """The middleware proves in-process: while it re-runs a page with the fix, a request
    that another thread serves meanwhile must run its own code, not the fix."""
    from django_dbtune.nplusone import detect
    from django_dbtune.nplusone.fix_in_place import applied

    def page():
        return [book.author.name for book in Book.objects.order_by("id")]

    with detect() as report:
        page()
    [finding] = report.findings
    assert finding.target.select_related == ("author",)
    counted = []

    def other_request():
        with detect() as other:
            page()
        # The page's own queries (a new connection on MariaDB first asks the server's
        # version and settings, which capture records too).
        counted.append(len([r for r in other.queries.records if "shop_" in r.sql]))

    with detect(), applied(finding.target) as seen:
        page()  # the re-run itself gets the fix
        thread = threading.Thread(target=other_request)
        thread.start()
        thread.join()
    assert seen.hits == 1
    assert counted == [1 + Book.objects.count()]


def test_relations_past_a_generic_foreign_key_merge_into_one_fix_that_keeps_them_all():
    """Past one generic foreign key: the author join of the books, the publisher join of
    the authors, and the books' tags. One GenericPrefetch with a queryset per type (Django
    skips a second GenericPrefetch of the same lookup; a plain "target__tags" raises on the
    authors)."""
    from django_dbtune.nplusone import detect
    from tests.shop.models import Comment

    for author in Author.objects.all():
        Comment.objects.create(target=author, text="prolific")

    def page():
        return [
            (c.target.author.name, [t.name for t in c.target.tags.all()])
            if isinstance(c.target, Book)
            else (c.target.publisher.name, [])
            for c in Comment.objects.order_by("id")
        ]

    with detect() as report:
        expected = page()
    [finding] = report.findings
    assert finding.fix == (
        '.prefetch_related(GenericPrefetch("target", [Book.objects.select_related("author")'
        '.prefetch_related("tags"), Author.objects.select_related("publisher")]))'
    ), finding.fix
    [proven] = [f for f in rerun_page(report.findings, page, expected) if f.fix == finding.fix]
    assert proven.proof.verdict == "proven", proven.proof
    # comments; books with authors; authors with publishers; the books' tags
    assert proven.proof.after == 4
