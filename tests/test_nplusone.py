"""The N+1 detector, as a project's code and tests meet it."""

import asyncio
import contextlib
import inspect
import json
import logging
import pickle
import sys
import threading

import django
import pytest
from asgiref.sync import async_to_sync
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.core.checks import run_checks
from django.db import connection, models
from django.db.models import Count, Prefetch, Sum, prefetch_related_objects, sql
from django.db.models.fields.related_descriptors import ForwardManyToOneDescriptor
from django.db.models.query import QuerySet
from django.test import AsyncClient, override_settings
from django.test.utils import CaptureQueriesContext

from django_dbtune import CaptureError, DbtuneError, NPlusOneError, filled_rows
from django_dbtune.nplusone import detect, patches, pause
from django_dbtune.nplusone.proof import rerun
from django_dbtune.nplusone.read_watch import ReadWatch
from tests.shop.models import (
    Author,
    Book,
    Comment,
    Note,
    Product,
    Profile,
    Publisher,
    Review,
    Tag,
)

HERE = "tests/test_nplusone.py"


def line_of(text):
    """The line number of the first line of this file containing ``text``."""
    source = inspect.getsource(inspect.getmodule(line_of)).splitlines()
    return next(number for number, line in enumerate(source, 1) if text in line)


@pytest.fixture
def shop(db):
    """3 authors (2 publishers), each with a profile and 2 books; 2 tags per book."""
    publishers = [Publisher.objects.create(name=f"P{i}") for i in range(2)]
    tags = [Tag.objects.create(name=f"t{i}") for i in range(3)]
    for i in range(3):
        author = Author.objects.create(name=f"A{i}", publisher=publishers[i % 2])
        Profile.objects.create(author=author, bio="bio")
        for j in range(2):
            book = Book.objects.create(title=f"B{i}{j}", author=author, summary="s")
            book.tags.set(tags[:2])
            Comment.objects.create(target=book, text="nice")


def only(report, kind="n_plus_one"):
    found = [finding for finding in report.findings if finding.kind == kind]
    assert len(found) == 1, report.message()
    return found[0]


# --- N+1 through every kind of relation ------------------------------------------------------


def test_forward_foreign_key_in_a_loop(shop):
    with detect() as report:
        books = Book.objects.order_by("id")  # built here
        for book in books:
            book.author.name  # the lazy load
    finding = only(report)
    assert finding.relation == "shop.Book.author"
    assert finding.count == 6
    assert finding.fix == '.select_related("author")'
    assert finding.call_site == f"{HERE}:{line_of('# the lazy load')} in " + (
        "test_forward_foreign_key_in_a_loop"
    )
    assert finding.queryset_site.startswith(f"{HERE}:{line_of('# built here')} in ")
    assert "shop_author" in finding.sample_sql
    assert finding.database == "default"


def test_the_fix_removes_the_finding_and_the_growth(shop):
    with detect() as report, CaptureQueriesContext(connection) as queries:
        for book in Book.objects.select_related("author"):
            book.author.name
    assert report.findings == []
    assert len(queries) == 1


def test_two_levels_loaded_lazily_are_one_finding_with_one_fix(shop):
    with detect() as report:
        for book in Book.objects.all():
            book.author.publisher.name
    [finding] = report.findings
    assert finding.relations == ("shop.Book.author", "shop.Author.publisher")
    assert finding.fix == '.select_related("author__publisher")'
    assert finding.count == 2 * Book.objects.count()
    with CaptureQueriesContext(connection) as queries:
        for book in Book.objects.select_related("author__publisher"):
            book.author.publisher.name
    assert len(queries) == 1


def test_second_level_behind_select_related(shop):
    with detect() as report:
        for book in Book.objects.select_related("author"):
            book.author.publisher.name
    finding = only(report)
    assert finding.relation == "shop.Author.publisher"
    assert finding.fix == '.select_related("author__publisher")'


def test_reverse_foreign_key_manager(shop):
    with detect() as report:
        for author in Author.objects.all():
            [book.title for book in author.books.all()]
    finding = only(report)
    assert (finding.relation, finding.count) == ("shop.Author.books", 3)
    assert finding.fix == '.prefetch_related("books")'


def test_first_on_a_related_manager_needs_a_prefetch_object(shop):
    with detect() as report:
        for author in Author.objects.all():
            author.books.order_by("title").first()
    finding = only(report)
    assert finding.relation == "shop.Author.books"
    assert finding.fix.startswith('.prefetch_related(Prefetch("books", queryset=Book.objects')
    assert "to_attr" in finding.fix


def test_a_slice_of_a_related_manager_is_served_by_a_plain_prefetch(shop):
    with detect() as report:
        for author in Author.objects.order_by("id"):
            [book.title for book in author.books.all()[:1]]
    finding = only(report)
    assert finding.fix == '.prefetch_related("books")'
    with CaptureQueriesContext(connection) as queries:
        for author in Author.objects.order_by("id").prefetch_related("books"):
            [book.title for book in author.books.all()[:1]]
    assert len(queries) == 2


def test_filter_bypasses_a_prefetch(shop):
    with detect() as report:
        for author in Author.objects.prefetch_related("books"):
            list(author.books.filter(title__startswith="B"))
    n_plus_one = only(report)
    assert n_plus_one.relation == "shop.Author.books"
    assert "Prefetch(" in n_plus_one.fix
    unused = only(report, "unused_prefetch_related")
    assert unused.path == "books"


def test_many_to_many(shop):
    with detect() as report:
        for book in Book.objects.all():
            [tag.name for tag in book.tags.all()]
    finding = only(report)
    assert finding.relation == "shop.Book.tags"
    assert finding.fix == '.prefetch_related("tags")'


def test_one_to_one_both_ways(shop):
    with detect() as report:
        for profile in Profile.objects.all():
            profile.author.name
        for author in Author.objects.all():
            author.profile.bio
    fixes = {finding.relation: finding.fix for finding in report.findings}
    assert fixes == {
        "shop.Profile.author": '.select_related("author")',
        "shop.Author.profile": '.select_related("profile")',
    }


def test_generic_foreign_key_and_generic_relation(shop):
    with detect() as report:
        for comment in Comment.objects.all():
            comment.target.title
        for book in Book.objects.all():
            list(book.comments.all())
    fixes = {finding.relation: finding.fix for finding in report.findings}
    assert fixes == {
        "shop.Comment.target": '.prefetch_related("target")',
        "shop.Book.comments": '.prefetch_related("comments")',
    }


def test_deferred_fields(shop):
    with detect() as report:
        for book in Book.objects.only("title"):
            book.summary
        for book in Book.objects.defer("summary"):
            book.summary
    fixes = sorted(finding.fix for finding in report.findings)
    assert fixes == ['add "summary" to .only(...)', 'remove "summary" from .defer(...)']


def test_get_per_row_written_by_hand(shop):
    with detect() as report:
        for book in Book.objects.all():
            Author.objects.get(pk=book.author_id)
    finding = only(report)
    assert finding.relation == "shop.Author.id"
    assert finding.count == 6
    assert finding.fix == "Author.objects.in_bulk(values) before the loop"


