import pytest
from django.db import connection, models
from django.test.utils import isolate_apps

from django_dbtune.advisor.drift import drift
from django_dbtune.advisor.schema_rules import redundant_indexes
from django_dbtune.schema import (
    IndexInfo,
    ModelSchema,
    actual_indexes,
    declared_indexes,
    model_schemas,
)


def schemas(read_database=False):
    return {s.label: s for s in model_schemas(["testapp"], "default", read_database=read_database)}


@pytest.mark.parametrize(
    ("column", "covered"),
    [
        ("id", True),  # primary key
        ("author_id", True),  # Django's automatic foreign key index
        ("editor_id", True),  # leading column of a composite Meta.indexes entry
        ("translator_id", True),  # leading column of a UniqueConstraint
        ("illustrator_id", True),  # leading column of unique_together
        ("title", True),  # leads book_title_reviewer
        ("reviewer_id", False),  # second column only
        ("sponsor_id", False),  # partial index only
    ],
)
def test_coverage_is_about_usable_leading_columns(column, covered):
    if connection.vendor == "mysql" and column in ("reviewer_id", "sponsor_id"):
        # InnoDB indexes every foreign key constraint; the partial index is built whole.
        covered = True
    assert schemas()["testapp.Book"].covers(column) is covered


def test_unique_fields_and_many_to_many_tables_are_covered():
    found = schemas()
    assert found["testapp.Author"].covers("email")
    through = found["testapp.Book_tags"]
    assert through.auto_created
    assert through.covers("book_id") and through.covers("tag_id")


def test_proxy_and_unmanaged_models_have_no_schema_of_their_own():
    labels = set(schemas())
    assert "testapp.BookProxy" not in labels
    assert "testapp.LegacyLoan" not in labels
    assert {"testapp.Book", "testapp.PaperbackBook", "testapp.Edition"} <= labels


def test_postgresql_pattern_indexes_are_implicit_and_cover_no_range_or_sort():
    tag = schemas()["testapp.Tag"]
    patterns = [index for index in tag.declared if index.origin == "pattern ops"]
    if connection.vendor == "postgresql":
        assert [index.opclasses for index in patterns] == [("varchar_pattern_ops",)]
        assert patterns[0].implicit and not patterns[0].usable
    else:
        assert patterns == []


@pytest.mark.django_db
def test_the_database_indexes_match_what_is_declared():
    book = schemas(read_database=True)["testapp.Book"]
    assert book.actual is not None
    actual_names = {index.name for index in book.actual}
    assert {"book_editor_title", "book_title_reviewer", "book_sponsor_some"} <= actual_names
    # The partial index, as the database reports it, still covers nothing in general; on
    # MariaDB Django builds it whole, and it covers its column.
    assert book.covers("sponsor_id") is (connection.vendor == "mysql")


@pytest.mark.django_db
@pytest.mark.usefixtures("unindexed_foreign_keys")
def test_an_index_only_the_database_has_counts_as_covering():
    with connection.cursor() as cursor:
        cursor.execute('CREATE INDEX handmade_reviewer ON "testapp_book" ("reviewer_id")')
    assert schemas(read_database=True)["testapp.Book"].covers("reviewer_id")


@pytest.mark.django_db
@isolate_apps("tests.testapp")
def test_a_table_in_a_postgresql_schema_is_read(postgres_only):
    class Ledger(models.Model):
        code = models.CharField(max_length=10)
        owner_id = models.IntegerField()

        class Meta:
            app_label = "testapp"
            db_table = '"accounting"."ledger"'

    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA accounting")
    with connection.schema_editor() as editor:
        editor.create_model(Ledger)
    with connection.cursor() as cursor:
        cursor.execute('CREATE INDEX ledger_owner ON "accounting"."ledger" (owner_id)')
        cursor.execute(
            'CREATE INDEX ledger_code_some ON "accounting"."ledger" (code) WHERE code = \'x\''
        )
    found = {index.name: index for index in actual_indexes(Ledger, connection)}
    assert found["ledger_owner"].columns == ("owner_id",)
    assert found["ledger_code_some"].partial
    schema = ModelSchema(
        Ledger, "default", declared_indexes(Ledger, connection), list(found.values())
    )
    assert schema.covers("owner_id"), "an index only the database has still covers"
    assert not schema.covers("code"), "a partial index covers nothing in general"


@pytest.mark.django_db
@isolate_apps("tests.testapp")
def test_a_foreign_key_to_a_text_primary_key_has_a_pattern_index_too(postgres_only):
    """Django's PostgreSQL schema editor gives such a key a second, ``_like`` index, as it
    does a text field (a shop's addresses point at their country by its ISO code): it is
    Django's own, not an index the models do not declare."""

    class Country(models.Model):
        code = models.CharField(max_length=2, primary_key=True)

        class Meta:
            app_label = "testapp"

    class Address(models.Model):
        country = models.ForeignKey(Country, models.CASCADE)
        owner_id = models.IntegerField()

        class Meta:
            app_label = "testapp"

    with connection.schema_editor() as editor:
        editor.create_model(Country)
        editor.create_model(Address)
    declared = declared_indexes(Address, connection)
    schema = ModelSchema(Address, "default", declared, actual_indexes(Address, connection))
    assert [index.opclasses for index in declared if index.origin == "pattern ops"] == [
        ("varchar_pattern_ops",)
    ]
    assert list(drift(schema)) == []


