"""The query cache: after every kind of write, the next cached read is what the database holds.

These tests commit for real (``transaction=True``): inside a transaction the cache stores
nothing, which is also why Django's ``TestCase`` never sees a cache hit.
"""

import contextlib
import multiprocessing
import os
import threading
import time

import django
import pytest
from django.core.cache import caches
from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Count, Prefetch, Sum
from django.test.utils import CaptureQueriesContext

from django_dbtune import DbtuneError
from django_dbtune.cache import cached, invalidate
from django_dbtune.cache import queryset as cache_queryset
from django_dbtune.cache.invalidation import database_group
from django_dbtune.cache.store import store
from tests import cache_worker
from tests.proxy import Proxy
from tests.shop.models import Author, Book, Publisher, Tag

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "standby"])


@pytest.fixture(autouse=True)
def fresh_cache():
    caches["default"].clear()
    store._missed = False
    store._open_until = 0.0
    store._logged_at.clear()  # each test sees its own first warnings
    yield
    caches["default"].clear()


@pytest.fixture
def shop():
    publisher = Publisher.objects.create(name="P")
    tags = [Tag.objects.create(name=f"t{i}") for i in range(2)]
    for i in range(2):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        for j in range(2):
            book = Book.objects.create(title=f"B{i}{j}", author=author)
            book.tags.set(tags[:1])


def queries(function):
    """(result, number of queries it ran on the default database)."""
    with CaptureQueriesContext(connection) as context:
        result = function()
    return result, len(context.captured_queries)


def titles():
    return sorted(Book.cached_objects.cached().values_list("title", flat=True))


def database_titles():
    return sorted(Book.objects.values_list("title", flat=True))


# --- Hits ------------------------------------------------------------------------------------


def test_a_second_read_is_served_without_a_query(shop):
    first, ran = queries(titles)
    assert ran == 1
    second, ran = queries(titles)
    assert (second, ran) == (first, 0)
    books, ran = queries(lambda: list(Book.cached_objects.select_related("author").cached()))
    again, ran_again = queries(lambda: list(Book.cached_objects.select_related("author").cached()))
    assert ran_again == 0
    assert [(b.title, b.author.name) for b in again] == [(b.title, b.author.name) for b in books]


def test_count_exists_aggregate_and_get_are_cached(shop):
    cached_books = Book.cached_objects.cached()
    for read in (
        lambda: cached_books.count(),
        lambda: cached_books.filter(title="B00").exists(),
        lambda: Author.cached_objects.cached().aggregate(n=Count("books")),
        lambda: Book.cached_objects.cached().get(title="B11").title,
    ):
        first, _ = queries(read)
        second, ran = queries(read)
        assert (second, ran) == (first, 0)


def test_prefetches_are_cached_and_their_tables_invalidate(shop):
    def tag_names():
        books = Book.cached_objects.prefetch_related("tags").order_by("title").cached()
        return [[tag.name for tag in book.tags.all()] for book in books]

    before = tag_names()  # learns that the prefetch reads the tag tables
    tag_names()  # stores
    again, ran = queries(tag_names)
    assert (again, ran) == (before, 0)
    Tag.objects.filter(name="t0").update(name="renamed")
    assert tag_names()[0] == ["renamed"]

    def prefetched_with_an_object():
        tags = Prefetch("tags", queryset=Tag.objects.order_by("name"))
        return [len(b.tags.all()) for b in Book.cached_objects.prefetch_related(tags).cached()]

    first = prefetched_with_an_object()  # learns, then stores, then serves
    assert prefetched_with_an_object() == first
    assert queries(prefetched_with_an_object) == (first, 0)


def test_rows_from_the_cache_behave_like_rows_from_the_database(shop):
    def books():
        return list(Book.cached_objects.select_related("author").order_by("title").cached())

    fetched = books()
    served, ran = queries(books)
    assert ran == 0
    book = served[0]
    assert (book._state.adding, book._state.db) == (False, "default")
    assert book == fetched[0] and book.pk == fetched[0].pk
    _, ran = queries(lambda: book.author.name)
    assert ran == 0  # the select_related object came back with it
    book.title = "renamed"
    book.save()  # an UPDATE of the existing row, not an INSERT of a new one
    assert Book.objects.filter(title="renamed").count() == 1
    assert Book.objects.count() == len(fetched)

    def deferred():
        return list(Book.cached_objects.only("title").order_by("title").cached())

    deferred()
    served, ran = queries(deferred)
    assert ran == 0
    _, ran = queries(lambda: served[0].summary)
    assert ran == 1  # still deferred: loaded on access, as Django does


def test_an_aggregate_over_a_join_is_invalidated_by_the_joined_table(shop):
    def counts():
        per_author = Author.cached_objects.annotate(n=Count("books")).cached()
        total = Author.cached_objects.cached().aggregate(n=Count("books"))["n"]
        return [*sorted(per_author.values_list("name", "n")), total]

    counts()
    assert queries(counts) == (counts(), 0)
    Book.objects.create(title="one more", author=Author.objects.get(name="A0"))
    assert counts() == [("A0", 3), ("A1", 2), 5]


@pytest.mark.django_db(transaction=True, databases=["default", "standby", "other"])
def test_a_prefetch_read_on_another_database_retires_the_entry_when_written_there(shop):
    """A ``Prefetch`` whose queryset reads another database: the entry records the tables
    it read there, and a write there retires it."""
    publisher = Publisher.objects.using("other").create(name="P")
    for author in Author.objects.order_by("pk"):
        Author.objects.using("other").create(pk=author.pk, name=author.name, publisher=publisher)

    def author_names():
        there = Prefetch("author", queryset=Author.objects.using("other"))
        books = Book.cached_objects.prefetch_related(there).order_by("title").cached()
        return [book.author.name for book in books]

    def on_both():
        with CaptureQueriesContext(connections["other"]) as there:
            names, here = queries(author_names)
        return names, here + len(there.captured_queries)

    first, _ = on_both()  # learns that the prefetch reads the other database
    assert on_both() == (first, 2)  # stores
    assert on_both() == (first, 0)  # served
    Author.objects.using("other").filter(name="A0").update(name="renamed there")
    assert author_names()[0] == "renamed there"
    with transaction.atomic(using="other"):  # read there before it commits: not stored
        Author.objects.using("other").filter(name="A1").update(name="never committed")
        assert author_names() == ["renamed there"] * 2 + ["never committed"] * 2
        transaction.set_rollback(True, using="other")
    assert author_names()[-1] == "A1"


class PublishersElsewhere:
    """A database router: publishers live on the "other" database."""

    def db_for_read(self, model, **hints):
        return "other" if model is Publisher else None

    db_for_write = db_for_read


@pytest.mark.django_db(transaction=True, databases=["default", "standby", "other"])
def test_a_cached_function_reads_its_models_where_the_router_sends_them(shop, settings):
    """``@cached(depends_on=[Publisher])`` with publishers routed to another database: it
    was keyed on the default database's generations, and a write to publishers (made on
    the other one) never retired it."""
    settings.DATABASE_ROUTERS = [f"{__name__}.PublishersElsewhere"]

    @cached(depends_on=[Publisher])
    def publisher_names():
        return sorted(Publisher.objects.values_list("name", flat=True))

    def served(function):
        with CaptureQueriesContext(connections["other"]) as there:
            result = function()
        return result, len(there.captured_queries)

    assert publisher_names() == []
    Publisher.objects.create(name="elsewhere")
    assert Publisher.objects.using("other").count() == 1
    assert publisher_names() == ["elsewhere"]
    assert served(publisher_names) == (["elsewhere"], 0)  # served: no query there
    Publisher.objects.filter(name="elsewhere").update(name="renamed")
    assert publisher_names() == ["renamed"]

    @cached(depends_on=[Book, Publisher])
    def books_and_publishers():
        return Book.objects.count(), sorted(Publisher.objects.values_list("name", flat=True))

    assert books_and_publishers() == (Book.objects.count(), ["renamed"])
    with transaction.atomic(using="other"):  # read there before it commits: not stored
        Publisher.objects.create(name="rolled back")
        assert books_and_publishers()[1] == ["renamed", "rolled back"]
        transaction.set_rollback(True, using="other")
    assert books_and_publishers()[1] == ["renamed"]


def test_an_async_function_is_refused_when_decorated():
    """``@cached`` on an ``async def`` pickled the coroutine on every call, failed, and
    turned the query cache off for the whole process for 5 seconds each time."""

    with pytest.raises(DbtuneError, match="async"):

        @cached(depends_on=[Book])
        async def titles_later():
            return []


def test_a_cached_queryset_served_inside_a_cached_prefetch_is_recorded_by_the_outer_entry(
    shop,
):
    """The inner queryset of a ``Prefetch`` is cached too: when the outer one is computed
    while the inner is served from the cache (no query runs), the outer entry still records
    what the inner read, and a write to it retires both."""

    def tag_names():
        tags = Prefetch("tags", queryset=Tag.cached_objects.order_by("name").cached())
        books = Book.cached_objects.prefetch_related(tags).order_by("title").cached()
        return [[tag.name for tag in book.tags.all()] for book in books]

    first = tag_names()
    tag_names()
    assert queries(tag_names) == (first, 0)
    # The books' table changes (the same rows): the outer entry is computed again, with
    # the inner one served from the cache.
    Book.objects.filter(title="B00").update(title="B00")
    assert queries(tag_names)[0] == first
    assert queries(tag_names) == (first, 0)
    Tag.objects.filter(name="t0").update(name="renamed")
    assert tag_names()[0] == ["renamed"]


# --- Every kind of write ---------------------------------------------------------------------