def test_filter_first_per_row_written_by_hand(shop):
    with detect() as report:
        for author in Author.objects.all():
            Book.objects.filter(author=author).first()
    finding = only(report)
    assert finding.relation == "shop.Book.author"
    assert finding.fix == '.prefetch_related("books") on the Author queryset'


def test_prefetch_related_objects_per_instance(shop):
    with detect() as report:
        for book in Book.objects.all():
            prefetch_related_objects([book], "tags")
            list(book.tags.all())
    finding = only(report)
    assert finding.relation == "shop.Book.tags"
    assert finding.fix == '.prefetch_related("tags")'


def test_count_and_exists_per_row(shop):
    with detect() as report:
        for author in Author.objects.all():
            author.books.count()
            author.books.exists()
        for book in Book.objects.all():
            book.tags.count()
    fixes = sorted(finding.fix for finding in report.findings)
    assert fixes == [
        '.annotate(books_count=Count("books", distinct=True))',
        '.annotate(has_books=Exists(Book.objects.filter(author=OuterRef("pk"))))',
        '.annotate(tags_count=Count("tags", distinct=True))',
    ]


# --- Unused eager loads ----------------------------------------------------------------------


def test_unused_select_related_and_prefetch_related(shop):
    with detect() as report:
        list(Book.objects.select_related("author"))  # never read
        list(Author.objects.prefetch_related("books"))
    kinds = {(finding.kind, finding.path, finding.fix) for finding in report.findings}
    assert kinds == {
        ("unused_select_related", "author", 'remove "author" from .select_related(...)'),
        ("unused_prefetch_related", "books", 'remove "books" from .prefetch_related(...)'),
    }


def test_a_deeper_select_related_than_needed(shop):
    with detect() as report:
        for book in Book.objects.select_related("author__publisher"):
            book.author.name
    finding = only(report, "unused_select_related")
    assert finding.path == "author__publisher"
    assert finding.relation == "shop.Author.publisher"


def test_used_eager_loads_are_not_reported(shop):
    with detect() as report:
        for book in Book.objects.select_related("author").prefetch_related("tags", "comments"):
            book.author.name
            book.tags.count()
            list(book.comments.all())
        for author in Author.objects.prefetch_related(Prefetch("books", to_attr="book_list")):
            author.book_list
    assert report.findings == []


def test_eager_reads_are_told_apart_per_queryset_and_on_any_row(shop):
    forward = type(Book.__dict__["author"])
    reverse = type(Author.__dict__["profile"])
    with detect() as report:
        unread = list(Book.objects.select_related("author").order_by("id"))
        books = list(Book.objects.select_related("author").order_by("id"))
        books[-1].author.name  # only the last row: still a read
        authors = list(Author.objects.select_related("profile"))
        authors[0].profile.bio
        prefetched = list(Book.objects.prefetch_related("author"))
        prefetched[1].author.name
        # Read once, the descriptor is Django's own again for every later read.
        assert type(Author.__dict__["profile"]) is reverse
        assert type(Book.__dict__["author"]) is not forward  # the first queryset still waits
    finding = only(report, "unused_select_related")
    assert finding.queryset_site.startswith(f"{HERE}:{line_of('unread = list(')} ")
    # Nothing stays behind: every relation's descriptor is Django's again.
    assert type(Book.__dict__["author"]) is forward
    assert len(unread) == 6


# --- What is not an N+1 ----------------------------------------------------------------------


def test_single_objects_and_single_rows_are_fine(shop):
    with detect() as report:
        book = Book.objects.get(title="B00")
        book.author.name
        first = Book.objects.first()
        first.tags.count()
        for book in Book.objects.filter(title="B10"):
            book.author.name
            list(book.tags.all())
    assert report.findings == []


def test_cascade_deletes_are_not_reported(shop):
    with detect() as report:
        Author.objects.all().delete()
    assert report.findings == []
    assert Book.objects.count() == 0


def test_threshold(shop):
    with detect(threshold=7) as report:
        for book in Book.objects.all():
            book.author.name
    assert report.findings == []
    with pytest.raises(ValueError, match="threshold"):
        detect(threshold=1)


def test_the_threshold_counts_rows_when_a_loops_loads_are_kept_as_one(shop):
    """A loop's loads, one after another, are kept as one load of several rows; the
    threshold and the count still go by rows and queries."""
    with detect(threshold=6) as report:
        for book in Book.objects.order_by("id"):
            book.author.name
    assert only(report).count == 6
    with detect(threshold=7) as report:
        for book in Book.objects.order_by("id"):
            book.author.name
    assert report.findings == []
    with detect(threshold=6) as report:  # another query between two loads: counted the same
        for book in Book.objects.order_by("id"):
            book.author.name
            Tag.objects.filter(name="t0").exists()
    counts = {finding.relation: finding.count for finding in report.findings}
    assert counts["shop.Book.author"] == 6


def test_each_route_from_a_template_keeps_its_own_line(shop):
    """A load reached from a template through Django's code alone is recognised by its
    route after the first (CPython 3.12+); a load that passes a project method on the way
    (``Book.__str__``) is not on that route, and keeps the method's line, row after row."""
    from django.template import Context, Template

    template = Template(
        "{% for book in books %}{% if forloop.counter|divisibleby:2 %}\n"
        "{{ book.author.name }}{% else %}\n"
        "{{ book }}{% endif %}{% endfor %}"
    )
    with detect() as report:
        template.render(Context({"books": Book.objects.order_by("id")}))
    author = connection.ops.quote_name("shop_author")
    sites = [record.call_site for record in report.queries if author in record.sql]
    assert sites == ["tests/shop/models.py:83 in __str__", "<unknown source>:2"] * 3


def test_settings_threshold_and_unused_switch(shop):
    with override_settings(DBTUNE={"NPLUSONE_THRESHOLD": 10}), detect() as report:
        for book in Book.objects.all():
            book.author.name
    assert report.findings == []
    with override_settings(DBTUNE={"NPLUSONE_UNUSED_EAGER_LOADS": False}), detect() as report:
        list(Book.objects.select_related("author"))
    assert report.findings == []


def test_pause(shop):
    with detect() as report, pause():
        for book in Book.objects.all():
            book.author.name
    assert report.findings == []


def test_django_debug_toolbar_rendering_is_not_the_projects_n_plus_one(shop):
    debug_toolbar = pytest.importorskip(
        "debug_toolbar",
        reason="needs django-debug-toolbar: install it with pip install -e '.[toolbar]'",
    )
    # Code run from inside the toolbar's package, as its template panel runs repr().
    filename = debug_toolbar.__file__.replace("__init__.py", "panels/templates/panel.py")
    code = compile("for book in books:\n    book.author.name\n", filename, "exec")
    with detect() as report:
        exec(code, {"books": Book.objects.all()})
    assert report.findings == []