def test_a_swapped_model_has_no_schema(settings):
    settings.AUTH_USER_MODEL = "testapp.Author"
    labels = {s.label for s in model_schemas(["auth"], "default", read_database=False)}
    assert "auth.User" not in labels
    assert "auth.Group" in labels


def test_an_abstract_model_has_no_schema_but_its_children_do():
    labels = {s.label for s in model_schemas(["testapp"], "default", read_database=False)}
    assert "testapp.Stamped" not in labels
    assert "testapp.Note" in labels


@pytest.mark.parametrize(
    ("index_columns", "opclasses", "served"),
    [
        (("label", "code"), ("varchar_pattern_ops", "varchar_pattern_ops"), True),
        # Pattern ops on the equality column only: LIKE on code is not served.
        (("label", "code"), ("varchar_pattern_ops", "int4_ops"), False),
        # Leads with label only: says nothing about the prefix search on code.
        (("label",), ("varchar_pattern_ops",), False),
        (("label", "code"), (), False),
    ],
)
def test_a_prefix_search_is_served_by_pattern_ops_on_its_own_column(
    postgres_only, index_columns, opclasses, served
):
    from tests.testapp.models import Shelf

    index = IndexInfo("shelf_idx", index_columns, "Meta.indexes", opclasses=opclasses)
    schema = ModelSchema(Shelf, "default", [index])
    assert schema.serves(("label", "code"), prefix=True) is served
    assert schema.serves(("label",), prefix=True) is (opclasses[:1] == ("varchar_pattern_ops",))


@pytest.mark.django_db
@isolate_apps("tests.testapp")
@pytest.mark.usefixtures("partial_indexes")
def test_a_declared_index_counts_for_what_django_builds():
    """Expressions and conditions are read from the CREATE INDEX Django renders for them."""
    from django.db.models.functions import Lower, Upper

    class Ticket(models.Model):
        owner_id = models.IntegerField()
        code = models.CharField(max_length=10)
        status = models.CharField(max_length=10)
        closed = models.DateTimeField(null=True)
        urgent = models.BooleanField(default=False)

        class Meta:
            app_label = "testapp"
            indexes = [
                models.Index(models.F("owner_id"), Lower("code"), name="ticket_owner_code"),
                models.Index(fields=["owner_id"], name="ticket_owner"),
                models.Index(Upper("code"), name="ticket_upper_code"),
                models.Index(
                    fields=["code"], name="ticket_open", condition=models.Q(closed__isnull=True)
                ),
                models.Index(
                    fields=["status"], name="ticket_urgent", condition=models.Q(urgent=True)
                ),
                models.Index(
                    fields=["closed"],
                    name="ticket_live",
                    condition=models.Q(status__in=["new", "open"]),
                ),
            ]

    schema = ModelSchema(Ticket, "default", declared_indexes(Ticket, connection))
    assert schema.covers("owner_id"), "an expression after it leaves owner_id leading"
    assert not schema.covers("code")
    found = {index.name: index for index in schema.declared}
    assert found["ticket_upper_code"].key_parts == ("upper(code)",)
    assert found["ticket_owner_code"].key_parts == ("owner_id", "lower(code)")
    from django_dbtune.schema import Call

    def call(**equal):
        return Call(equal, frozenset(equal))

    assert schema.serves(("closed", "code"), call=call(closed=None))
    assert not schema.serves(("code",), call=call(closed=...))
    assert schema.serves(("urgent", "status"), call=call(urgent=True))
    assert not schema.serves(("urgent", "status"), call=call(urgent=False))
    assert schema.serves(("status", "closed"), call=call(status="open"))
    assert not schema.serves(("status", "closed"), call=call(status="done"))
    # (owner_id) is a prefix of (owner_id, lower(code)), which is no copy of it.
    [redundant] = redundant_indexes(schema)
    assert (redundant.kind, redundant.fields) == ("redundant_index", ("owner_id",))
    assert "index ticket_owner_code (owner_id, lower(code))" in redundant.message


@pytest.mark.django_db
@pytest.mark.usefixtures("partial_indexes")
def test_drift_tells_a_partial_or_expression_index_from_a_plain_one():
    """Tag.name's index dropped by hand and a partial one made on the column: the models'
    index is missing, whatever the partial one holds."""
    with connection.cursor() as cursor:
        plain = next(
            name
            for name, info in connection.introspection.get_constraints(
                cursor, "testapp_tag"
            ).items()
            if info["index"] and info["columns"] == ["name"] and not name.endswith("_like")
        )
        cursor.execute(f'DROP INDEX "{plain}"')
        cursor.execute("CREATE INDEX tag_some_names ON testapp_tag (name) WHERE name = 'x'")
        cursor.execute("CREATE INDEX tag_name_upper ON testapp_tag (name, upper(name))")
    tag = schemas(read_database=True)["testapp.Tag"]
    found = [(f.kind, f.fields, f.message) for f in drift(tag)]
    assert ("missing_in_database", ("name",)) in [(kind, fields) for kind, fields, _ in found]
    unknown = [message for kind, _, message in found if kind == "unknown_in_database"]
    assert any("tag_some_names on (name)" in message for message in unknown)
    assert any("tag_name_upper on (name, upper(name))" in message for message in unknown)
