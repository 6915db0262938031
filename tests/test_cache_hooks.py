"""The query cache's hooks: in while the cache is on, out (and costing nothing) while it is off;
and every write they see, schema changes and migrations included, retires cached reads."""

import threading

import pytest
from django.core.cache import caches
from django.core.signals import setting_changed
from django.db import connection, connections
from django.db.backends.signals import connection_created
from django.db.models.signals import m2m_changed, post_migrate, post_save
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_dbtune.cache import cached
from django_dbtune.cache.hooks import watch_writes
from tests.shop.models import Author, Book, Tag

pytestmark = pytest.mark.django_db(transaction=True)

SIGNALS = (connection_created, post_save, post_migrate, m2m_changed, setting_changed)


@pytest.fixture(autouse=True)
def fresh_cache():
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def shop():
    author = Author.objects.create(name="A")
    for title in ("B0", "B1"):
        Book.objects.create(title=title, author=author)
    Tag.objects.create(name="t0")


TRANSACTION = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"})


def statements(function):
    """The first word of every statement ``function`` ran on the default database (SQLite's
    BEGIN and COMMIT left out: PostgreSQL's are not captured)."""
    with CaptureQueriesContext(connection) as context:
        function()
    words = [query["sql"].split()[0].upper() for query in context.captured_queries]
    return [word for word in words if word not in TRANSACTION]


def hooks_as_they_are():
    connection.ensure_connection()
    return list(connection.execute_wrappers), [list(signal.receivers) for signal in SIGNALS]


# --- Off: nothing in the way ----------------------------------------------------------------


def test_with_the_cache_off_writes_run_only_the_queries_django_runs(shop, settings):
    settings.DBTUNE = {"CACHE_ENABLED": False}
    book, tag = Book.objects.get(title="B0"), Tag.objects.get(name="t0")

    def save():
        book.title = "saved"
        book.save()

    assert statements(save) == ["UPDATE"]
    # Django's fast path for a many-to-many add: one INSERT that ignores existing pairs (a
    # receiver of m2m_changed would add a SELECT of the existing pairs first).
    assert statements(lambda: book.tags.add(tag)) == ["INSERT"]
    assert statements(lambda: Book.objects.filter(title="B1").update(title="x")) == ["UPDATE"]
    assert watch_writes not in connection.execute_wrappers
    assert not post_save.has_listeners(Book)


def test_the_cache_turned_on_and_off_leaves_django_as_it_found_it(shop, settings):
    settings.DBTUNE = {"CACHE_ENABLED": False}
    before = hooks_as_they_are()
    with override_settings(DBTUNE={"CACHE_ENABLED": True}):
        assert watch_writes in connection.execute_wrappers
        assert post_save.has_listeners(Book)
        opened_meanwhile = []

        def open_a_connection():
            try:
                connections["default"].ensure_connection()
                opened_meanwhile.extend(connections["default"].execute_wrappers)
            finally:
                connections.close_all()

        thread = threading.Thread(target=open_a_connection)
        thread.start()
        thread.join()
        assert opened_meanwhile == [watch_writes]
    assert hooks_as_they_are() == before
    with override_settings(DBTUNE={"ENABLED": False, "CACHE_ENABLED": True}):
        assert hooks_as_they_are() == before  # the app's master switch turns the cache off
    with override_settings(DBTUNE={"CACHE_ENABLED": "yes"}):
        assert hooks_as_they_are() == before  # a wrong setting: the checks report it


# --- On: many-to-many changes seen in the SQL ----------------------------------------------


@cached(depends_on=[Book.tags.through])
def pairs():
    return sorted(Book.tags.through.objects.values_list("book__title", "tag__name"))


def tagged():
    return sorted(
        Book.cached_objects.filter(tags__name="t0").cached().values_list("title", flat=True)
    )


def ran(function):
    return len(statements(function))


@pytest.mark.parametrize("action", ["add", "remove", "clear"])
def test_many_to_many_changes_retire_cached_reads_of_the_through_table(shop, action):
    book, tag = Book.objects.get(title="B0"), Tag.objects.get(name="t0")
    book.tags.add(tag)
    assert (pairs(), tagged()) == ([("B0", "t0")], ["B0"])
    assert ran(pairs) + ran(tagged) == 0  # both served by the cache
    if action == "add":
        Book.objects.get(title="B1").tags.add(tag)
    elif action == "remove":
        book.tags.remove(tag)
    else:
        tag.books.clear()
    expected = sorted(Book.objects.filter(tags__name="t0").values_list("title", flat=True))
    assert tagged() == expected
    assert [title for title, _ in pairs()] == expected