def test_sql_written_by_hand_that_reads_the_clock_or_a_random_number_runs_every_time(shop):
    """The same functions named in RawSQL, extra() or Func(function=...)."""
    from django.db.models import CharField, FloatField, Func
    from django.db.models.expressions import RawSQL

    random = "RAND" if connection.vendor == "mysql" else "RANDOM"
    querysets = {
        "RawSQL": Book.cached_objects.annotate(at=RawSQL("CURRENT_TIMESTAMP", ())),
        "extra select": Book.cached_objects.extra(select={"at": "CURRENT_TIMESTAMP"}),
        "extra where": Book.cached_objects.extra(where=[f"{random}() >= 0 OR 1 = 1"]),
        "Func": Book.cached_objects.annotate(r=Func(function=random, output_field=FloatField())),
        "Func's own text": Book.cached_objects.annotate(
            at=Func(template="%(when)s", when="CURRENT_TIMESTAMP", output_field=CharField())
        ),
    }
    if connection.vendor == "mysql":  # the clock as MariaDB and MySQL also read it
        for name in ("SYSDATE()", "CURDATE()", "UTC_TIMESTAMP()", "UNIX_TIMESTAMP()"):
            querysets[name] = Book.cached_objects.extra(select={"at": name})
    else:
        querysets["CURRENT_DATE"] = Book.cached_objects.extra(select={"at": "CURRENT_DATE"})
    if django.VERSION >= (6, 1) and connection.features.supports_uuid4_function:
        # (UUID7() needs PostgreSQL 18; UUID4() MariaDB 11.7)
        from django.db.models.functions import UUID4

        querysets["UUID4"] = Book.cached_objects.annotate(u=UUID4())
    for name, queryset in querysets.items():
        cached_queryset = queryset.order_by("id").cached()
        ran = [queries(lambda q=cached_queryset: list(q.all()))[1] for _ in range(2)]
        assert ran == [1, 1], name
    _, ran = queries(titles)
    assert (ran, queries(titles)[1]) == (1, 0)  # the others are cached as before


def raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


WRITES = {
    "save": lambda: _save_title("B00", "saved"),
    "create": lambda: Book.objects.create(title="new", author=Author.objects.first()),
    "delete": lambda: Book.objects.get(title="B00").delete(),
    "queryset update": lambda: Book.objects.filter(title="B01").update(title="updated"),
    "queryset delete": lambda: Book.objects.filter(title="B01").delete(),
    "bulk_create": lambda: Book.objects.bulk_create(
        [Book(title="bulk", author=Author.objects.first())]
    ),
    "bulk_update": lambda: Book.objects.bulk_update(
        [_retitled(Book.objects.get(title="B10"), "bulk-updated")], ["title"]
    ),
    "get_or_create": lambda: Book.objects.get_or_create(
        title="got", defaults={"author": Author.objects.first()}
    ),
    "update_or_create": lambda: Book.objects.update_or_create(
        title="B11", defaults={"title": "upserted"}
    ),
    "raw insert": lambda: raw(
        "INSERT INTO shop_book (title, summary, author_id) VALUES (%s, '', %s)",
        ["raw", Author.objects.first().pk],
    ),
    "raw update": lambda: raw("UPDATE shop_book SET title = %s WHERE title = %s", ["raw", "B00"]),
    "raw delete": lambda: _raw_delete("B00"),
    "raw, lower case after a comment": lambda: raw(
        "/* by hand */ update shop_book set title = %s where title = %s", ["raw", "B00"]
    ),
}


def _raw_delete(title):
    Book.objects.get(title=title).tags.clear()  # the book table itself is not touched here
    raw("DELETE FROM shop_book WHERE title = %s", [title])


def _save_title(old, new):
    book = Book.objects.get(title=old)
    book.title = new
    book.save()


def _retitled(book, title):
    book.title = title
    return book


@pytest.mark.parametrize("write", list(WRITES))
def test_every_write_is_seen(shop, write):
    titles()
    WRITES[write]()
    assert titles() == database_titles()


@pytest.mark.parametrize("side", ["book", "tag"])
@pytest.mark.parametrize("action", ["add", "remove", "clear", "set"])
def test_many_to_many_changes_from_both_sides(shop, side, action):
    def tagged():
        return sorted(
            Book.cached_objects.filter(tags__name="t1").cached().values_list("title", flat=True)
        )

    assert tagged() == []
    book = Book.objects.get(title="B00")
    tag = Tag.objects.get(name="t1")
    manager = book.tags if side == "book" else tag.books
    other = tag if side == "book" else book
    manager.add(other)
    assert tagged() == ["B00"]
    if action == "add":
        manager.add(other if side == "book" else Book.objects.get(title="B01"))
    elif action == "remove":
        manager.remove(other)
    elif action == "clear":
        manager.clear()
    else:
        manager.set([])
    expected = sorted(Book.objects.filter(tags__name="t1").values_list("title", flat=True))
    assert tagged() == expected


def test_a_related_objects_save_is_seen_through_select_related(shop):
    def authors():
        books = Book.cached_objects.select_related("author").order_by("title").cached()
        return [book.author.name for book in books]

    authors()
    author = Author.objects.get(name="A0")
    author.name = "renamed"
    author.save()
    assert authors()[0] == "renamed"


def test_a_write_through_one_alias_is_seen_on_another(shop):
    def standby_titles():
        return sorted(
            Book.cached_objects.using("standby").cached().values_list("title", flat=True)
        )

    standby_titles()
    Book.objects.using("default").filter(title="B00").update(title="moved")
    assert "moved" in standby_titles()


def test_a_replica_read_just_after_a_write_is_not_stored(shop, settings):
    """A replica that has not replayed the write yet answers with the old rows: stored
    under the write's new generation, they would be served until the next write. Within
    CACHE_REPLICA_LAG of a write, replica reads run but are not stored; the primary's are."""
    settings.DBTUNE = {**settings.DBTUNE, "CACHE_REPLICA_LAG": 0.5}
    standby = Book.cached_objects.using("standby").cached()
    Book.objects.filter(title="B00").update(title="moved")

    def on_standby():
        with CaptureQueriesContext(connections["standby"]) as context:
            list(standby.all())
        return len(context.captured_queries)

    assert [on_standby() for _ in range(2)] == [1, 1]
    assert [queries(titles)[1] for _ in range(2)] == [1, 0]  # the primary stores at once
    time.sleep(0.6)
    assert [on_standby() for _ in range(2)] == [1, 0]


def test_aliases_are_grouped_by_the_database_they_reach_or_as_configured(settings):
    assert database_group("standby") == "default"  # a mirror of it
    assert database_group("other") == "other"  # another database
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_DATABASE_GROUPS": {"other": "default"}}
    assert database_group("other") == "default"


def test_a_query_that_reads_the_clock_or_a_random_number_runs_every_time(shop):
    """Its answer changes with no write at all: never served from the cache."""
    from django.db.models.functions import Now, Random

    def stamped():
        return [book.at for book in Book.cached_objects.annotate(at=Now()).order_by("id").cached()]

    first, ran = queries(stamped)
    time.sleep(0.01)
    second, ran_again = queries(stamped)
    assert (ran, ran_again) == (1, 1)
    assert second[0] > first[0]
    shuffled = Book.cached_objects.order_by("?").cached()
    assert [queries(lambda: list(shuffled.all()))[1] for _ in range(2)] == [1, 1]
    drawn = Book.cached_objects.annotate(r=Random()).filter(r__gte=0).cached()
    assert [queries(drawn.count)[1] for _ in range(2)] == [1, 1]
    _, ran = queries(titles)
    assert (ran, queries(titles)[1]) == (1, 0)  # the others are cached as before


def test_a_table_named_with_its_schema_or_in_capitals_is_the_same_table(shop):
    schema = {"postgresql": "public", "mysql": connection.settings_dict["NAME"]}.get(
        connection.vendor, "main"
    )
    titles()
    raw(f"UPDATE {schema}.shop_book SET title = %s WHERE title = %s", ["qualified", "B00"])
    assert titles() == database_titles()
    if connection.vendor == "mysql":
        return  # SHOP_BOOK is another table there (names are case-sensitive on Linux)
    raw("UPDATE SHOP_BOOK SET title = %s WHERE title = %s", ["capitals", "B01"])
    assert titles() == database_titles()
    assert {"qualified", "capitals"} <= set(titles())


def test_a_write_the_parser_cannot_read_retires_every_entry(shop):
    """Its tables are unknown: nothing may outlive it."""
    titles()
    authors = sorted(Author.cached_objects.cached().values_list("name", flat=True))
    if connection.vendor != "sqlite":
        pytest.skip(
            "needs SQLite, whose UPDATE OR IGNORE the parser cannot read: "
            "run with DBTUNE_DB=sqlite"
        )
    raw("UPDATE OR IGNORE shop_book SET title = %s WHERE title = %s", ["cast", "B00"])
    assert "cast" in titles()
    assert queries(lambda: list(Author.cached_objects.cached()))[1] == 1  # retired too
    assert sorted(Author.cached_objects.cached().values_list("name", flat=True)) == authors


def test_a_placeholder_with_a_cast_is_read_for_its_table(shop, postgres_only):
    """Django writes an ArrayField's value as ``%s::varchar(20)[]``: the write is read for
    its own table, and the other tables' entries stay."""
    from tests.pgapp.models import Device

    titles()
    Device.objects.create(name="d", roles=["a"])
    assert queries(titles)[1] == 0
    raw("UPDATE shop_book SET title = %s WHERE title = %s::text", ["cast", "B00"])
    assert "cast" in titles()


def test_truncate_cascade_retires_the_tables_it_empties_through_their_keys(shop, postgres_only):
    titles()
    raw("TRUNCATE shop_author CASCADE")  # the books go too: they point at the authors
    assert titles() == []


def test_truncate_cascade_behind_a_comment_retires_the_tables_it_empties(shop, postgres_only):
    """Tools tag their SQL with a leading comment (sqlcommenter): the statement is the same."""
    titles()
    raw("/* job=nightly */ TRUNCATE shop_author CASCADE")
    assert titles() == []