# --- Raising, allowing, baselines ------------------------------------------------------------


def test_raise_on_a_finding_with_the_whole_message(shop):
    def loop():
        for book in Book.objects.all():
            book.author.name

    with pytest.raises(NPlusOneError) as caught, detect(raise_=True):
        loop()
    assert isinstance(caught.value, DbtuneError)
    message = str(caught.value)
    assert "N+1 on shop.Book.author: 6 extra queries" in message
    assert '.select_related("author")' in message
    assert f"{HERE}:" in message


def test_allowlist_by_relation_call_site_and_url(shop):
    def loop():
        for book in Book.objects.all():
            book.author.name

    for rule in (
        {"relation": "shop.Book.*"},
        {"call_site": "tests/test_nplusone*"},
        {"url": "/legacy/*"},
    ):
        with detect(allow=[rule], url="/legacy/books/") as report:
            loop()
        assert report.findings == [], rule
    allow_authors = {"NPLUSONE_ALLOW": [{"relation": "shop.Author.*"}]}
    with override_settings(DBTUNE=allow_authors), detect() as report:
        loop()
    assert [finding.relation for finding in report.findings] == ["shop.Book.author"]


def test_baseline_reports_only_new_findings(shop, tmp_path):
    from django_dbtune.nplusone.allow import write_baseline

    with detect() as report:
        for book in Book.objects.all():
            book.author.name
    baseline = tmp_path / "nplusone-baseline.json"
    assert write_baseline(baseline, report.findings) == 1
    with detect(baseline=baseline) as report:
        for book in Book.objects.all():
            book.author.name  # known
        for book in Book.objects.all():
            list(book.tags.all())  # new
    assert [finding.relation for finding in report.findings] == ["shop.Book.tags"]


def test_a_broken_baseline_file_is_a_clear_error(shop, tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    baseline = tmp_path / "baseline.json"
    baseline.write_text("[1, 2]")
    with pytest.raises(ImproperlyConfigured, match="not a django-dbtune N\\+1 baseline"):
        detect(baseline=baseline).__enter__()
    assert not patches.installed()


def test_nplusone_settings_are_accepted_with_a_warning(shop):
    settings = {
        "NPLUSONE_RAISE": True,
        "NPLUSONE_WHITELIST": [{"label": "n_plus_one", "model": "shop.Book", "field": "author"}],
    }
    with override_settings(**settings):
        with detect() as report:
            for book in Book.objects.all():
                book.author.name
        assert report.findings == []
        ids = [message.id for message in run_checks(databases=[])]
    assert ids.count("dbtune.W002") == 2


# --- Hooks come out again --------------------------------------------------------------------


# Taken when the tests are collected, before any detection opened.
PRISTINE = {(p.owner, p.name): vars(p.owner).get(p.name) for p in patches.PATCHES}


def django_is_untouched():
    """Every object the detector patches is Django's own again (or gone, if it added it),
    and no model class keeps a read watch."""
    assert not patches.installed()
    for patch in patches.PATCHES:
        assert vars(patch.owner).get(patch.name) is PRISTINE[(patch.owner, patch.name)], (
            patch.owner,
            patch.name,
        )
    for model in apps.get_models():
        watches = [name for name, value in vars(model).items() if isinstance(value, ReadWatch)]
        assert watches == [], model
    assert filled_rows.listeners() == (), "the detector still listens for cached rows"
    return True


def test_every_patch_is_removed_on_exit(shop):
    descriptor_get = ForwardManyToOneDescriptor.__dict__["__get__"]
    with detect():
        with detect():
            assert patches.installed()
            list(Book.objects.select_related("author"))  # a read watch waits on Book.author
        assert patches.installed()
        assert QuerySet.__dict__["_fetch_all"] is not PRISTINE[(QuerySet, "_fetch_all")]
        # No attribute read is wrapped, not even while detecting.
        assert ForwardManyToOneDescriptor.__dict__["__get__"] is descriptor_get
    assert django_is_untouched()
    assert "_dbtune_tag" not in models.Model.__dict__


def test_every_patch_is_removed_after_an_exception_inside(shop):
    def crashing_view():
        with detect():
            for book in Book.objects.all():
                book.author.name
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        crashing_view()
    assert django_is_untouched()


def test_a_sync_detect_inside_async_code_fails_and_leaves_django_untouched(shop):
    async def view():
        with detect():
            pass

    with pytest.raises(CaptureError, match="async with"):
        asyncio.run(view())
    assert django_is_untouched()
    with detect() as report:  # and detection still works afterwards
        for book in Book.objects.all():
            book.author.name
    assert only(report).relation == "shop.Book.author"
    assert django_is_untouched()


@pytest.mark.django_db(transaction=True)
def test_a_detection_closing_while_another_thread_reads_its_eager_loads(shop):
    """One thread reads the select_related loads of its querysets while another thread's
    detection, watching the same relation, closes. Neither sees an error, each report is
    its own, and the hooks come out at the end."""
    rounds, querysets = 20, 150
    quiet = querysets + 1  # the same query 150 times is a finding of its own, not this test's
    errors = []
    unused = []
    start = threading.Barrier(2)

    def closing():  # many unread eager loads, then closes while the other thread reads
        try:
            for _ in range(rounds):
                with detect(threshold=quiet) as report:
                    for _ in range(querysets):
                        list(Book.objects.select_related("author")[:2])
                    start.wait()
                unused.append(len(report.findings))
        except BaseException as error:
            errors.append(error)
            start.abort()
        finally:
            connection.close()

    def reading():  # reads the eager load of each of its querysets once
        try:
            for _ in range(rounds):
                with detect(threshold=quiet) as report:
                    pages = [
                        list(Book.objects.select_related("author")[:2]) for _ in range(querysets)
                    ]
                    start.wait()
                    for page in pages:
                        page[0].author.name
                assert report.findings == []
        except BaseException as error:
            errors.append(error)
            start.abort()
        finally:
            connection.close()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=closing), threading.Thread(target=reading)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert unused == [1] * rounds  # one unused select_related("author") per round
    assert django_is_untouched()


def test_watched_instances_still_pickle_cleanly(shop):
    with detect():
        books = list(Book.objects.select_related("author"))
        restored = pickle.loads(pickle.dumps(books))
    assert [book.author.name for book in restored] == [book.author.name for book in books]
    # Nothing of the detection travels into a cache: a plain related-object cache, no tag.
    for book in restored:
        assert type(book._state.fields_cache) is dict
        assert getattr(book, "_dbtune_tag", None) is None


# --- Requests: middleware, templates, async, class-based views, admin, DRF --------------------


NPLUSONE_MIDDLEWARE = ["django_dbtune.middleware.NPlusOneMiddleware"]


@pytest.fixture
def with_middleware(settings):
    settings.MIDDLEWARE = NPLUSONE_MIDDLEWARE + list(settings.MIDDLEWARE)


