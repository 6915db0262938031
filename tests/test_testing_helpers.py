"""assert_uses_index and assert_no_seq_scan, passing and failing, on SQLite, PostgreSQL and
MariaDB."""

import pytest
from django.db import connection

from django_dbtune.testing import assert_no_seq_scan, assert_uses_index
from tests.shop.models import Author, Book

pytestmark = pytest.mark.django_db


@pytest.fixture
def author():
    author = Author.objects.create(name="A")
    Book.objects.create(title="t", author=author)
    return author


def _author_index():
    constraints = connection.introspection.get_constraints(connection.cursor(), "shop_book")
    return next(
        name
        for name, info in constraints.items()
        if info["columns"] == ["author_id"]
        and info["index"]
        # InnoDB's own index for the key is named after its constraint.
        and (connection.vendor == "mysql" or not info["foreign_key"])
    )


def test_a_filter_on_an_indexed_foreign_key_uses_its_index(author):
    books = Book.objects.filter(author=author)
    assert_uses_index(books)
    assert_uses_index(books, _author_index())
    assert_no_seq_scan(books)


def test_a_filter_on_an_unindexed_column_fails_with_the_plan(author):
    books = Book.objects.filter(title="t")
    with pytest.raises(AssertionError, match="does not use an index on shop_book") as failure:
        assert_uses_index(books)
    quoted = f"{connection.ops.quote_name('shop_book')}.{connection.ops.quote_name('title')}"
    assert f"WHERE {quoted}" in str(failure.value)
    if connection.vendor == "postgresql":
        assert "Seq Scan on shop_book" in str(failure.value)
        assert "enable_seqscan = off, as for a large table" in str(failure.value)
    elif connection.vendor == "mysql":
        assert '"access_type": "ALL"' in str(failure.value)
        assert "max_seeks_for_key = 1, as for a large table" in str(failure.value)
    else:
        assert "SCAN shop_book" in str(failure.value)
    with pytest.raises(AssertionError, match="scans every row of shop_book"):
        assert_no_seq_scan(books)


def test_a_named_index_the_plan_does_not_read_fails(author):
    with pytest.raises(AssertionError, match="does not use index 'shop_book_nope'"):
        assert_uses_index(Book.objects.filter(author=author), "shop_book_nope")


def test_with_real_statistics_a_tiny_table_is_scanned(author, postgres_only):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE shop_book")  # one row, and now the planner knows it
    books = Book.objects.filter(author=author)
    assert_uses_index(books)  # planned as for a large table
    with pytest.raises(AssertionError) as failure:
        assert_no_seq_scan(books, large_table=False)  # one row: a scan is the right plan
    assert "enable_seqscan" not in str(failure.value)


def test_an_index_walked_in_full_for_its_order_is_no_index_use(author, postgres_only):
    """With sequential scans off, PostgreSQL reads a filter no index serves through the
    index that gives its order, every entry of it: the table is read in full all the
    same. Under a LIMIT the walk stops early, and that is a use."""
    unserved = Book.objects.filter(title="t").order_by("author")
    with pytest.raises(AssertionError, match="scans every row of shop_book"):
        assert_no_seq_scan(unserved)
    with pytest.raises(AssertionError, match="reads every entry of") as failure:
        assert_uses_index(unserved, _author_index())
    assert "Index Scan" in str(failure.value)
    first = Book.objects.order_by("author")[:5]
    assert_no_seq_scan(first)
    assert_uses_index(first, _author_index())