@cached(depends_on=["pgapp.BookCount"])
def counted_books():
    from tests.pgapp.models import BookCount

    return BookCount.objects.get().n


def test_a_refreshed_materialized_view_retires_what_read_it(shop, postgres_only):
    raw("DROP MATERIALIZED VIEW IF EXISTS shop_book_count")
    raw("CREATE MATERIALIZED VIEW shop_book_count AS SELECT count(*) AS n FROM shop_book")
    try:
        assert counted_books() == 4
        assert queries(counted_books)[1] == 0  # served by the cache
        Book.objects.filter(title="B00").delete()
        assert counted_books() == 4  # the view itself has not changed yet
        raw("REFRESH MATERIALIZED VIEW shop_book_count")
        assert counted_books() == 3
    finally:
        raw("DROP MATERIALIZED VIEW shop_book_count")


@pytest.mark.parametrize("comment", ["", "/* job=nightly */ ", "-- a job\n"])
def test_a_procedure_or_an_anonymous_block_retires_every_entry(shop, postgres_only, comment):
    """Also behind a leading comment, as SQL commenters tag statements."""
    titles()
    raw(
        "CREATE OR REPLACE PROCEDURE rename_a_book(old text, new text) LANGUAGE SQL AS "
        "$$ UPDATE shop_book SET title = new WHERE title = old $$"
    )
    raw(comment + "CALL rename_a_book(%s, %s)", ["B00", "called"])
    assert "called" in titles()
    rename = "BEGIN UPDATE shop_book SET title = '{}' WHERE title = '{}'; END"
    raw(comment + "DO $$ " + rename.format("a block", "B01") + " $$")
    assert "a block" in titles()
    raw(comment + "DO\n$$ " + rename.format("next line", "B11") + " $$")
    assert "next line" in titles()
    with transaction.atomic():  # and again at commit, for what others stored meanwhile
        raw(comment + "CALL rename_a_book(%s, %s)", ["B10", "in a transaction"])
    assert "in a transaction" in titles()


def test_a_write_behind_a_read_or_inside_an_explain_retires_its_table(shop):
    """The database runs every statement of a string, the write an EXPLAIN ANALYZE (or
    MariaDB's ANALYZE) measures, and a writable CTE in parentheses."""
    if connection.vendor == "sqlite":
        pytest.skip(
            "needs PostgreSQL or MariaDB (SQLite runs one statement a call): run with "
            "DBTUNE_DB=postgres or DBTUNE_DB=mariadb"
        )
    postgres = connection.vendor == "postgresql"
    writes = [
        "SELECT 1; UPDATE shop_book SET title = 'after a read'",
        "\n  SELECT 1;\nUPDATE shop_book SET title = 'on its own line'",
        "(SELECT 1); UPDATE shop_book SET title = 'after a parenthesised read'",
    ]
    if postgres:
        writes += [
            "EXPLAIN ANALYZE UPDATE shop_book SET title = 'explained'",
            "EXPLAIN (ANALYZE, COSTS OFF) UPDATE shop_book SET title = 'with options'",
            "(WITH x AS (UPDATE shop_book SET title = 'in a CTE' RETURNING 1) SELECT * FROM x)",
        ]
    else:
        writes += ["ANALYZE UPDATE shop_book SET title = 'analysed'"]
    for write in writes:
        titles()
        with connection.cursor() as cursor:
            cursor.execute(write)
            while cursor.nextset():  # every result read: the connection is usable again
                pass
        assert titles() == database_titles(), write


def test_a_select_that_calls_a_function_that_writes_retires_what_it_writes(shop, postgres_only):
    """``SELECT f()`` reads like a query; the function's body (or one it calls) writes."""
    raw(
        "CREATE FUNCTION shop_mark_books() RETURNS void LANGUAGE plpgsql AS "
        "$$ BEGIN UPDATE shop_book SET title = title || '!'; END $$"
    )
    raw(
        "CREATE FUNCTION shop_nightly() RETURNS int LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM shop_mark_books(); RETURN 1; END $$"
    )
    raw(
        "CREATE FUNCTION shop_anything(statement text) RETURNS void LANGUAGE plpgsql AS "
        "$$ BEGIN EXECUTE statement; END $$"
    )
    try:
        assert titles() == ["B00", "B01", "B10", "B11"]
        raw("SELECT shop_mark_books()")
        assert titles() == ["B00!", "B01!", "B10!", "B11!"]
        assert queries(titles)[1] == 0  # served: a call of a function that only reads
        assert queries(lambda: raw("SELECT lower('X'), count(*) FROM shop_book"))[1] == 1
        assert queries(titles)[1] == 0  # ... and of a built-in keep the entry
        with transaction.atomic():
            raw("select public.SHOP_NIGHTLY() AS done")  # through the function it calls
        assert titles() == ["B00!!", "B01!!", "B10!!", "B11!!"]
        raw("SELECT shop_anything(%s)", ["UPDATE shop_book SET title = 'dynamic'"])
        assert titles() == ["dynamic"] * 4
    finally:
        for function in ("shop_nightly()", "shop_mark_books()", "shop_anything(text)"):
            raw(f"DROP FUNCTION IF EXISTS {function}")


def test_a_procedure_run_through_callproc_retires_every_entry(shop, postgres_only):
    """``cursor.callproc()`` does not pass Django's execute wrappers."""
    titles()
    raw(
        "CREATE OR REPLACE FUNCTION rename_books(new text) RETURNS void LANGUAGE SQL AS "
        "$$ UPDATE shop_book SET title = new $$"
    )
    with connection.cursor() as cursor:
        cursor.callproc("rename_books", ["through callproc"])
    assert titles() == database_titles() == ["through callproc"] * 4


@pytest.mark.parametrize("debug", [False, True], ids=["", "DEBUG"])
def test_rows_copied_in_retire_their_table(shop, postgres_only, debug, monkeypatch):
    """psycopg's COPY does not pass Django's execute wrappers either; with DEBUG on, the
    cursor is PostgreSQL's CursorDebugWrapper, whose own copy() logs the statement."""
    monkeypatch.setattr(connections["default"], "force_debug_cursor", debug)
    titles()
    author = Author.objects.get(name="A0")
    copy_in = "COPY shop_book (title, summary, author_id) FROM STDIN"
    with connection.cursor() as cursor, cursor.copy(copy_in) as copying:
        copying.write_row(("copied in", "", author.pk))
    assert "copied in" in titles()
    assert titles() == database_titles()
    copy_out = "COPY shop_book (title) TO STDOUT"  # it reads only: the entries stay
    with connection.cursor() as cursor, cursor.copy(copy_out) as copying:
        assert b"copied in" in b"".join(bytes(block) for block in copying)
    assert queries(titles)[1] == 0


@pytest.fixture
def bookcases():
    if django.VERSION < (6, 1):
        pytest.skip("needs Django 6.1 (DB_CASCADE): run with DBTUNE_PYTHON=python3.12")
    from tests.dbapp.models import Binder, Bookcase, Lending

    bookcase = Bookcase.objects.create(name="S")
    binder = Binder.objects.create(title="V", bookcase=bookcase)
    Lending.objects.create(binder=binder)

    @cached(depends_on=[Binder, Lending])
    def rows():
        """The binders' titles and the lendings' binders, through the cache."""
        return (
            list(Binder.objects.values_list("title", flat=True)),
            list(Lending.objects.values_list("binder_id", flat=True)),
        )

    return Bookcase, Binder, rows


def test_rows_the_database_deletes_or_empties_itself_retire_their_entries(bookcases):
    """DB_CASCADE and DB_SET_NULL: deleting a bookcase deletes its binders and empties
    their lendings in the database, and no statement names those tables."""
    bookcase, binder, rows = bookcases

    assert rows() == (["V"], [binder.objects.get().pk])
    assert queries(rows)[1] == 0  # served by the cache
    bookcase.objects.all().delete()
    assert rows() == ([], [None])


def test_a_delete_inside_a_with_or_behind_a_comment_retires_what_the_database_cascades(
    bookcases,
):
    bookcase, binder, rows = bookcases

    table = bookcase._meta.db_table
    assert rows() == (["V"], [binder.objects.get().pk])
    raw(f"/* cleanup */ DELETE FROM {table} WHERE name = %s", ["S"])
    assert rows() == ([], [None])
    again = bookcase.objects.create(name="T")
    binder.objects.create(title="W", bookcase=again)
    assert rows() == (["W"], [None])
    if connection.vendor != "postgresql":
        return  # a DELETE inside a WITH is PostgreSQL's
    raw(f"WITH gone AS (DELETE FROM {table} RETURNING id) SELECT count(*) FROM gone")
    assert rows() == ([], [None])


@pytest.fixture
def titles_view(shop):
    raw("CREATE VIEW shop_book_titles AS SELECT id, title FROM shop_book")
    yield
    raw("DROP VIEW shop_book_titles")


def view_titles():
    from tests.shop.models import BookTitle

    return sorted(BookTitle.cached_objects.cached().values_list("title", flat=True))


def test_a_write_to_a_table_a_view_reads_retires_what_read_the_view(titles_view):
    """A model over a plain view: the database's catalog says what the view reads
    (PostgreSQL's pg_depend, SQLite's sqlite_master)."""
    assert view_titles() == database_titles()
    assert queries(view_titles)[1] == 0  # served by the cache
    Book.objects.filter(title="B00").update(title="through the view")
    assert view_titles() == database_titles()