def test_template_loop_reports_the_template_line(shop, client, with_middleware, caplog):
    with caplog.at_level(logging.WARNING, logger="django_dbtune.nplusone"):
        response = client.get("/shop/books/")
    finding = only(response.wsgi_request.dbtune_nplusone)
    assert finding.call_site == "tests/shop/templates/shop/book_list.html:4"
    assert finding.queryset_site.startswith("tests/shop/views.py:12 in book_list")
    assert finding.url == "/shop/books/"
    assert "GET /shop/books/: N+1 on shop.Book.author" in caplog.text
    fixed = client.get("/shop/books/fixed/")
    assert fixed.wsgi_request.dbtune_nplusone.findings == []


def test_middleware_can_raise(shop, client, with_middleware, settings):
    settings.DBTUNE = {"NPLUSONE_RAISE": True}
    with pytest.raises(NPlusOneError, match="GET /shop/books/"):
        client.get("/shop/books/")


@pytest.mark.django_db(transaction=True)
def test_async_view(shop, with_middleware):
    response = async_to_sync(AsyncClient().get)("/shop/books/async/")
    assert len(response.json()["rows"]) == 6
    finding = only(response.asgi_request.dbtune_nplusone)
    assert finding.relation == "shop.Author.id"
    assert finding.call_site.startswith("tests/shop/views.py:24 in async_book_titles")


def test_async_detect(shop):
    async def titles():
        async with detect() as report:
            async for book in Book.objects.all():
                await Author.objects.aget(pk=book.author_id)
        return report

    report = async_to_sync(titles)()
    assert only(report).relation == "shop.Author.id"


def test_generic_list_view_names_the_class_to_change(shop, client, with_middleware):
    response = client.get("/shop/books/generic/")
    finding = only(response.wsgi_request.dbtune_nplusone)
    assert finding.fix == (
        'queryset = Book.objects.select_related("author")  # on tests.shop.views.BookListView'
    )


def test_admin_changelist_names_list_select_related(shop, admin_client, with_middleware):
    Book.objects.update(editor=Author.objects.first())
    response = admin_client.get("/admin/shop/book/")
    assert response.status_code == 200
    # One finding, one attribute for the whole changelist: what list_display shows
    # (setting it replaces the admin's own joins) and every join a finding lacks.
    [finding] = response.wsgi_request.dbtune_nplusone.findings
    assert finding.fix == (
        'list_select_related = ("editor", "author__publisher")  # on tests.shop.admin.BookAdmin'
    )
    assert "replaces the admin's own joins" in finding.advice
    assert finding.advice.count("replaces the admin's own joins") == 1
    if django.VERSION < (6, 1):
        # Django 6.1's admin joins nullable foreign keys too; before, it left them lazy.
        assert set(finding.relations) == {"shop.Book.editor", "shop.Author.publisher"}
        assert "skips nullable ones" in finding.advice
    else:
        assert finding.relations == ("shop.Author.publisher",)
        assert finding.call_site.startswith("tests/shop/admin.py:")


def test_the_admin_fix_applied_as_written_ends_the_growth(shop, admin_client, with_middleware):
    """Pasted as written, list_select_related keeps the admin's own join of author, which a
    one-item ("editor",) or ("author__publisher",) dropped."""
    from django.test.utils import CaptureQueriesContext

    from tests.shop.admin import BookAdmin

    Book.objects.update(editor=Author.objects.first())
    response = admin_client.get("/admin/shop/book/")
    fix = response.wsgi_request.dbtune_nplusone.findings[0].fix
    names = fix.split("(", 1)[1].split(")", 1)[0]
    applied = tuple(name.strip().strip('"') for name in names.split(",") if name.strip())
    original = BookAdmin.list_select_related
    BookAdmin.list_select_related = applied
    try:
        with CaptureQueriesContext(connection) as before_more_rows:
            fixed = admin_client.get("/admin/shop/book/")
        assert fixed.wsgi_request.dbtune_nplusone.findings == []
        author = Author.objects.create(name="new", publisher=Publisher.objects.first())
        for i in range(4):
            Book.objects.create(title=f"more {i}", author=author, editor=author)
        with CaptureQueriesContext(connection) as after_more_rows:
            admin_client.get("/admin/shop/book/")
    finally:
        BookAdmin.list_select_related = original
    assert len(after_more_rows) == len(before_more_rows)


def test_a_model_admin_with_its_own_get_queryset_gets_a_fix_inside_it(
    shop, admin_client, with_middleware
):
    response = admin_client.get("/admin/shop/tag/")
    assert response.status_code == 200
    finding = only(response.wsgi_request.dbtune_nplusone)
    assert finding.relation == "shop.Tag.books"
    assert finding.fix == (
        '.prefetch_related("books") on the queryset tests.shop.admin.TagAdmin.get_queryset returns'
    )


def test_a_detail_pages_nested_rows_are_fixed_through_the_object_on_its_own_queryset(
    shop, client, with_middleware
):
    """A viewset's detail page serializes one author and, nested, its books and their
    tags: the fix goes on the viewset's queryset of authors, through ``books``. It was
    written as ``.prefetch_related("tags")`` on that queryset of authors, which have no
    tags: the page answered 500 once it was applied."""
    import tests.urls  # noqa: F401  (the viewset's queryset is built before any request)

    author = Author.objects.order_by("id").first()
    response = client.get(f"/shop/api/author-tree/{author.pk}/", HTTP_ACCEPT="application/json")
    assert len(response.json()["books"]) == 2
    finding = only(response.wsgi_request.dbtune_nplusone)
    assert finding.relation == "shop.Book.tags"
    assert finding.target.model == "shop.Author"
    assert finding.fix == (
        '.prefetch_related("books__tags")'
        " on the queryset attribute of tests.shop.views.AuthorTreeViewSet"
    )


@pytest.mark.parametrize("where", ["loaded-books", "built-books"])
def test_a_shared_view_queryset_read_for_one_object_is_never_called_unused(
    shop, client, with_middleware, where
):
    """A viewset's detail action reads one book and not its author: removing the join from
    the viewset's queryset (its attribute, or what its get_queryset builds), as advised,
    would have made its list run a query per book."""
    import tests.urls  # noqa: F401  (the viewset's queryset is built before any request)

    book = Book.objects.order_by("id").first()
    one = client.get(f"/shop/api/{where}/{book.pk}/title/", HTTP_ACCEPT="application/json")
    assert one.json() == {"title": book.title}
    assert one.wsgi_request.dbtune_nplusone.findings == []
    listed = client.get(f"/shop/api/{where}/", HTTP_ACCEPT="application/json")
    assert len(listed.json()) == 6
    assert listed.wsgi_request.dbtune_nplusone.findings == []


