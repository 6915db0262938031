"""NPlusOneMiddleware stays cheap on every request: its patches stay in between requests,
change nothing for code outside a detection, and come out when the middleware goes or its
settings change."""

import gc

import pytest
from django.apps import apps
from django.db import connection
from django.db.models import Count, Prefetch
from django.db.models.query import QuerySet
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from django_dbtune import NPlusOneError
from django_dbtune.nplusone import detect, patches
from django_dbtune.nplusone.read_watch import ReadWatch
from tests.shop.models import Author, Book, Comment, Profile, Publisher, Tag

NPLUSONE_MIDDLEWARE = "django_dbtune.middleware.NPlusOneMiddleware"


@pytest.fixture
def shop(db):
    """3 authors, each with a profile and 2 books of 2 tags and a comment."""
    publisher = Publisher.objects.create(name="P")
    tags = [Tag.objects.create(name=f"t{i}") for i in range(2)]
    for i in range(3):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        Profile.objects.create(author=author, bio="bio")
        for j in range(2):
            book = Book.objects.create(title=f"B{i}{j}", author=author, summary="s")
            book.tags.set(tags)
            Comment.objects.create(target=book, text="nice")


@pytest.fixture
def with_middleware(settings):
    settings.MIDDLEWARE = [NPLUSONE_MIDDLEWARE, *settings.MIDDLEWARE]


def model_classes():
    """What every model class holds, to tell whether anything was put on one."""
    return {model: dict(vars(model)) for model in apps.get_models()}


def relations(request):
    return [finding.relation for finding in request.dbtune_nplusone.findings]


def test_patches_stay_in_between_requests_and_findings_do_not_change(
    shop, client, with_middleware
):
    first = client.get("/shop/books/")
    assert patches.installed()
    fetch_all = vars(QuerySet)["_fetch_all"]
    second = client.get("/shop/books/")
    assert relations(first.wsgi_request) == relations(second.wsgi_request) == ["shop.Book.author"]
    assert vars(QuerySet)["_fetch_all"] is fetch_all  # not put in again
    fixed = client.get("/shop/books/fixed/")
    assert fixed.wsgi_request.dbtune_nplusone.findings == []


def run_everything():
    """What a project does with its models outside any request, and what it sees."""
    seen = []
    books = list(Book.objects.select_related("author").order_by("id"))
    seen.append([(book.title, book.author.name) for book in books])
    authors = Author.objects.prefetch_related(
        "books", Prefetch("books", queryset=Book.objects.order_by("-id"), to_attr="newest")
    ).order_by("id")
    seen.append([(a.name, [b.title for b in a.books.all()], a.newest[0].title) for a in authors])
    seen.append([book.author.name for book in Book.objects.order_by("id")])  # lazy loads
    seen.append([author.books.count() for author in Author.objects.order_by("id")])
    seen.append([author.books.exists() for author in Author.objects.order_by("id")])
    seen.append(list(Author.objects.annotate(n=Count("books")).values_list("name", "n")))
    seen.append([len(book.tags.all()) for book in Book.objects.order_by("id")])
    seen.append(Book.objects.order_by("id")[1:2].get().title)
    seen.append([comment.target.title for comment in Comment.objects.order_by("id")])
    seen.append([b.summary for b in Book.objects.only("title").order_by("id")])
    Author.objects.filter(name="A2").delete()  # a cascade
    seen.append(Book.objects.count())
    return seen


def test_outside_a_detection_the_kept_patches_change_nothing(shop, client, with_middleware):
    """Between requests the patches are in, yet code behaves exactly as Django's: the same
    results, the same queries, and nothing left on the instances."""
    from django.db import transaction

    def run():
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            seen = run_everything()
            transaction.set_rollback(True)
        statements = [query["sql"] for query in queries]
        return seen, [sql for sql in statements if "SAVEPOINT" not in sql]  # names vary

    plain = run()
    assert not patches.installed()
    client.get("/shop/books/")
    assert patches.installed()
    assert run() == plain
    books = list(Book.objects.select_related("author"))
    assert all(getattr(book, "_dbtune_tag", None) is None for book in books)
    assert all(getattr(b.author, "_dbtune_tag", None) is None for b in books)


def test_patches_come_out_when_the_middleware_is_garbage_collected(shop, with_middleware):
    client = Client()
    client.get("/shop/books/")
    assert patches.installed()
    del client
    gc.collect()
    assert not patches.installed()
    with detect() as report:  # and detection works as before
        names = [book.author.name for book in Book.objects.all()]
    assert len(names) == 6
    assert [finding.relation for finding in report.findings] == ["shop.Book.author"]
    assert not patches.installed()