def test_declared_views_and_triggers_retire_what_the_catalog_does_not_show(shop, settings):
    """CACHE_VIEWS and CACHE_TRIGGERS, for what a database's catalog does not say (a
    database django-dbtune does not read, SQL built at run time): a write to a declared
    table retires the entries that depend on it."""
    settings.DBTUNE = {
        **settings.DBTUNE,
        "CACHE_TRIGGERS": {"shop_book": ["shop_author"]},
        "CACHE_VIEWS": {"shop_publisher": ["shop_tag"]},  # as if it were a view over tags
    }
    author_names()
    assert queries(author_names)[1] == 0
    Book.objects.filter(title="B00").update(title="declared")
    assert queries(author_names)[1] == 1  # retired with the books

    @cached(depends_on=[Publisher])
    def publisher_names():
        return sorted(Publisher.objects.values_list("name", flat=True))

    publisher_names()
    assert queries(publisher_names)[1] == 0
    Tag.objects.filter(name="t0").update(name="declared")
    assert queries(publisher_names)[1] == 1  # retired with the tags its "view" reads


def test_a_view_over_a_view_is_followed_to_its_tables(titles_view, postgres_only):
    from tests.shop.models import BookTitle

    raw("ALTER VIEW shop_book_titles RENAME TO shop_book_titles_inner")
    raw("CREATE VIEW shop_book_titles AS SELECT id, title FROM shop_book_titles_inner")
    try:
        assert view_titles() == database_titles()
        Book.objects.filter(title="B00").update(title="two views down")
        assert view_titles() == database_titles()
        assert BookTitle.cached_objects.count() == 4
    finally:
        raw("DROP VIEW shop_book_titles")
        raw("ALTER VIEW shop_book_titles_inner RENAME TO shop_book_titles")


def author_names():
    return sorted(Author.cached_objects.cached().values_list("name", flat=True))


@contextlib.contextmanager
def book_trigger(name, body):
    """A PostgreSQL trigger after every UPDATE of the books, running ``body`` (PL/pgSQL)."""
    raw(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {body}; RETURN NULL; END $$"
    )
    raw(
        f"CREATE TRIGGER {name} AFTER UPDATE ON shop_book "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
    )
    try:
        yield
    finally:
        raw(f"DROP TRIGGER IF EXISTS {name} ON shop_book")
        raw(f"DROP FUNCTION IF EXISTS {name}()")


MARK_AUTHORS = "UPDATE shop_author SET name = name || '!'"


def test_what_a_tables_trigger_writes_is_retired_with_it(shop):
    """A trigger on the books renames the authors: no statement the project runs names
    the authors' table. The database's catalog says so."""
    if connection.vendor == "postgresql":
        trigger = book_trigger("shop_mark", MARK_AUTHORS)
    elif connection.vendor == "mysql":
        trigger = mysql_book_trigger("shop_mark", MYSQL_MARK_AUTHORS)
    else:
        trigger = sqlite_book_trigger("shop_mark", MARK_AUTHORS)
    with trigger:
        assert author_names() == ["A0", "A1"]
        assert queries(author_names)[1] == 0  # served by the cache
        Book.objects.filter(title="B00").update(title="triggered")
        assert author_names() == ["A0!", "A1!"]


MYSQL_MARK_AUTHORS = "UPDATE shop_author SET name = CONCAT(name, '!')"  # || is OR there


@contextlib.contextmanager
def mysql_book_trigger(name, body):
    raw(f"CREATE TRIGGER {name} AFTER UPDATE ON shop_book FOR EACH ROW {body}")
    try:
        yield
    finally:
        raw(f"DROP TRIGGER {name}")


@contextlib.contextmanager
def sqlite_book_trigger(name, body):
    raw(f"CREATE TRIGGER {name} AFTER UPDATE ON shop_book BEGIN {body}; END")
    try:
        yield
    finally:
        raw(f"DROP TRIGGER {name}")


def test_dropping_an_index_or_a_scratch_table_keeps_every_entry(shop):
    """Only changes of views, triggers, functions or rules are told to every process (which
    retires every entry): a DROP INDEX or a scratch table's DROP TABLE is not one."""
    titles()
    assert queries(titles)[1] == 0
    raw("CREATE TABLE shop_scratch (n integer)")
    raw("CREATE INDEX shop_scratch_n ON shop_scratch (n)")
    on_table = " ON shop_scratch" if connection.vendor == "mysql" else ""
    raw(f"DROP INDEX shop_scratch_n{on_table}")
    raw("DROP TABLE shop_scratch")
    assert queries(titles)[1] == 0


def _on_the_driver(*statements):
    """Run ``statements`` on the driver's connection, past every hook of this process: as
    another process would run them, for all this one sees."""
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    for sql in statements:
        cursor.execute(sql)
    cursor.close()


def test_a_trigger_another_process_makes_is_followed_once_it_says_so(shop):
    """Another process makes a trigger on the books that renames the authors, and says so
    through the cache. This process read the catalog before that; a process that has not
    noticed the trigger yet retires only the books when it writes them, and what read the
    authors must still be retired."""
    assert author_names() == ["A0", "A1"]  # the catalog is read: no trigger
    if connection.vendor == "postgresql":
        _on_the_driver(
            "CREATE FUNCTION shop_mark() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {MARK_AUTHORS}; RETURN NULL; END $$",
            "CREATE TRIGGER shop_mark AFTER UPDATE ON shop_book "
            "FOR EACH STATEMENT EXECUTE FUNCTION shop_mark()",
        )
    elif connection.vendor == "mysql":
        _on_the_driver(
            "CREATE TRIGGER shop_mark AFTER UPDATE ON shop_book FOR EACH ROW " + MYSQL_MARK_AUTHORS
        )
    else:
        _on_the_driver(
            f"CREATE TRIGGER shop_mark AFTER UPDATE ON shop_book BEGIN {MARK_AUTHORS}; END"
        )
    try:
        store.publish_catalog_change()  # what the other process's hooks do at commit
        assert author_names() == ["A0", "A1"]
        assert queries(author_names) == (["A0", "A1"], 0)  # stored again, and served
        # A write from a process that does not know the trigger yet: it names the books.
        _on_the_driver("UPDATE shop_book SET title = 'elsewhere' WHERE title = 'B00'")
        store.invalidate(database_group("default"), ["shop_book"])
        assert author_names() == ["A0!", "A1!"]
        said = caches["default"].get(store.catalog_key())
    finally:
        if connection.vendor == "postgresql":
            raw("DROP TRIGGER IF EXISTS shop_mark ON shop_book")
            raw("DROP FUNCTION IF EXISTS shop_mark()")
        else:
            raw("DROP TRIGGER IF EXISTS shop_mark")
    # Dropping it here, through Django, tells the other processes in turn.
    assert caches["default"].get(store.catalog_key()) not in (None, said)


def test_a_trigger_that_builds_its_sql_at_run_time_retires_every_entry(shop, postgres_only):
    built = "EXECUTE format('UPDATE %%I SET name = name || %%L', 'shop_' || 'author', '?')"
    with book_trigger("shop_mark_any", built):
        assert author_names() == ["A0", "A1"]
        Book.objects.filter(title="B00").update(title="triggered")
        assert author_names() == ["A0?", "A1?"]


def test_a_catalog_that_could_not_be_read_is_read_again(titles_view, postgres_only):
    """The first cached read of a process inside a failed transaction cannot read the
    catalog: the next one does, and views are followed from then on."""
    from django_dbtune.cache import dependencies

    def read_in_a_failed_transaction():
        with transaction.atomic():
            with contextlib.suppress(DatabaseError):
                raw("SELECT 1/0")  # the project swallows an error: the transaction failed
            view_titles()

    dependencies.forget()
    with pytest.raises(DatabaseError):
        read_in_a_failed_transaction()
    assert view_titles() == database_titles()
    Book.objects.filter(title="B00").update(title="changed")
    assert view_titles() == database_titles()


def test_a_trigger_created_by_another_thread_is_seen_once_it_commits(shop, postgres_only):
    """Another thread reads the catalog while the trigger's transaction is open: what it
    read lacks the trigger, and is read again when that transaction commits."""
    from django_dbtune.cache import dependencies

    author_names()
    created, proceed = threading.Event(), threading.Event()

    def create_the_trigger():
        try:
            with transaction.atomic():
                raw(
                    "CREATE FUNCTION shop_mark() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN {MARK_AUTHORS}; RETURN NULL; END $$"
                )
                raw(
                    "CREATE TRIGGER shop_mark AFTER UPDATE ON shop_book "
                    "FOR EACH STATEMENT EXECUTE FUNCTION shop_mark()"
                )
                created.set()
                proceed.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=create_the_trigger)
    thread.start()
    created.wait(10)
    Book.cached_objects.cached().count()  # reads the catalog: the trigger is not committed
    proceed.set()
    thread.join(10)
    try:
        assert dependencies.of("default").triggers  # read again after the commit
        assert author_names() == ["A0", "A1"]
        Book.objects.filter(title="B00").update(title="triggered")
        assert author_names() == ["A0!", "A1!"]
    finally:
        raw("DROP TRIGGER shop_mark ON shop_book")
        raw("DROP FUNCTION shop_mark()")


def test_what_a_function_a_trigger_calls_writes_is_retired_too(shop, postgres_only):
    raw(
        "CREATE FUNCTION shop_touch_authors() RETURNS void LANGUAGE plpgsql AS "
        f"$$ BEGIN {MARK_AUTHORS}; END $$"
    )
    try:
        with book_trigger("shop_mark_calls", "PERFORM shop_touch_authors()"):
            assert author_names() == ["A0", "A1"]
            Book.objects.filter(title="B00").update(title="triggered")
            assert author_names() == ["A0!", "A1!"]
    finally:
        raw("DROP FUNCTION shop_touch_authors()")


def test_one_tenants_schema_never_reads_anothers_entries(shop):
    """Schema-per-tenant sites: django-tenants names the schema on the connection, and the
    same query then reads another schema's tables."""
    titles()
    assert queries(titles)[1] == 0
    connection.schema_name = "tenant_a"
    try:
        assert queries(titles)[1] == 1  # another schema: an entry of its own
        assert queries(titles)[1] == 0
    finally:
        del connection.schema_name
    assert queries(titles)[1] == 0  # the first schema's entry


