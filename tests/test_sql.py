import pytest

from django_dbtune.sql import analyse, lookup, rename_table


@pytest.mark.parametrize("vendor", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("sql", "kind", "tables", "written"),
    [
        ('SELECT "a"."id" FROM "shop_book" "a" WHERE "a"."id" = %s', "read", ["shop_book"], []),
        (
            'SELECT 1 FROM "b" INNER JOIN "c" ON ("b"."c_id" = "c"."id") WHERE "b"."x" IN '
            '(SELECT "d"."id" FROM "d")',
            "read",
            ["b", "c", "d"],
            [],
        ),
        ('INSERT INTO "t" ("a") VALUES (%s), (%s) RETURNING "t"."id"', "write", ["t"], ["t"]),
        (
            'UPDATE "t" SET "a" = %s WHERE "t"."id" IN (SELECT "u"."id" FROM "u")',
            "write",
            ["t", "u"],
            ["t"],
        ),
        ('DELETE FROM "t" WHERE "t"."id" IN (%s, %s)', "write", ["t"], ["t"]),
        ("WITH gone AS (DELETE FROM a RETURNING id) SELECT * FROM gone", "write", ["a"], ["a"]),
        ('SAVEPOINT "s1"', "other", [], []),
        ('RELEASE SAVEPOINT "s1"', "other", [], []),
    ],
)
def test_statements_are_classified_by_a_parser(vendor, sql, kind, tables, written):
    statement = analyse(sql, vendor)
    assert statement.kind == kind
    assert list(statement.tables) == tables
    assert list(statement.written_tables) == written


def test_schema_qualified_and_quoted_tables_keep_their_schema():
    assert analyse('SELECT * FROM "sales"."order" WHERE id = 1', "postgresql").tables == (
        "sales.order",
    )


def test_shape_replaces_literals_and_folds_lists():
    shape = analyse("SELECT * FROM t WHERE a = 'x' AND b = 3 AND c IN (1, 2, 3)", "", False).shape
    assert shape == "SELECT * FROM t WHERE a = ? AND b = ? AND c IN (...)"
    rows = analyse("INSERT INTO t (a, b) VALUES (%s, %s), (%s, %s), (%s, %s)", "sqlite").shape
    assert rows == "INSERT INTO t (a, b) VALUES (...)"


def test_a_percent_without_parameters_is_left_alone():
    assert analyse("SELECT '100%' FROM t", "postgresql", False).shape == "SELECT ? FROM t"


def test_unparseable_sql_still_gets_a_shape_and_a_kind():
    statement = analyse("VACUUM (VERBOSE) ((( nonsense", "postgresql", False)
    assert statement.kind == "other"
    assert statement.tables == ()


def test_column_positions_in_group_by_and_order_by_are_not_literals():
    shape = analyse(
        'SELECT "s", COUNT(*) FROM t WHERE n > 5 GROUP BY 1, 2 ORDER BY 1 ASC, 2 DESC LIMIT 21',
        "sqlite",
        False,
    ).shape
    assert (
        shape
        == 'SELECT "s", COUNT(*) FROM t WHERE n > ? GROUP BY 1, 2 ORDER BY 1 ASC, 2 DESC LIMIT ?'
    )
    assert analyse("SELECT a FROM t ORDER BY a + 1", "", False).shape.endswith("a + ?")


@pytest.mark.parametrize("vendor", ["sqlite", "postgresql"])
def test_each_parameter_is_named_with_the_column_it_is_compared_to_on_any_joined_table(vendor):
    found = lookup(
        'SELECT "t"."name" FROM "taggit_tag" "t" INNER JOIN "taggit_taggeditem" T2 '
        'ON ("t"."id" = T2."tag_id") WHERE (T2."content_type_id" = %s AND T2."object_id" '
        'IN (%s, %s) AND "t"."name" LIKE %s) LIMIT 21',
        vendor,
    )
    assert found.table == "taggit_tag"
    assert found.compared == (
        ("taggit_taggeditem", "content_type_id"),
        ("taggit_taggeditem", "object_id"),
        ("taggit_taggeditem", "object_id"),
        None,
    )
    assert found.result == "rows"


def test_a_table_renamed_in_a_read_keeps_its_strings_placeholders_and_columns():
    """How a read is pointed at a scratch copy of its table."""
    sql = (
        "SELECT `shop_book`.`id`, shop_book.title FROM `shop_book` INNER JOIN `shop_author` "
        "ON (`shop_book`.`author_id` = `shop_author`.`id`) WHERE `shop_book`.`title` = %s "
        "AND `shop_author`.`shop_book` LIKE 'shop_book%%' LIMIT 21"
    )
    assert rename_table(sql, "shop_book", "copy_1") == (
        "SELECT `copy_1`.`id`, `copy_1`.title FROM `copy_1` INNER JOIN `shop_author` "
        "ON (`copy_1`.`author_id` = `shop_author`.`id`) WHERE `copy_1`.`title` = %s "
        "AND `shop_author`.`shop_book` LIKE 'shop_book%%' LIMIT 21"
    )