def test_rest_framework_nested_serializer(shop, client, with_middleware):
    import inspect

    from tests.shop.views import BookViewSet

    response = client.get("/shop/api/books/", HTTP_ACCEPT="application/json")
    assert len(response.json()) == 6
    finding = only(response.wsgi_request.dbtune_nplusone)
    assert finding.relation == "shop.Book.author"
    # Into its queryset attribute (Book.objects.order_by("id")), not a new one dropping it:
    # named by its class, or by its line when the module was first imported inside a
    # detection (a server's first request imports the URLconf).
    attribute = (
        '.select_related("author") on the queryset attribute of tests.shop.views.BookViewSet'
    )
    lines, first = inspect.getsourcelines(BookViewSet)
    at = next(first + n for n, line in enumerate(lines) if line.strip().startswith("queryset ="))
    target = finding.target
    assert finding.fix == attribute or (
        finding.fix == '.select_related("author")'
        and (target.file, target.line) == ("tests/shop/views.py", at)
    ), finding.message


# --- Nested detections ---------------------------------------------------------------------


def test_a_detection_inside_another_gives_both_the_same_right_finding(shop):
    """NPlusOneMiddleware around a request that dbtune_nplusone, the pytest plugin or a
    test's detect() also watches: both detections report the relation and its fix."""
    with detect() as outer, detect() as inner:
        for book in Book.objects.all()[:10]:
            book.author.name
    for report in (inner, outer):
        finding = only(report)
        assert finding.relation == "shop.Book.author", report.message()
        assert finding.fix == '.select_related("author")'
        assert finding.count == 6


def test_a_detection_inside_another_leaves_the_outer_ones_own_findings(shop):
    with detect() as outer:
        for book in Book.objects.order_by("id"):
            book.author.name  # outer only
        with detect() as inner:
            for profile in Profile.objects.all():
                profile.author.name
    assert sorted(f.relation for f in outer.findings if f.kind == "n_plus_one") == [
        "shop.Book.author",
        "shop.Profile.author",
    ]
    assert [f.relation for f in inner.findings if f.kind == "n_plus_one"] == [
        "shop.Profile.author"
    ]


def test_dbtune_nplusone_under_the_middleware_names_the_relation_and_the_fix(
    shop, with_middleware
):
    """The documented development setup (NPlusOneMiddleware) and the command that requests
    pages in-process: a detection inside a detection."""
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("dbtune_nplusone", "/shop/books/", "--format", "json", stdout=out)
    [page] = json.loads(out.getvalue())
    [finding] = [f for f in page["findings"] if f["kind"] == "n_plus_one"]
    assert finding["relation"] == "shop.Book.author"
    assert finding["fix"] == '.select_related("author")'
    assert finding["call_site"] == "tests/shop/templates/shop/book_list.html:4"


def test_detect_around_the_test_client_under_the_middleware(shop, client, with_middleware):
    with detect() as report:
        response = client.get("/shop/books/")
    for found in (report, response.wsgi_request.dbtune_nplusone):
        finding = only(found)
        assert finding.relation == "shop.Book.author"
        assert finding.call_site == "tests/shop/templates/shop/book_list.html:4"


def test_the_toolbars_own_rendering_of_project_objects_is_not_the_projects_n_plus_one(shop):
    """django-debug-toolbar formats template context with repr(), which reaches the project's
    __str__ (here it reads book.author): the loads are the toolbar's, not the view's."""
    pytest.importorskip(
        "debug_toolbar",
        reason="needs django-debug-toolbar: install it with pip install -e '.[toolbar]'",
    )
    from debug_toolbar.panels.settings import safe_pformat

    with detect() as report:
        books = list(Book.objects.order_by("id"))
        safe_pformat(books)
    assert report.findings == [], report.message()
    with detect() as report:
        titles = [str(book) for book in Book.objects.order_by("id")]  # the project's own
    assert len(titles) == 6
    assert only(report).relation == "shop.Book.author"


@pytest.fixture
def reviews(shop):
    for book in Book.objects.all():
        for author in Author.objects.all()[:2]:
            Review.objects.create(book=book, reviewer=author, text="good")


def test_a_prefetch_through_a_default_reverse_accessor_is_seen_read(reviews):
    """book.review_set: the accessor Django names <model>_set, which _meta.get_field does
    not know by that name. Read, it is no unused eager load."""
    with detect() as report:
        for book in Book.objects.prefetch_related("review_set__reviewer"):
            [review.reviewer.name for review in book.review_set.all()]
    assert report.findings == [], report.message()


def test_an_unread_prefetch_through_a_default_reverse_accessor_is_unused(reviews):
    with detect() as report:
        titles = [book.title for book in Book.objects.prefetch_related("review_set")]
    assert len(titles) == 6
    assert [f.kind for f in report.findings] == ["unused_prefetch_related"], report.message()


def test_a_prefetch_object_through_a_default_reverse_accessor_is_followed(reviews):
    ordered = Review.objects.order_by("id")
    with detect() as report:
        for book in Book.objects.prefetch_related(Prefetch("review_set", queryset=ordered)):
            [review.text for review in book.review_set.all()]
    assert report.findings == [], report.message()
    with detect() as report:
        titles = [book.title for book in Book.objects.prefetch_related(Prefetch("review_set"))]
    assert len(titles) == 6
    (finding,) = report.findings
    assert (finding.kind, finding.path) == ("unused_prefetch_related", "review_set")


def test_a_count_through_a_default_reverse_accessor_gets_a_fix_that_runs(reviews):
    """Count() knows book.review_set as "review": the accessor's name would raise FieldError."""
    with detect() as report:
        for book in Book.objects.all():
            book.review_set.count()
        for author in Author.objects.prefetch_related("books"):
            [book.review_set.aggregate(Sum("id")) for book in author.books.all()]
    fixes = sorted(finding.fix for finding in report.findings)
    assert fixes == [
        '.annotate(...) over "books__review" instead of .aggregate() per row',
        '.annotate(review_set_count=Count("review", distinct=True))',
    ]
    counted = Book.objects.annotate(review_set_count=Count("review"))
    assert {book.review_set_count for book in counted} == {2}


def test_an_unused_eager_load_is_never_called_safe_to_remove_as_a_fact(shop):
    """Nothing read the join on this run; other rows may (a __str__ that falls back to the
    relation when a field is empty): until a run without it proves otherwise, say so."""
    with detect() as report:
        titles = [book.title for book in Book.objects.select_related("author")]
    assert len(titles) == 6
    (finding,) = report.findings
    assert finding.kind == "unused_select_related"
    assert "Unproven" in finding.advice and "other data" in finding.advice
    assert "Unproven" in finding.message


def test_a_related_managers_queryset_is_fixed_where_it_was_built(shop):
    author = Author.objects.first()
    Book.objects.update(editor=author)
    with detect() as report:
        books = author.books.order_by("id")  # built from a related manager
        names = [book.editor.name for book in books]
    assert len(names) == 2
    finding = only(report)
    assert finding.relation == "shop.Book.editor"
    assert finding.queryset_site.startswith(
        f"{HERE}:{line_of('# built from a related manager')} in "
    )


# --- Managers that build their querysets themselves -------------------------------------------