@cached(depends_on=[Book])
def every_title():
    return sorted(Book.objects.values_list("title", flat=True))


def test_a_cached_functions_key_carries_the_tenants_schema_too(shop):
    every_title()
    connection.schema_name = "tenant_a"
    try:
        assert queries(every_title)[1] == 1  # another schema: an entry of its own
    finally:
        del connection.schema_name


# --- Transactions ---------------------------------------------------------------------------


def test_inside_a_transaction_its_own_writes_are_read_and_nothing_is_stored(shop):
    titles()
    with transaction.atomic():
        Book.objects.filter(title="B00").update(title="inside")
        assert "inside" in titles()
        _, ran = queries(titles)
        assert ran == 1  # its own write: the cache is skipped
    assert titles() == database_titles()


def test_a_rollback_leaves_nothing_behind(shop):
    titles()

    def write_then_fail():
        with transaction.atomic():
            Book.objects.filter(title="B00").update(title="rolled back")
            titles()
            raise RuntimeError

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert titles() == database_titles()
    assert "rolled back" not in titles()


def _write_in_a_savepoint_that_rolls_back(title):
    try:
        with transaction.atomic():
            Book.objects.filter(title=title).update(title="undone")
            raise RuntimeError
    except RuntimeError:
        pass


def test_a_savepoint_rollback_then_a_write_still_invalidates_on_commit(shop):
    titles()
    with transaction.atomic():
        _write_in_a_savepoint_that_rolls_back("B00")
        Book.objects.filter(title="B01").update(title="kept")
    assert titles() == database_titles()
    assert "kept" in titles() and "undone" not in titles()


def test_a_reader_that_raced_an_open_transaction_does_not_survive_its_commit(shop, postgres_only):
    """Another connection stores the old rows while a transaction has written but not yet
    committed; the commit retires that entry. (PostgreSQL: SQLite locks the reader out.)"""
    titles()
    with transaction.atomic():
        _write_in_a_savepoint_that_rolls_back("B10")
        Book.objects.filter(title="B00").update(title="committed")
        reader = threading.Thread(target=_read_in_own_connection)
        reader.start()
        reader.join()
        assert "committed" not in caches["default"].get("race-result", [])
    assert "committed" in titles()


@transaction.atomic
def _rename_while_another_connection_reads(old, new):
    Book.objects.filter(title=old).update(title=new)
    reader = threading.Thread(target=_read_in_own_connection)
    reader.start()
    reader.join()


def test_a_function_decorated_with_atomic_retires_what_a_reader_stored_every_call(
    shop, postgres_only
):
    """``@transaction.atomic`` uses one Atomic object for every call of the function: the
    second call's commit retires what another connection stored while it ran, as the
    first call's did."""
    titles()
    _rename_while_another_connection_reads("B00", "first")
    assert "first" in titles()
    _rename_while_another_connection_reads("B01", "second")
    assert "second" in titles()
    assert titles() == database_titles()


def test_a_callback_that_raises_at_commit_does_not_leave_the_cache_stale(shop, postgres_only):
    """An on-commit callback registered before the write raises, so Django skips the
    callbacks after it, the commit-time invalidation among them: it runs when the
    connection next reads through the cache."""
    titles()

    def another_connection_reads():
        reader = threading.Thread(target=_read_in_own_connection)
        reader.start()
        reader.join()

    with pytest.raises(RuntimeError, match="own callback"):
        _write_before_a_callback_that_raises(then=another_connection_reads)
    assert "committed" in database_titles()
    assert "committed" in titles()


def _write_before_a_callback_that_raises(then=lambda: None):
    """A transaction whose first on-commit callback (the project's) raises at commit."""

    def fails():
        raise RuntimeError("the project's own callback")

    with transaction.atomic():
        transaction.on_commit(fails)
        Book.objects.filter(title="B00").update(title="committed")
        then()


@pytest.fixture
def invalidated(monkeypatch):
    """Every generation the store retires, as (group, tables), in order."""
    retired = []
    real = store.invalidate

    def spy(group, tables):
        tables = tuple(tables)
        retired.append((group, tables))
        real(group, tables)

    monkeypatch.setattr(store, "invalidate", spy)
    return retired


@transaction.atomic
def _rename(old, new):
    Book.objects.filter(title=old).update(title=new)


def test_every_call_of_an_atomic_function_invalidates_again_on_commit(shop, invalidated):
    for old, new in (("B00", "first"), ("B01", "second"), ("B10", "third")):
        invalidated.clear()
        _rename(old, new)
        # At the write, for other processes, and at the commit, for what they stored since.
        assert invalidated == [("default", ("shop_book",))] * 2, (old, invalidated)


def test_a_delete_in_autocommit_invalidates_at_the_write_and_once_at_commit(shop, invalidated):
    """``delete()`` runs in a transaction Django opens for it: each statement retires its
    table at once, and the commit retires them all in one call (it was one per statement)."""
    assert "B00" in titles()
    invalidated.clear()
    Book.objects.filter(title="B00").delete()  # its tag links, reviews, comments, then it
    written = ("shop_book_tags", "shop_review", "shop_comment", "shop_book")
    assert invalidated == [*[("default", (table,)) for table in written], ("default", written)]
    assert titles() == database_titles()


def test_a_delete_in_manual_commit_mode_is_not_served_after_it(shop):
    """With autocommit off, the transaction Django opens for ``delete()`` does not commit:
    the project does, later. The rows it deleted are never served meanwhile."""
    assert "B00" in titles()
    transaction.set_autocommit(False)
    try:
        Book.objects.filter(title="B00").delete()
        assert "B00" not in titles()
        transaction.commit()
        _another_connection_reads()
        assert "B00" not in titles()
    finally:
        transaction.rollback()  # the read above began a transaction (read from the database)
        transaction.set_autocommit(True)
    assert titles() == database_titles()


def test_a_pre_delete_handlers_commit_callback_never_reads_the_deleted_rows(shop):
    """A ``pre_delete`` handler's on-commit callback (a task handed to a worker) is
    registered before the query cache's own: it must not be served the deleted rows."""
    from django.db.models.signals import pre_delete

    seen = []

    def hand_over(**kwargs):
        transaction.on_commit(lambda: seen.append(_titles_in_another_thread()))

    titles()
    pre_delete.connect(hand_over, sender=Book)
    try:
        Book.objects.filter(title="B00").delete()
    finally:
        pre_delete.disconnect(hand_over, sender=Book)
    assert seen and "B00" not in seen[0]


def _titles_in_another_thread():
    found = []

    def read():
        try:
            found.append(titles())
        finally:
            connections.close_all()

    reader = threading.Thread(target=read)
    reader.start()
    reader.join()
    return found[0]


def test_a_projects_transaction_still_invalidates_at_the_write_and_once_at_commit(
    shop, invalidated
):
    titles()
    invalidated.clear()
    with transaction.atomic():
        Book.objects.filter(title="B00").update(title="x")
        Book.objects.filter(title="B01").delete()
    assert invalidated == [
        # At each write, for other processes...
        *[("default", (table,)) for table in ("shop_book", "shop_book_tags", "shop_review")],
        *[("default", (table,)) for table in ("shop_comment", "shop_book")],
        # ... and at the commit, all in one call.
        ("default", ("shop_book", "shop_book_tags", "shop_review", "shop_comment")),
    ]
    assert titles() == database_titles()


def test_a_commit_time_invalidation_skipped_by_a_raising_callback_runs_at_the_next_read(
    shop, invalidated
):
    with pytest.raises(RuntimeError, match="own callback"):
        _write_before_a_callback_that_raises()
    assert invalidated == [("default", ("shop_book",))]  # the commit's was skipped
    titles()
    assert invalidated == [("default", ("shop_book",))] * 2
    titles()
    assert len(invalidated) == 2  # once


def _another_connection_reads():
    reader = threading.Thread(target=_read_in_own_connection)
    reader.start()
    reader.join()


def test_a_transaction_reads_its_own_write_however_the_statement_named_the_table(
    shop, postgres_only
):
    """Written as ``public.shop_book`` inside a transaction, while another connection
    stores the committed rows: the transaction's reads of ``shop_book`` skip the cache."""
    titles()
    with transaction.atomic():
        raw("UPDATE public.shop_book SET title = %s WHERE title = %s", ["mine", "B00"])
        _another_connection_reads()
        assert "mine" in titles()


def test_a_write_to_unknown_tables_in_a_transaction_is_its_own_for_every_read(
    shop, postgres_only, invalidated
):
    """A statement whose tables are unknown: the transaction reads past the cache, and it
    retires every entry once at commit, however many such statements ran."""
    titles()
    statement = "DO $$ BEGIN UPDATE shop_book SET title = '{}' WHERE title = '{}'; END $$"
    with transaction.atomic():
        raw(statement.format("unknown", "B00"))
        raw(statement.format("unknown too", "B01"))
        _another_connection_reads()
        assert "unknown" in titles()
    assert titles() == database_titles()


def test_a_commit_time_invalidation_runs_once_even_when_a_callback_reads(shop, invalidated):
    """A project's on-commit callback that reads through the cache before ours has run must
    not make ours run twice."""
    read = []
    invalidated.clear()
    with transaction.atomic():
        transaction.on_commit(lambda: read.append(titles()))
        Book.objects.filter(title="B00").update(title="x")
    assert "x" in read[0]
    assert invalidated == [("default", ("shop_book",))] * 2  # at the write, at the commit


