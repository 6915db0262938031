"""The query cache on MariaDB: writes in MySQL's own SQL retire what they change.

Each writes through a database cursor, as a project's raw SQL (or a library) does, after a
cached read, and the next cached read must give what the database holds."""

import pytest

from tests.shop.models import Author, Book, Tag
from tests.test_cache import fresh_cache, queries, raw, shop  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "standby"]),
    pytest.mark.usefixtures("mariadb_only", "shop"),
]


def names():
    return sorted(Author.cached_objects.cached().values_list("name", flat=True))


def test_an_update_through_a_join_retires_the_joined_table_it_sets():
    assert names() == ["A0", "A1"]
    raw(
        "UPDATE `shop_book` JOIN `shop_author` ON `shop_author`.`id` = `shop_book`.`author_id`"
        " SET `shop_author`.`name` = 'renamed' WHERE `shop_book`.`title` = %s",
        ["B00"],
    )
    assert names() == ["A1", "renamed"]


def test_an_update_of_several_tables_by_alias_retires_each():
    assert names() == ["A0", "A1"]
    raw(
        "UPDATE shop_book b, shop_author a SET a.name = CONCAT(a.name, '!') "
        "WHERE a.id = b.author_id AND b.title = %s",
        ["B10"],
    )
    assert names() == ["A0", "A1!"]


def test_a_delete_through_a_join_retires_the_table_it_deletes_from():
    tag = Tag.objects.get(name="t0")
    tagged = lambda: sorted(  # noqa: E731  (reads shop_book and its tags' table, not shop_tag)
        Book.cached_objects.filter(tags__id=tag.id).cached().values_list("title", flat=True)
    )
    assert tagged() == ["B00", "B01", "B10", "B11"]
    raw(
        "DELETE bt FROM shop_tag t JOIN shop_book_tags bt ON bt.tag_id = t.id WHERE t.name = %s",
        ["t0"],
    )
    assert tagged() == []


def test_replace_retires_the_table_it_writes():
    spare = Tag.objects.get(name="t1")
    assert sorted(Tag.cached_objects.cached().values_list("name", flat=True)) == ["t0", "t1"]
    raw("REPLACE INTO shop_tag (id, name) VALUES (%s, %s)", [spare.id, "replaced"])
    assert sorted(Tag.cached_objects.cached().values_list("name", flat=True)) == ["replaced", "t0"]


def test_insert_on_duplicate_key_update_retires_the_table_it_writes():
    spare = Tag.objects.get(name="t1")
    assert sorted(Tag.cached_objects.cached().values_list("name", flat=True)) == ["t0", "t1"]
    raw(
        "INSERT INTO shop_tag (id, name) VALUES (%s, %s) ON DUPLICATE KEY UPDATE name = 'upsert'",
        [spare.id, "ignored"],
    )
    assert sorted(Tag.cached_objects.cached().values_list("name", flat=True)) == ["t0", "upsert"]


def test_load_data_retires_every_entry(tmp_path):
    """Its table is not read from the statement: nothing may outlive it."""
    assert names() == ["A0", "A1"]
    assert queries(names)[1] == 0
    rows = tmp_path / "tags.tsv"
    rows.write_text("loaded\n")
    raw(f"LOAD DATA LOCAL INFILE '{rows}' INTO TABLE shop_tag (name)")
    assert "loaded" in Tag.cached_objects.cached().values_list("name", flat=True)
    assert queries(names)[1] == 1  # retired too


def test_a_write_with_mysqls_modifiers_retires_its_own_table():
    """``UPDATE LOW_PRIORITY shop_author``: the table is shop_author (it was read as a table
    named LOW_PRIORITY)."""
    assert names() == ["A0", "A1"]
    raw("UPDATE LOW_PRIORITY shop_author SET name = %s WHERE name = %s", ["low", "A0"])
    assert names() == ["A1", "low"]
    assert sorted(Tag.cached_objects.cached().values_list("name", flat=True)) == ["t0", "t1"]
    raw("DELETE LOW_PRIORITY QUICK FROM shop_book_tags")
    raw("DELETE LOW_PRIORITY FROM shop_tag WHERE name = %s", ["t1"])
    assert sorted(Tag.cached_objects.cached().values_list("name", flat=True)) == ["t0"]