@pytest.fixture
def products(db):
    """4 products from 2 makers, each tagged "red" and "blue" (django-taggit) with a note."""
    makers = [Publisher.objects.create(name=f"M{i}") for i in range(2)]
    for i in range(4):
        product = Product.objects.create(name=f"P{i}", maker=makers[i % 2])
        product.tags.add("red", "blue")
        Note.objects.create(target=product, text="fragile")


def test_a_custom_managers_queryset_is_fixed_where_it_was_built(products):
    """ProductManager.get_queryset returns ProductQuerySet(self.model, using=self._db), as
    Django's documentation shows: no super(), yet the fix still goes where the list was built."""
    with detect() as report:
        in_stock = Product.objects.in_stock()  # built through a custom manager
        makers = [product.maker.name for product in in_stock]
    assert len(makers) == 4
    finding = only(report)
    assert finding.relation == "shop.Product.maker"
    assert finding.fix == '.select_related("maker")'
    assert finding.queryset_site.startswith(
        f"{HERE}:{line_of('# built through a custom manager')} in "
    )


class OwnQuery(sql.Query):
    """A Query subclass, as django-cte and django-postgres-extra have."""

    def __init__(self, model, alias_cols=True):
        super().__init__(model, alias_cols)


class BuildsItsQuery(QuerySet):
    """django-cte's shape: the queryset builds its own query, then hands it to super()."""

    def __init__(self, model=None, query=None, using=None, hints=None):
        super().__init__(model, query or OwnQuery(model), using, hints)


class ReplacesItsQuery(QuerySet):
    """django-postgres-extra's shape: super() builds a query, then it is replaced."""

    def __init__(self, model=None, query=None, using=None, hints=None):
        super().__init__(model, query, using, hints)
        self.query = query or OwnQuery(self.model)


class Holder:
    """A project class that builds its queryset in its own __init__."""

    def __init__(self):
        self.books = Book.objects.all()  # built in a project __init__


def _evaluated(queryset):
    return [book.author.name for book in queryset]


@pytest.mark.parametrize("queryset_class", [BuildsItsQuery, ReplacesItsQuery])
def test_a_queryset_class_that_builds_its_own_query_is_fixed_where_it_was_built(
    shop, queryset_class
):
    manager = models.Manager.from_queryset(queryset_class)()
    manager.model = Book
    with detect() as report:
        books = manager.all()  # built through a library queryset
        names = _evaluated(books)
    assert len(names) == 6
    assert only(report).queryset_site.startswith(
        f"{HERE}:{line_of('# built through a library queryset')} in "
    )


def test_a_queryset_built_in_a_project_init_is_fixed_there(shop):
    with detect() as report:
        names = _evaluated(Holder().books)
    assert len(names) == 6
    assert only(report).queryset_site.startswith(
        f"{HERE}:{line_of('# built in a project __init__')} in "
    )


def test_an_admin_over_a_custom_manager_names_list_select_related(
    products, admin_client, with_middleware
):
    response = admin_client.get("/admin/shop/product/")
    assert response.status_code == 200
    found = {f.relation: f for f in response.wsgi_request.dbtune_nplusone.findings}
    maker = found["shop.Product.maker"]
    assert maker.fix == 'list_select_related = ("maker",)  # on tests.shop.admin.ProductAdmin'


def test_a_generic_relation_whose_manager_skips_super(products):
    """Note's manager builds NoteQuerySet itself, so the generic relation's manager for each
    product never passes through BaseManager.get_queryset."""
    with detect() as report:
        for product in Product.objects.all():
            list(product.notes.all())
    finding = only(report)
    assert finding.relation == "shop.Product.notes"
    assert finding.fix == '.prefetch_related("notes")'
    assert finding.count == 4


# --- django-taggit -----------------------------------------------------------------------------


def test_django_taggit_tags_read_per_row(products):
    """For each product, TaggableManager returns Tag.objects.filter(...) on the through
    table's content type and object id: no related manager of Tag's own, and two joined
    columns filtered."""
    with detect() as report:
        for product in Product.objects.order_by("id"):
            [tag.name for tag in product.tags.all()]
    finding = only(report)
    assert finding.relation == "shop.Product.tags"
    assert finding.fix == '.prefetch_related("tags")'
    assert finding.count == 4
    with detect() as fixed, CaptureQueriesContext(connection) as queries:
        for product in Product.objects.prefetch_related("tags"):
            [tag.name for tag in product.tags.all()]
    assert fixed.findings == [], fixed.message()
    assert len(queries) == 2


def test_django_taggit_names_per_row(products):
    with detect() as report:
        names = [sorted(product.tags.names()) for product in Product.objects.all()]
    assert names == [["blue", "red"]] * 4
    finding = only(report)
    assert finding.relation == "shop.Product.tags"
    assert finding.fix == '.prefetch_related("tags")'
    # names() is values_list(): it queries again even after a prefetch.
    assert "obj.tags.all()" in finding.advice


def test_django_taggit_tags_in_a_template(products, client, with_middleware):
    response = client.get("/shop/products/")
    assert response.status_code == 200
    finding = only(response.wsgi_request.dbtune_nplusone)
    assert finding.relation == "shop.Product.tags"
    assert finding.fix == '.prefetch_related("tags")'
    assert finding.call_site == "tests/shop/templates/shop/product_list.html:4"
    assert finding.queryset_site.startswith("tests/shop/views.py:")


# --- The same query with one value per row, whatever the joins ---------------------------------


def test_a_generic_relation_looked_up_by_hand_per_row(products):
    """Two columns filtered: the content type is the same for every row, the object id is
    one per row."""
    product_type = ContentType.objects.get_for_model(Product)
    with detect() as report:
        for product in Product.objects.all():
            list(Note.objects.filter(content_type=product_type, object_id=product.pk))
    finding = only(report)
    assert finding.relation == "shop.Note.object_id"
    assert finding.fix == '.prefetch_related("notes") on the Product queryset'
    assert finding.count == 4


def test_django_taggit_tags_of_rows_read_with_iterator(products):
    """Rows from .iterator() are not watched, so their tags manager has no watched owner: the
    query still differs from row to row in one joined column, the tagged item's object id."""
    with detect() as report:
        for product in Product.objects.iterator():
            list(product.tags.names())
    finding = only(report)
    assert finding.relation == "taggit.TaggedItem.object_id"
    assert finding.fix == '.prefetch_related("tags") on the Product queryset'
    assert finding.count == 4


def test_a_lookup_through_a_join_written_by_hand_per_row(shop):
    with detect() as report:
        for publisher in Publisher.objects.all():
            Book.objects.filter(author__publisher=publisher).count()
    finding = only(report)
    assert finding.relation == "shop.Author.publisher"
    assert finding.count == 2


def test_several_values_changing_per_row_are_not_one_lookup_per_row(shop):
    with detect() as report:
        for book in Book.objects.all():
            Author.objects.filter(pk=book.author_id, name=book.title).exists()
    assert report.findings == [], report.message()