def test_a_savepoint_rollback_keeps_the_transactions_earlier_write_waiting(shop, invalidated):
    """A write, then a savepoint that writes the same table and rolls back: the commit
    still invalidates for the first write."""
    with transaction.atomic():
        Book.objects.filter(title="B00").update(title="kept")
        _write_in_a_savepoint_that_rolls_back("B01")
        assert "kept" in titles()  # its own write: read past the cache
    assert invalidated[-1] == ("default", ("shop_book",))
    assert len(invalidated) == 3  # the two writes, and the commit
    assert titles() == database_titles()


def _read_in_own_connection():
    try:
        caches["default"].set("race-result", titles())
    finally:
        connections.close_all()


def authors_under_lock():
    books = Book.cached_objects.prefetch_related("author").order_by("title").cached(lock=True)
    return [book.author.name for book in books]


def _authors_in_own_connection():
    try:
        authors_under_lock()
        caches["default"].set("race-result", authors_under_lock())
    finally:
        connections.close_all()


def test_a_transaction_that_takes_the_lock_reads_its_own_writes(shop, postgres_only, monkeypatch):
    """Another connection stores the rows from before this transaction's write, under the
    write's new generation; the transaction then misses (it wrote a table the entry read),
    takes the lock, and must not serve that entry: it runs the query."""
    with transaction.atomic():
        Author.objects.filter(name="A0").update(name="mine")
        reader = threading.Thread(target=_authors_in_own_connection)
        reader.start()
        reader.join()
        # As in another process, which has not seen this query's prefetch read the authors.
        monkeypatch.setattr(cache_queryset, "_guesses", {})
        assert "mine" not in caches["default"].get("race-result")  # the stored entry is old
        assert authors_under_lock() == ["mine", "mine", "A1", "A1"]


# --- Concurrency ------------------------------------------------------------------------------


def test_no_stale_read_after_a_commit_under_concurrent_writes_and_reads(shop):
    """Threads here and two other processes commit new versions through every write path
    and read through the cache at random: a read that starts after a commit never returns
    an older version."""
    if connection.vendor == "sqlite":
        pytest.skip("needs a database server other processes reach: run with DBTUNE_DB=postgres")
    if os.environ.get("DBTUNE_CACHE", "locmem") == "locmem":
        pytest.skip("needs a cache the processes share: run with DBTUNE_CACHE=redis")
    context = multiprocessing.get_context("spawn")
    committed = context.Value("i", 0)
    ready, go = context.Value("i", 0), context.Event()
    stale_elsewhere, reads_elsewhere = context.Value("i", 0), context.Value("i", 0)
    writes_elsewhere = context.Value("i", 0)
    database = connection.settings_dict["NAME"]
    shared = (committed, stale_elsewhere, reads_elsewhere, writes_elsewhere)
    processes = [
        context.Process(target=cache_worker.work, args=(database, ready, go, *shared, 3.0))
        for _ in range(2)
    ]
    cache_worker.start(processes, ready)
    go.set()
    start = time.monotonic()
    stale, reads = [], []

    def writer():
        try:
            while cache_worker.keep_going(start, 3.0, committed.value > 20):
                cache_worker.write(committed)
        finally:
            connections.close_all()

    def reader():
        try:
            while cache_worker.keep_going(start, 3.0, len(reads) > 100):
                version, was_stale = cache_worker.read(committed)
                reads.append(version)
                if was_stale:
                    stale.append(version)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer) for _ in range(2)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join(cache_worker.LONGEST)
    assert [process.exitcode for process in processes] == [0, 0]
    assert committed.value > 20 and len(reads) > 100 and reads_elsewhere.value > 100
    assert writes_elsewhere.value > 10  # other processes wrote too
    assert stale == [] and stale_elsewhere.value == 0


# --- Stampede ------------------------------------------------------------------------------

CALLS = []
EXPECTED_CALLS = [0]
READERS = 8
asked = threading.Semaphore(0)
everyone_asked = threading.Event()
all_computing = threading.Event()


def _count_once_everyone_asked():
    CALLS.append(1)
    if len(CALLS) == EXPECTED_CALLS[0]:
        all_computing.set()
    # No computation ends before every reader asked and every expected computation began:
    # without the lock, each reader has then missed (none can find a stored result).
    all_computing.wait(10)
    everyone_asked.wait(10)
    return Book.objects.count()


@cached(depends_on=[Book], lock=True)
def slow_count():
    return _count_once_everyone_asked()


@cached(depends_on=[Book], lock=False)
def slow_count_unlocked():
    return _count_once_everyone_asked()


@pytest.mark.parametrize(("function", "calls"), [(slow_count, 1), (slow_count_unlocked, 8)])
def test_cold_readers_compute_once_under_the_lock(shop, function, calls):
    CALLS.clear()
    EXPECTED_CALLS[0] = calls
    everyone_asked.clear()
    all_computing.clear()
    results = []

    def read():
        try:
            asked.release()
            results.append(function())
        finally:
            connections.close_all()

    def count_the_readers():
        for _ in range(READERS):
            asked.acquire()
        everyone_asked.set()

    counter = threading.Thread(target=count_the_readers)
    counter.start()
    threads = [threading.Thread(target=read) for _ in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in [counter, *threads]:
        thread.join()
    assert results == [4] * READERS
    assert len(CALLS) == calls


@cached(depends_on=[Book], lock=True)
def counted_count():
    CALLS.append(1)
    return Book.objects.count()


def test_a_reader_that_takes_the_lock_after_another_stored_the_entry_reads_it(shop, monkeypatch):
    # The late reader missed before the first one stored the entry, and takes the lock only
    # after the first one released it: the entry is there by then, and is what it serves.
    CALLS.clear()
    looked_up, first_done = threading.Event(), threading.Event()
    take_lock = store.acquire

    def late_acquire(entry):
        if threading.current_thread().name == "late":
            looked_up.set()
            first_done.wait(10)
        return take_lock(entry)

    monkeypatch.setattr(store, "acquire", late_acquire)
    results = []

    def late():
        try:
            results.append(counted_count())
        finally:
            connections.close_all()

    reader = threading.Thread(target=late, name="late")
    reader.start()
    assert looked_up.wait(10)
    results.append(counted_count())
    first_done.set()
    reader.join()
    assert results == [4, 4]
    assert len(CALLS) == 1


# --- Cache trouble --------------------------------------------------------------------------

DEAD_REDIS = {
    "BACKEND": "django_redis.cache.RedisCache",
    "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
    "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
}


def test_an_unreachable_cache_server_sends_everything_to_the_database(shop, settings, caplog):
    titles()  # cached while the server answered
    settings.CACHES = {**settings.CACHES, "unreachable": DEAD_REDIS}
    settings.DBTUNE = {
        "CACHE_ENABLED": True,
        "CACHE_ALIAS": "unreachable",
        "CACHE_BREAKER_SECONDS": 0,
    }
    assert titles() == database_titles()
    Book.objects.filter(title="B00").update(title="during the outage")  # nothing to tell
    assert titles() == database_titles()
    warnings = [r for r in caplog.records if r.name == "django_dbtune.cache"]
    assert 1 <= len(warnings) <= 3, [r.getMessage() for r in warnings]  # once per kind
    # The same entries are reachable again (the outage was this process's): the invalidation
    # it missed retires every entry before anything is read.
    settings.DBTUNE = {"CACHE_ENABLED": True}
    assert "during the outage" in titles()
    assert titles() == database_titles()


def test_an_open_breaker_never_skips_an_invalidation(shop, settings):
    """After one failed call this process leaves the cache alone for a while; a write in
    that while still invalidates, or every other process (whose breaker is closed) would
    serve the old rows until the timeout."""
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_BREAKER_SECONDS": 60}
    titles()
    store.failed("read", ConnectionError("one failed call"))  # as a failed read does
    Book.objects.filter(title="B00").update(title="written while the breaker was open")
    store._open_until = 0.0  # as another process sees it: its breaker never opened,
    store._missed = False  # and it missed nothing
    assert titles() == database_titles()


def test_a_missed_invalidation_is_made_good_by_the_next_write(shop, settings):
    """A process that only writes: the next invalidation that reaches the backend also
    retires the entries its missed one left, without waiting for a read of its own."""
    titles()
    settings.CACHES = {**settings.CACHES, "unreachable": DEAD_REDIS}
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "unreachable"}
    Book.objects.filter(title="B00").update(title="missed")  # the backend is away
    settings.DBTUNE = {"CACHE_ENABLED": True}  # back
    Author.objects.filter(name="A0").update(name="written next")  # another table
    store._missed = False  # as another process sees it: it missed nothing
    store._open_until = 0.0
    assert "missed" in titles()


def test_a_missed_invalidation_is_made_good_by_a_timer_in_a_process_that_goes_quiet(
    shop, settings
):
    """A worker that writes once during an outage and then neither reads nor writes: the
    entries its missed invalidation left are retired for every process once the backend
    answers, without waiting for that worker's next use of the cache."""
    titles()
    epoch = caches["default"].get(store.epoch_key())
    settings.CACHES = {**settings.CACHES, "unreachable": DEAD_REDIS}
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "unreachable"}
    Book.objects.filter(title="B00").update(title="missed")  # the backend is away
    settings.DBTUNE = {"CACHE_ENABLED": True}  # back; this process goes quiet
    deadline = time.monotonic() + 10
    while caches["default"].get(store.epoch_key()) == epoch and time.monotonic() < deadline:
        time.sleep(0.1)
    assert caches["default"].get(store.epoch_key()) != epoch
    assert "missed" in titles()


def test_a_cache_alias_missing_from_caches_sends_everything_to_the_database(
    shop, settings, caplog
):
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "nope", "CACHE_BREAKER_SECONDS": 0}
    assert titles() == database_titles()
    Book.objects.filter(title="B00").update(title="written")
    assert titles() == database_titles()
    warnings = [r.getMessage() for r in caplog.records if r.name == "django_dbtune.cache"]
    assert warnings and all("'nope'" in message for message in warnings), warnings


