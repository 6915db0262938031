"""The query cache's hooks: in while the cache is on, out (and costing nothing) while it is off;
and every write they see, schema changes and migrations included, retires cached reads."""

import contextlib
import threading

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.signals import setting_changed
from django.db import connection, connections, transaction
from django.db.backends.signals import connection_created
from django.db.models.signals import m2m_changed, post_migrate, post_save
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_dbtune.cache import cached
from django_dbtune.cache.events import recording
from django_dbtune.cache.hooks import watch_writes
from django_dbtune.sql import analyse
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
    assert watch_writes not in before[0]
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
        # A wrong setting: reads are off (the checks report it), but writes are watched,
        # for the entries other processes hold.
        assert watch_writes in connection.execute_wrappers
    assert hooks_as_they_are() == before


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


# --- Schema changes -------------------------------------------------------------------------

SCHEMA_CHANGES = {
    "add a column": "ALTER TABLE shop_book_tags ADD COLUMN note varchar(10) NULL",
    "rename": "ALTER TABLE shop_book_tags RENAME TO shop_book_tags_old",
    "drop": "DROP TABLE shop_book_tags",
    "truncate": "TRUNCATE shop_book_tags",
}


def _in_a_transaction_that_rolls_back(sql):
    """Run ``sql`` for real, then undo it (PostgreSQL and SQLite run DDL in transactions;
    on MariaDB, which commits DDL at once, see :func:`_undone_on_mariadb`), so the table is
    back as it was: only the cache can tell it happened."""
    with _undone_on_mariadb(sql), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql)
        transaction.set_rollback(True)


# On MariaDB: what makes each change undoable, run before it, and its undoing, after it; both
# on the driver's connection, which the cache does not see. A dropped or emptied table is a
# copy made for it, the table itself kept aside under another name meanwhile.
_MARIADB_UNDO = {
    "ALTER TABLE shop_book_tags ADD COLUMN": (
        (),
        ("ALTER TABLE shop_book_tags DROP COLUMN note",),
    ),
    "ALTER TABLE shop_book_tags RENAME": (
        (),
        ("RENAME TABLE shop_book_tags_old TO shop_book_tags",),
    ),
    "DROP TABLE shop_book_tags": (
        (
            "RENAME TABLE shop_book_tags TO dbtune_kept",
            "CREATE TABLE shop_book_tags LIKE dbtune_kept",
        ),
        ("RENAME TABLE dbtune_kept TO shop_book_tags",),
    ),
    "TRUNCATE shop_book_tags": (
        (
            "RENAME TABLE shop_book_tags TO dbtune_kept",
            "CREATE TABLE shop_book_tags LIKE dbtune_kept",
        ),
        ("DROP TABLE shop_book_tags", "RENAME TABLE dbtune_kept TO shop_book_tags"),
    ),
    "CREATE TABLE dbtune_scratch": ((), ("DROP TABLE dbtune_scratch",)),
    "ALTER TABLE shop_tag RENAME TO shop_label": ((), ("RENAME TABLE shop_label TO shop_tag",)),
}


@contextlib.contextmanager
def _undone_on_mariadb(sql):
    if connection.vendor != "mysql":
        yield
        return
    before, after = next(undo for start, undo in _MARIADB_UNDO.items() if sql.startswith(start))
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    try:
        for statement in before:
            cursor.execute(statement)
        yield
    finally:
        for statement in after:
            cursor.execute(statement)
        cursor.close()


@pytest.mark.parametrize("change", list(SCHEMA_CHANGES))
def test_a_schema_change_retires_cached_reads_of_its_table(shop, change):
    if change == "truncate" and connection.vendor == "sqlite":
        pytest.skip("needs a database with TRUNCATE (not SQLite): run with DBTUNE_DB=postgres")
    Book.objects.get(title="B0").tags.add(Tag.objects.get(name="t0"))
    tagged()
    assert ran(tagged) == 0
    _in_a_transaction_that_rolls_back(SCHEMA_CHANGES[change])
    assert ran(tagged) == 1  # the next read asks the database


def test_created_and_renamed_tables_are_invalidated_by_name(shop):
    with recording() as seen:
        _in_a_transaction_that_rolls_back("CREATE TABLE dbtune_scratch (id integer)")
        _in_a_transaction_that_rolls_back("ALTER TABLE shop_tag RENAME TO shop_label")
    assert [event["tables"] for event in seen.invalidations] == [
        ["dbtune_scratch"],
        ["shop_tag", "shop_label"],
    ]


def test_a_migration_retires_cached_reads_of_the_apps_tables(shop):
    titles = Book.cached_objects.cached().values_list("title", flat=True)
    list(titles.all())
    assert ran(lambda: list(titles.all())) == 0
    call_command("migrate", "shop", verbosity=0)  # nothing to apply, and still it may have
    assert ran(lambda: list(titles.all())) == 1


@pytest.mark.parametrize(
    ("vendor", "sql", "tables"),
    [
        (
            "mysql",
            "RENAME TABLE shop_tag TO shop_label, db.a TO b",
            ("shop_tag", "shop_label", "db.a", "b"),
        ),
        ("sqlite", 'CREATE TABLE "new__shop_tag" AS SELECT * FROM "shop_tag"', ("new__shop_tag",)),
        ("postgresql", 'CREATE INDEX "i" ON "shop_tag" ("name")', ()),
    ],
)
def test_the_tables_a_schema_change_touches(vendor, sql, tables):
    """What the watcher retires for statements these tests cannot run here: MySQL's rename,
    a table made from another (only the new one changes), an index (no rows change)."""
    assert analyse(sql, vendor, has_params=False).written_tables == tables