def test_one_list_of_keys_per_row_is_one_lookup_per_row(shop):
    """``filter(pk__in=[...])`` per row: the list's length changes from row to row, but its
    values are all compared to one column."""
    with detect() as report:
        for author in Author.objects.order_by("pk"):
            keys = [author.pk * 10 + n for n in range(author.pk % 3 + 1)]
            list(Book.objects.filter(pk__in=keys))
    finding = only(report)
    assert finding.relation == "shop.Book.id"
    assert finding.fix == "Book.objects.in_bulk(values) before the loop"


def test_the_same_query_with_the_same_values_per_row_is_reported(shop):
    """A parent looked up again for each child, or a whole table read again per row: the
    answer does not depend on the row, so the fix is to run it once."""
    with detect() as report:
        for _book in Book.objects.all():
            Publisher.objects.filter(name="Penguin").first()
            list(Tag.objects.all())
    found = {finding.relation: finding for finding in report.findings}
    assert set(found) == {"shop.Publisher.name", "shop.Tag"}
    assert found["shop.Tag"].count == 6
    fix = found["shop.Tag"].fix
    assert fix == (
        "run this Tag query once per request, before the loop that runs it, and reuse its result"
    )
    assert "proven" not in found["shop.Tag"].message  # not until the page runs again


def tag_names_per_book():
    return [[tag.name for tag in Tag.objects.order_by("id")] for _book in Book.objects.all()]


def test_the_same_query_run_again_per_row_is_proven_by_reusing_its_first_result(shop):
    with detect() as report:
        expected = tag_names_per_book()
    assert [f.relation for f in report.findings] == ["shop.Tag"]
    [proven] = rerun(report.findings, lambda: 200 if tag_names_per_book() == expected else 500)
    assert proven.proof.verdict == "proven", proven.proof
    assert (proven.proof.before, proven.proof.after) == (1 + 6, 2)


def test_a_query_whose_rows_change_between_runs_is_not_proven_by_reuse(shop):
    """A loop that writes what it reads again: its first result would be stale."""

    def page():
        names = []
        for book in Book.objects.order_by("id"):
            names.append([tag.name for tag in Tag.objects.order_by("id")])
            Tag.objects.filter(pk=Tag.objects.order_by("id")[0].pk).update(name=book.title)
        return names

    with detect() as report:
        page()
    tags = [f for f in report.findings if f.relation == "shop.Tag" and "LIMIT" not in f.sample_sql]
    [judged] = rerun(tags, lambda: page() and 200)
    assert judged.proof.verdict == "unproven"
    assert "cannot be reused" in judged.proof.reason, judged.proof.reason


def test_pages_of_one_query_are_not_the_same_query_repeated(shop):
    """Their LIMIT and OFFSET are written into the SQL, not passed as parameters."""
    with detect() as report:
        pages = [list(Tag.objects.order_by("id")[n : n + 1]) for n in range(4)]
    assert len(pages) == 4
    assert report.findings == [], report.message()


def test_the_same_query_twice_is_not_a_loop(shop):
    """Twice from one line is as often two calls of one function (two menus) as two rows."""
    with detect() as report:
        for _book in Book.objects.all()[:2]:
            list(Tag.objects.all())
    assert report.findings == [], report.message()


# --- Which line a per-row query belongs to ------------------------------------------------------


def test_lookups_from_two_template_tags_are_not_one_loop(shop, client, with_middleware, settings):
    """The flag tag is a library's: no project line between the query and the view's
    render(). Each template node is its own place, so the two flags at the top of the page
    are two lookups, and only the tag inside the loop repeats per row."""
    settings.DBTUNE = {"IGNORED_MODULES": ["tests.shop.templatetags"]}
    response = client.get("/shop/")
    assert response.status_code == 200
    finding = only(response.wsgi_request.dbtune_nplusone)
    assert finding.relation == "shop.Flag.name"
    assert finding.call_site == "tests/shop/templates/shop/home.html:6"
    assert finding.count == 6


def test_loads_the_admin_runs_itself_are_not_the_outermost_callers(
    shop, admin_client, with_middleware
):
    """The changelist reads each comment's generic foreign key in Django's own code: there
    is no project line to show, and the test's line (manage.py under runserver) is not one."""
    response = admin_client.get("/admin/shop/comment/")
    assert response.status_code == 200
    finding = only(response.wsgi_request.dbtune_nplusone)
    assert finding.relation.startswith("shop.Comment.target")
    # Not the test's line: the only project line is Book.__str__'s, where the same fix's
    # load of each book's author runs (merged into this finding).
    assert finding.call_site == "tests/shop/models.py:83 in __str__"
    assert finding.queryset_site == "tests.shop.admin.CommentAdmin (Django builds its queryset)"


def test_a_lookup_the_toolbar_runs_through_the_projects_str_is_not_the_projects(products):
    """Product.__str__ looks its maker up by hand; django-debug-toolbar's repr() of the
    template context reaches it once per product."""
    pytest.importorskip(
        "debug_toolbar",
        reason="needs django-debug-toolbar: install it with pip install -e '.[toolbar]'",
    )
    from debug_toolbar.panels.settings import safe_pformat

    with detect() as report:
        safe_pformat(list(Product.objects.order_by("id")))
    assert report.findings == [], report.message()
    with detect() as report:
        names = [str(product) for product in Product.objects.order_by("id")]  # the project's
    assert len(names) == 4
    finding = only(report)
    assert finding.relation == "shop.Publisher.id"
    assert finding.call_site.startswith("tests/shop/models.py:")


def test_content_type_lookups_django_caches_are_no_loop(shop):
    """get_for_model() queries once per model and process, then serves Django's cache."""
    ContentType.objects.clear_cache()
    with detect() as report:
        for model in (Book, Author, Tag, Publisher):
            ContentType.objects.get_for_model(model)
    assert report.findings == []


def test_a_lookup_written_by_hand_per_row_says_why_its_fix_is_unproven(shop):
    from django_dbtune.nplusone.proof import rerun

    with detect() as report:
        for book in Book.objects.all():
            Author.objects.filter(name=book.title).first()  # a column that is no key
    [finding] = rerun(report.findings, lambda: None)
    assert finding.proof.verdict == "unproven"
    assert "queries once per row by itself" in finding.proof.reason


def test_a_single_valued_prefetch_read_through_its_to_attr_is_used(shop):
    with detect() as report:
        books = Book.objects.prefetch_related(
            Prefetch("author", queryset=Author.objects.all(), to_attr="writer")
        )
        names = [book.writer.name for book in books]
    assert names
    assert report.findings == [], report.message()


@pytest.mark.django_db
def test_a_lookup_by_hand_is_named_after_the_concrete_model_not_a_proxy():
    """testapp.StaffShelf is a proxy of Shelf: they share a table, and Shelf owns it."""
    from tests.testapp.models import Shelf

    for n in range(3):
        Shelf.objects.create(code=f"c{n}", room="r", row=n)
    with detect() as report:
        for pk in Shelf.objects.values_list("pk", flat=True):
            Shelf.objects.get(pk=pk)
    assert [f.relation for f in report.findings] == ["testapp.Shelf.id"]