@pytest.fixture
def redis_behind_a_proxy(settings):
    """The test Redis, reached through a proxy that can be cut."""
    if os.environ.get("DBTUNE_CACHE") != "redis":
        pytest.skip("needs Redis: run with DBTUNE_CACHE=redis")
    location = settings.CACHES["default"]["LOCATION"]
    host, port = location.split("//")[1].split("/")[0].split(":")
    proxy = Proxy(host, int(port))
    settings.CACHES = {
        **settings.CACHES,
        "proxied": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{proxy.port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        },
    }
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "proxied", "CACHE_BREAKER_SECONDS": 0}
    yield proxy
    proxy.close()


def test_a_redis_outage_mid_run_raises_nothing_and_serves_nothing_stale(
    shop, redis_behind_a_proxy
):
    proxy = redis_behind_a_proxy
    titles()
    assert queries(titles)[1] == 0  # served by Redis, through the proxy
    proxy.cut()
    assert titles() == database_titles()  # the database answers meanwhile
    Book.objects.filter(title="B00").update(title="while Redis was away")
    _save_title("B01", "saved while Redis was away")
    assert titles() == database_titles()
    proxy.restore()  # Redis comes back with the entry stored before the outage
    assert titles() == database_titles()
    assert "while Redis was away" in titles()
    assert queries(titles)[1] == 0  # and caching again


def test_after_an_outage_a_process_serves_nothing_another_may_have_changed_meanwhile(
    shop, redis_behind_a_proxy, postgres_only
):
    """Another process wrote while the backend was away, and ended before it could make the
    lost invalidation good. This process saw the backend fail: once it answers again, every
    entry stored before the outage is retired here too."""
    proxy = redis_behind_a_proxy
    titles()
    assert queries(titles)[1] == 0
    proxy.cut()
    assert titles() == database_titles()  # this process sees the backend fail
    context = multiprocessing.get_context("spawn")
    location = f"redis://127.0.0.1:{proxy.port}/0"
    writer = context.Process(
        target=cache_worker.write_unseen,
        args=(connection.settings_dict["NAME"], location, "written during the outage"),
    )
    writer.start()
    writer.join(60)
    assert writer.exitcode == 0
    proxy.restore()
    assert titles() == database_titles()
    assert "written during the outage" in titles()


@cached(depends_on=[Book])
def unpicklable_titles():
    titles = sorted(Book.objects.values_list("title", flat=True))
    return lambda: titles  # the backend cannot store a function


def test_a_value_the_backend_refuses_retires_nothing(shop, settings, caplog):
    """Only a backend that cannot be reached may have lost another process's invalidation:
    a value it refuses (one that does not pickle) opens the breaker and nothing more, or
    every such call would retire the whole cache."""
    settings.DBTUNE = {**settings.DBTUNE, "CACHE_BREAKER_SECONDS": 0}
    titles()
    epoch = caches["default"].get(store.epoch_key())
    assert unpicklable_titles()() == database_titles()
    assert any("store an entry" in r.getMessage() for r in caplog.records)
    assert not store._missed
    assert queries(titles)[1] == 0  # still served
    assert caches["default"].get(store.epoch_key()) == epoch


def test_a_repair_that_cannot_start_a_thread_raises_nothing(shop, monkeypatch, settings):
    """At interpreter exit, or under a thread limit, no timer can start: the failure that
    wanted one still raises nothing, and the next use of the cache repairs instead."""
    settings.DBTUNE = {**settings.DBTUNE, "CACHE_BREAKER_SECONDS": 0}

    def no_thread(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Timer, "start", no_thread)
    monkeypatch.setattr(store, "_repairing", None)  # no timer of an earlier test waits
    store.failed("read", ConnectionError("the backend is away"))
    assert store._missed
    assert store.usable()  # the backend answers: the epoch is replaced here
    assert not store._missed


# --- Functions and by hand -------------------------------------------------------------------


@cached(depends_on=[Book, "shop.Author"])
def books_by(name):
    return sorted(Book.objects.filter(author__name=name).values_list("title", flat=True))


def test_cached_functions_are_keyed_by_arguments_and_invalidated(shop):
    first, ran = queries(lambda: books_by("A0"))
    assert ran == 1 and first == ["B00", "B01"]
    assert queries(lambda: books_by("A0")) == (first, 0)
    assert books_by("A1") == ["B10", "B11"]
    Author.objects.filter(name="A0").update(name="gone")
    assert books_by("A0") == []


def test_invalidate_by_hand(shop):
    titles()
    # A write the cache cannot see: another program's (here, with the hooks taken out).
    from django_dbtune.cache import hooks

    hooks.uninstall()
    try:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE shop_book SET title = 'elsewhere' WHERE title = 'B00'")
    finally:
        hooks.install()
    assert "elsewhere" not in titles()  # unseen: still the cached rows
    invalidate("shop.Book")
    assert "elsewhere" in titles()


def test_rows_stored_under_a_models_old_fields_are_not_served_to_its_new_code(shop):
    """A deploy: the migration adds a column, processes still running the old code store
    rows without it, and the new code must not be served those."""
    from django.db import models

    raw("ALTER TABLE shop_book ADD COLUMN isbn varchar(20) NULL")
    try:

        def rows():
            return list(Book.cached_objects.order_by("title").cached().values())

        assert "isbn" not in rows()[0]  # the old code, after the migration
        assert queries(rows)[1] == 0
        field = models.CharField(max_length=20, null=True)
        field.contribute_to_class(Book, "isbn")  # the new code
        try:
            assert "isbn" in rows()[0]
        finally:
            Book._meta.local_fields.remove(field)
            Book._meta._expire_cache()
            delattr(Book, "isbn")
    finally:
        raw("ALTER TABLE shop_book DROP COLUMN isbn")


def test_locking_reads_always_reach_the_database(shop):
    with transaction.atomic():
        list(Book.cached_objects.cached())
        _, ran = queries(lambda: list(Book.cached_objects.select_for_update().cached()))
    assert ran == 1


def test_deletes_stay_fast():
    """No post_delete receiver: Django deletes without fetching rows first when it can."""
    from django.db.models.signals import post_delete

    assert not post_delete.has_listeners(Tag)


@pytest.mark.parametrize("wrong", [{"CACHE_ENABLED": "yes"}, {"CACHE_TIMEOUT": "300"}])
def test_a_wrong_cache_setting_turns_the_cache_off_and_fails_no_read(
    shop, settings, wrong, caplog
):
    """gunicorn runs no system checks: every .cached() read raised ImproperlyConfigured, and
    every page with one answered 500."""
    settings.DBTUNE = {"CACHE_ENABLED": True, **wrong}
    with caplog.at_level("ERROR", logger="django_dbtune.cache"):
        assert titles() == database_titles()
        assert titles() == database_titles()
    [logged] = [r for r in caplog.records if "The query cache is off" in r.getMessage()]
    assert repr(next(iter(wrong))) in logged.getMessage()


@pytest.mark.parametrize(
    "wrong",
    [
        {"CACHE_TYPO": 1},
        {"CACHE_TIMEOUT": "300"},
        {"CACHE_ENABLED": "yes"},
        {"CACHE_TRIGGERS": {"shop_book": "shop_author"}},
        {"CACHE_VIEWS": {"shop_book_titles": "shop_book"}},
    ],
)
@pytest.mark.parametrize("write", ["update", "save", "raw"])
def test_a_process_with_a_wrong_cache_setting_still_retires_what_it_writes(
    shop, settings, wrong, write, caplog
):
    """A worker or a cron job with its own settings module, or one deploy with a typo: its
    reads go to the database, but its writes must still retire the entries the other
    processes (with the settings right) hold. They retired nothing, and those processes
    served the old rows until CACHE_TIMEOUT."""
    right = {"CACHE_ENABLED": True}
    settings.DBTUNE = right
    assert titles() == database_titles()  # stored
    settings.DBTUNE = {**right, **wrong}
    with caplog.at_level("ERROR", logger="django_dbtune.cache"):
        book = Book.objects.order_by("id").first()
        if write == "update":
            Book.objects.filter(pk=book.pk).update(title="renamed")
        elif write == "save":
            book.title = "renamed"
            book.save()
        else:
            raw("UPDATE shop_book SET title = 'renamed' WHERE id = %s", [book.pk])
    [logged] = [r for r in caplog.records if "The query cache is off" in r.getMessage()]
    assert "still retire" in logged.getMessage()
    settings.DBTUNE = right  # another process, or this one fixed
    assert "renamed" in titles()
    assert titles() == database_titles()


def test_a_cache_switched_off_by_a_string_watches_no_write(shop, settings):
    """``"CACHE_ENABLED": "false"`` (read from an environment variable) means off: its
    writes are not watched, as with False."""
    from django_dbtune.cache.hooks import watch_writes

    settings.DBTUNE = {"CACHE_ENABLED": "false"}
    Book.objects.count()
    assert watch_writes not in connection.execute_wrappers


def test_bad_arguments_are_clear_errors(shop):
    with pytest.raises(DbtuneError, match="positive whole number of seconds"):
        Book.cached_objects.cached(timeout=-1)
    with pytest.raises(DbtuneError, match=r"positive whole number of seconds, not 1\.5"):
        Book.cached_objects.cached(timeout=1.5)
    with pytest.raises(DbtuneError, match="needs the models"):
        cached()
    with pytest.raises(DbtuneError, match="not a model"):
        invalidate("shop.Nope")


def test_switched_off_it_goes_to_the_database_and_says_so(shop, settings):
    from django.core.checks import run_checks

    settings.DBTUNE = {"CACHE_ENABLED": False}
    titles()
    _, ran = queries(titles)
    assert ran == 1
    # Off, writes are not even looked at: no generation is written.
    caches["default"].clear()
    Book.objects.filter(title="B00").update(title="unwatched")
    assert _generation_keys_in_cache() == {}
    warning = next(m for m in run_checks(databases=[]) if m.id == "dbtune.W003")
    assert "shop.Book" in warning.msg and "CACHE_ENABLED" in warning.hint