@pytest.mark.parametrize(
    "change",
    [
        lambda: override_settings(DBTUNE={"NPLUSONE_THRESHOLD": 3}),
        lambda: override_settings(DBTUNE={"ENABLED": False}),
        lambda: override_settings(MIDDLEWARE=[]),
    ],
    ids=["DBTUNE", "disabled", "MIDDLEWARE"],
)
def test_patches_come_out_when_settings_change(shop, client, with_middleware, change):
    client.get("/shop/books/")
    assert patches.installed()
    with change():
        assert not patches.installed()
    assert not patches.installed()
    response = client.get("/shop/books/")  # the same middleware takes them again
    assert patches.installed()
    assert relations(response.wsgi_request) == ["shop.Book.author"]


def test_a_disabled_middleware_puts_no_patch_in(shop, client, with_middleware, settings):
    settings.DBTUNE = {"ENABLED": False}
    client.get("/shop/books/")
    assert not patches.installed()


def test_a_detection_leaves_every_model_class_as_it_was(shop):
    """Watching which eager loads are read touches no model class, not even for a moment."""
    before = model_classes()
    with detect() as report:
        books = list(Book.objects.select_related("author__publisher").prefetch_related("tags"))
        assert model_classes() == before  # while the reads are awaited
        assert {book.author.publisher.name for book in books} == {"P"}
    assert model_classes() == before
    assert [finding.relation for finding in report.findings] == ["shop.Book.tags"]
    assert not any(
        isinstance(value, ReadWatch) for values in before.values() for value in values.values()
    )


def test_a_queryset_clone_runs_none_of_the_detectors_code(db):
    """Every filter() clones its queryset, four times per lazy load: only a fresh queryset
    (where a chain starts) is worth noting, so a clone must not call into the detector."""
    import sys

    queryset = Book.objects.all()
    called: list[str] = []

    def note(frame, event, arg):
        if event == "call" and "django_dbtune" in frame.f_code.co_filename:
            called.append(frame.f_code.co_name)

    with detect():
        sys.setprofile(note)
        try:
            queryset.filter(title="a").exclude(title="b").order_by("title").select_related(
                "author"
            )
        finally:
            sys.setprofile(None)
        assert called == []
        sys.setprofile(note)
        try:
            Book.objects.all()  # a fresh one: noted
        finally:
            sys.setprofile(None)
    assert called[:1] == ["query_init"]


def test_a_request_leaves_none_of_the_detectors_records_to_the_garbage_collector(
    shop, client, settings
):
    # The queries and loads a request's detection saw refer to each other; left in a cycle
    # (with the request, itself a cycle of Django's) they wait for the garbage collector,
    # which a page of hundreds of lazy loads pays for on every request. (The rows the test
    # client keeps in its context still reach an emptied detection.)
    others = [name for name in settings.MIDDLEWARE if not name.startswith("django_dbtune")]
    settings.MIDDLEWARE = [NPLUSONE_MIDDLEWARE, *others]
    client.get("/shop/books/")
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        response = client.get("/shop/books/")
        report = response.wsgi_request.dbtune_nplusone
        found = [finding.relation for finding in report.findings]
        with pytest.raises(NPlusOneError, match=r"request\.dbtune_queries"):
            len(report.queries)  # kept by CaptureMiddleware, not by the report
        del response, report
        gc.collect()
        left = {type(thing).__name__ for thing in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left & {"Load", "QueryRecord"} == set()
    assert found == ["shop.Book.author"]


def test_a_fix_the_middleware_did_not_try_is_not_shown_as_a_fix(shop, client, with_middleware):
    # NPLUSONE_PROVE is off by default: nothing ran the page again with the fix.
    [found] = client.get("/shop/books/").wsgi_request.dbtune_nplusone.findings
    assert found.proof is None
    assert '  suggestion (not tried yet): .select_related("author")' in found.message
    assert "  nothing ran the code again with it: manage.py dbtune_nplusone /shop/books/" in (
        found.message
    )
    assert "  fix:" not in found.message


def test_a_failure_of_the_detectors_own_never_fails_the_page(
    shop, client, with_middleware, monkeypatch, caplog
):
    from django_dbtune.nplusone import Report

    def broken(self):
        raise RuntimeError("a bug of the detector's own")

    monkeypatch.setattr(Report, "findings", property(broken))
    with caplog.at_level("ERROR", logger="django_dbtune.nplusone"):
        statuses = [client.get("/shop/books/").status_code for _ in range(2)]
    assert statuses == [200, 200]
    [logged] = caplog.records  # once, with what to do
    assert "DBTUNE['ENABLED'] = False" in logged.getMessage()
    assert "a bug of the detector's own" in logged.exc_text


def test_the_middleware_inside_the_users_own_detect_still_raises(
    shop, client, with_middleware, settings
):
    # Only the commands, the pytest plugin and proofs take the reporting over; a detect()
    # of the user's own around the test client leaves NPLUSONE_RAISE as it was.
    settings.DBTUNE = {"NPLUSONE_RAISE": True}
    with pytest.raises(NPlusOneError), detect() as report:
        client.get("/shop/books/")
    assert [f.relation for f in report.findings] == ["shop.Book.author"]