def test_a_reused_result_whose_annotation_changes_is_not_proven(shop):
    """The annotation, not a field, is what the loop changes: the first result would show
    the first count on every row."""
    author = Author.objects.order_by("id").first()

    def page():
        counts = []
        for book in Book.objects.order_by("id"):
            counts.append(Author.objects.annotate(n=Count("books")).get(pk=author.pk).n)
            Book.objects.create(title=f"{book.title} again", author=author)
        return counts

    with detect() as report:
        page()
    [repeated] = [f for f in report.findings if f.relation == "shop.Author.id"]
    [judged] = rerun([repeated], lambda: page() and 200)
    assert judged.proof.verdict == "unproven", judged.proof
    assert "cannot be reused" in judged.proof.reason


def test_a_reused_result_with_deferred_fields_is_compared_without_loading_them(shop):
    def page():
        return [[tag.pk for tag in Tag.objects.only("id").order_by("id")] for _ in range(4)]

    with detect() as report:
        expected = page()
    [judged] = rerun(report.findings, lambda: 200 if page() == expected else 500)
    assert judged.proof.verdict == "proven", judged.proof
    assert (judged.proof.before, judged.proof.after) == (4, 1)


def author_names():
    return [Author.objects.get(pk=book.author_id).name for book in Book.objects.order_by("id")]


def book_titles_by_keys():
    return [
        [book.title for book in Book.objects.filter(pk__in=[author.pk, author.pk + 1])]
        for author in Author.objects.order_by("pk")
    ]


@pytest.mark.parametrize(("page", "before"), [(author_names, 1 + 6), (book_titles_by_keys, None)])
def test_a_read_by_key_per_row_is_proven_by_reading_every_key_at_once(shop, page, before):
    """Author.objects.get(pk=...) per row, or filter(pk__in=[...]): the proof answers each
    read from one read of every key, as in_bulk() before the loop would."""
    with detect() as report:
        expected = page()
    [finding] = report.findings
    assert finding.fix.endswith(".in_bulk(values) before the loop")
    [proven] = rerun(report.findings, lambda: 200 if page() == expected else 500)
    assert proven.proof.verdict == "proven", proven.proof
    assert proven.proof.after == 2
    if before is not None:
        assert proven.proof.before == before
    else:
        assert "Each row reads a list of keys" in finding.advice


def test_a_read_by_key_whose_rows_change_is_not_proven(shop):
    def page():
        names = []
        for book in Book.objects.order_by("id"):
            names.append(Author.objects.get(pk=book.author_id).name)
            Author.objects.filter(pk=book.author_id).update(name=f"{book.title}'s author")
        return names

    with detect() as report:
        page()
    [by_key] = [f for f in report.findings if f.relation == "shop.Author.id"]
    [judged] = rerun([by_key], lambda: page() and 200)
    assert judged.proof.verdict == "unproven", judged.proof


def search_page():
    """A search page: one result per book, each loading its row in the template."""
    from django.template.loader import render_to_string

    from tests.shop.search import Result

    keys = Book.objects.order_by("id").values_list("pk", flat=True)
    return render_to_string("shop/search.html", {"results": [Result(pk) for pk in keys]})


@pytest.mark.parametrize(
    ("relation", "before", "after"),
    [("shop.Book.id", 1 + 6 * 2 + 6, 1 + 2 + 6), ("shop.Tag", 1 + 6 * 2 + 6, 1 + 6 * 2 + 1)],
)
def test_reads_a_library_runs_per_row_at_a_template_line_are_proven(
    shop, settings, relation, before, after
):
    """A search library's per-result read by key (with its manager's condition and eager
    loads), and its lookup with the same values every time, both run at the template's
    line: each is proven by answering it there, from one read of every key or from its
    first result, as the view reading them before the loop would."""
    settings.DBTUNE = {"IGNORED_MODULES": ["tests.shop.search"]}
    with detect() as report:
        expected = search_page()
    [finding] = [f for f in report.findings if f.relation == relation]
    assert finding.call_site == "tests/shop/templates/shop/search.html:2"
    assert "The loop is in a template" in finding.advice
    assert "comment(s)" in expected
    [proven] = rerun([finding], lambda: 200 if search_page() == expected else 500)
    assert proven.proof.verdict == "proven", proven.proof
    assert (proven.proof.before, proven.proof.after) == (before, after)


def test_a_read_by_key_whose_annotation_counts_the_other_rows_is_not_proven(shop):
    """A row number over the rows read: 1 for every book read alone, 1 to 6 in one read of
    every key. The proof compares annotations too."""
    from django.db.models import F, Window
    from django.db.models.functions import RowNumber

    def page():
        numbered = Book.objects.annotate(n=Window(RowNumber(), order_by=F("id").asc()))
        return [
            numbered.get(pk=pk).n
            for pk in Book.objects.order_by("id").values_list("pk", flat=True)
        ]

    with detect() as report:
        expected = page()
    [by_key] = [f for f in report.findings if f.relation == "shop.Book.id"]
    [judged] = rerun([by_key], lambda: 200 if page() == expected else 500)
    assert judged.proof.verdict == "unproven", judged.proof
    assert "returned" in judged.proof.reason


def test_a_query_after_a_lazy_load_that_raised_is_recorded_at_its_own_line(shop):
    """The detector tells capture the line behind each lazy load's queries, and takes it
    back when the load raises too."""
    first = Book.objects.order_by("id").first()
    with connection.constraint_checks_disabled():  # MariaDB checks the key at once
        Book.objects.filter(pk=first.pk).update(author_id=10**6)  # an author gone missing
    with detect() as report:
        for book in Book.objects.order_by("id"):
            with contextlib.suppress(Author.DoesNotExist):
                book.author
        tags_line = inspect.currentframe().f_lineno + 1
        list(Tag.objects.all())
    Book.objects.filter(pk=first.pk).update(author_id=first.author_id)
    table = connection.ops.quote_name("shop_tag")
    [tags] = [r for r in report.queries.records if table in r.sql]
    assert tags.lineno == tags_line


def test_reads_of_two_models_by_key_on_one_template_line_are_answered_apart(shop, settings):
    """Each result's book and its author, both read by key under one template line: each
    read is answered from its own model's rows."""
    from django.template.loader import render_to_string

    from tests.shop.search import Pair

    settings.DBTUNE = {"IGNORED_MODULES": ["tests.shop.search"]}

    def page():
        keys = Book.objects.order_by("id").values_list("pk", flat=True)
        return render_to_string("shop/search_pair.html", {"results": [Pair(pk) for pk in keys]})

    with detect() as report:
        expected = page()
    by_key = [f for f in report.findings if f.relation in ("shop.Book.id", "shop.Author.id")]
    assert len(by_key) == 2
    proven = rerun(by_key, lambda: 200 if page() == expected else 500)
    assert [p.proof.verdict for p in proven] == ["proven", "proven"], [p.proof for p in proven]