def test_the_master_switch_turns_the_cache_off_too(shop, settings):
    """ENABLED off with CACHE_ENABLED on: no write is watched, so no read may be served
    from the cache either, or it would be stale after the first write."""
    settings.DBTUNE = {"CACHE_ENABLED": True}
    assert titles() == titles()  # stored while the cache was on
    settings.DBTUNE = {"ENABLED": False, "CACHE_ENABLED": True}
    Book.objects.filter(title="B00").update(title="renamed while switched off")
    result, ran = queries(titles)
    assert ran == 1
    assert "renamed while switched off" in result


def _generation_keys_in_cache():
    from django_dbtune.cache.store import store as the_store

    keys = [the_store.generation_key("default", "shop_book")]
    return caches["default"].get_many(keys)


def test_aggregate_with_arguments_keys_apart(shop):
    counted = Author.cached_objects.cached().aggregate(n=Count("books"))
    summed = Author.cached_objects.cached().aggregate(s=Sum("books__id"))
    assert set(counted) == {"n"} and set(summed) == {"s"}


# --- manage.py dbtune_cache ---------------------------------------------------------------


def test_the_command_shows_what_every_process_counted_per_model_and_table(shop):
    """Hits, misses and stores per model and @cached function, entry sizes from a sample,
    invalidations per table; what another process added to the backend counts too."""
    import json
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from django_dbtune.cache.tally import counter_key, subjects_key, tally

    tally.flush()
    caches["default"].clear()
    titles()  # a miss, stored
    titles()  # a hit
    titles()
    Book.objects.filter(title="B00").update(title="moved")
    titles()  # a miss again
    with transaction.atomic():
        Book.objects.filter(title="moved").update(title="B00")
        titles()  # the transaction wrote the books: sent to the database
    caches["default"].add(counter_key("shop.Book", "hits"), 0)
    caches["default"].incr(counter_key("shop.Book", "hits"), 5)  # another process's

    out = StringIO()
    call_command("dbtune_cache", "stats", "--format", "json", stdout=out)
    stats = json.loads(out.getvalue())
    book = stats["reads"]["shop.Book"]
    assert (book["hits"], book["misses"], book["database"], book["stores"]) == (7, 2, 1, 2)
    assert book["hit_rate"] == 0.7
    assert book["entry_bytes"] > 0  # the first store after the flush is always sampled
    assert stats["invalidations"]["shop_book"] >= 2  # at the write, and at the commit

    out = StringIO()
    call_command("dbtune_cache", "stats", "--reset", stdout=out)
    text = out.getvalue()
    assert "shop.Book" in text and "70%" in text and "shop_book:" in text
    assert "The counts are reset." in text
    assert caches["default"].get(subjects_key()) is None
    out = StringIO()
    call_command("dbtune_cache", "stats", stdout=out)
    assert "No reads or invalidations counted yet" in out.getvalue()
    with pytest.raises(CommandError, match="--reset goes with stats"):
        call_command("dbtune_cache", "clear", "--reset")


def test_the_command_clears_and_shows_stats(shop, settings):
    import json
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    titles()
    Book.objects.get(title="B00").tags.add(Tag.objects.create(name="t"))  # a join table
    out = StringIO()
    call_command("dbtune_cache", "stats", "--format", "json", stdout=out)
    stats = json.loads(out.getvalue())
    assert stats["reachable"] is True
    assert "shop_book" in stats["groups"]["default"]
    # A many-to-many's table (a model Django makes) has its generation too, and is listed.
    assert "shop_book_tags" in stats["groups"]["default"]
    out = StringIO()
    catalog = caches["default"].get(store.catalog_key())
    call_command("dbtune_cache", "clear", stdout=out)
    assert "retired" in out.getvalue()
    # Local memory is one process's: the command says it cannot reach the server's.
    assert ("this process's memory" in out.getvalue()) == (
        os.environ.get("DBTUNE_CACHE", "locmem") == "locmem"
    )
    out = StringIO()
    call_command("dbtune_cache", "clear", "--format", "json", stdout=out)
    cleared = json.loads(out.getvalue())
    assert cleared["cache"] == "default" and cleared["retired"] is True
    assert cleared["this_process_only"] == (os.environ.get("DBTUNE_CACHE", "locmem") == "locmem")
    _, ran = queries(titles)
    assert ran == 1  # the entry stored before the clear is not served
    # Views or triggers made by hand (psql): after a clear every process reads them again.
    assert caches["default"].get(store.catalog_key()) not in (None, catalog)
    settings.DBTUNE = {"CACHE_ENABLED": True, "CACHE_ALIAS": "nope"}
    with pytest.raises(CommandError, match=r"not in settings\.CACHES"):
        call_command("dbtune_cache", "stats")


def test_an_update_in_manual_commit_mode_is_read_by_others_once_committed(shop, postgres_only):
    """With autocommit off, ``update()`` runs in the project's transaction, which commits
    later. Another connection reading meanwhile stores the committed rows; once the project
    commits, nobody is served them."""
    assert "B00" in titles()
    transaction.set_autocommit(False)
    try:
        Book.objects.filter(title="B00").update(title="renamed")
        assert "renamed" in titles()  # its own write, uncommitted: never stored for others
        assert "renamed" not in _titles_in_another_thread()
        transaction.commit()
        assert "renamed" in _titles_in_another_thread()
        assert "renamed" in titles()
    finally:
        transaction.rollback()  # nothing left to roll back unless an assertion failed
        transaction.set_autocommit(True)
    assert titles() == database_titles()


def test_a_read_in_manual_commit_mode_is_never_stored_for_others(shop):
    """An uncommitted write read back in manual commit mode must never reach the cache: if
    the project rolls back, other connections would be served rows that never existed."""
    assert "B00" in titles()
    transaction.set_autocommit(False)
    try:
        Book.objects.filter(title="B00").update(title="never committed")
        assert "never committed" in titles()
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)
    assert "never committed" not in _titles_in_another_thread()
    assert titles() == database_titles()


@pytest.fixture
def tenant_schema(shop, postgres_only):
    """A schema ``tenant_x`` with its own ``shop_book``, whose titles start with "X"."""
    raw("CREATE SCHEMA tenant_x")
    raw("CREATE TABLE tenant_x.shop_book (LIKE public.shop_book INCLUDING ALL)")
    raw("INSERT INTO tenant_x.shop_book SELECT * FROM public.shop_book")
    raw("UPDATE tenant_x.shop_book SET title = 'X' || title")
    yield
    connection.close()  # whatever path the test left set
    raw("DROP SCHEMA tenant_x CASCADE")


def test_a_search_path_set_by_hand_keys_what_is_read_under_it(tenant_schema):
    """A site that switches tenants with ``SET search_path`` reads another schema's table
    from the same SQL: each schema's rows are cached apart."""
    public = titles()
    assert titles() == public == database_titles()  # stored and served
    raw("SET search_path TO tenant_x, public")
    assert titles() == database_titles() == [f"X{title}" for title in public]
    assert titles() == database_titles()  # stored under its own key, and served
    raw("SET search_path = %s", ["public"])
    assert titles() == public
    connection.close()  # a new connection starts from the settings' path
    assert titles() == public


def test_a_search_path_changed_in_a_way_that_cannot_be_told_skips_the_cache(tenant_schema):
    titles()
    with transaction.atomic():
        raw("SET LOCAL search_path TO tenant_x, public")
        assert titles() == database_titles()  # tenant_x's rows, not the public entry
    raw("SELECT set_config('search_path', 'tenant_x, public', false)")
    assert titles() == database_titles()
    raw("RESET search_path")
    assert titles() == database_titles()


def test_other_session_settings_leave_the_cache_on(shop, postgres_only):
    """Django itself runs ``SET CONSTRAINTS ALL IMMEDIATE`` (checking deferred constraints)."""
    titles()
    raw("SET CONSTRAINTS ALL IMMEDIATE")
    raw("SET TIME ZONE 'UTC'")
    assert queries(titles)[1] == 0


def test_another_librarys_commit_wrapper_survives_the_cache_going_off_and_on(shop, settings):
    """The cache wraps ``commit`` (for manual commit mode): turning it off and on again
    must not drop a wrapper another library put around ``commit`` meanwhile."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    theirs = BaseDatabaseWrapper.commit
    seen = []

    def counting(self):
        seen.append(self.alias)
        return theirs(self)

    BaseDatabaseWrapper.commit = counting
    try:
        settings.DBTUNE = {**settings.DBTUNE, "CACHE_ENABLED": False}
        settings.DBTUNE = {**settings.DBTUNE, "CACHE_ENABLED": True}
        with transaction.atomic():
            Book.objects.filter(title="B00").update(title="renamed")
        assert seen == ["default"]
    finally:
        BaseDatabaseWrapper.commit = theirs
    assert titles() == database_titles()


def test_autocommit_coming_back_on_retires_what_manual_mode_wrote(shop, invalidated):
    """SQLite (and MySQL) commit an open transaction when autocommit comes back on, with no
    ``commit()`` call: the tables written in manual commit mode are retired then."""
    if connection.vendor == "postgresql":
        # PostgreSQL refuses to turn autocommit on inside a transaction.
        pytest.skip("needs SQLite or MySQL: run with DBTUNE_DB=sqlite")
    transaction.set_autocommit(False)
    try:
        Book.objects.filter(title="B00").update(title="renamed")
        invalidated.clear()
    finally:
        transaction.set_autocommit(True)
    assert invalidated == [("default", ("shop_book",))]
    assert "renamed" in database_titles()  # it was committed
    assert titles() == database_titles()
