import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import DatabaseError, connection, connections, transaction
from django.test import AsyncClient, override_settings
from django.utils.connection import ConnectionDoesNotExist

from django_dbtune import CaptureError
from django_dbtune.capture import _record, capture_queries
from publisher.models import Business, Post, Tag

THIS_FILE = "tests/test_capture.py"


def wrappers() -> dict[str, list[object]]:
    return {alias: list(connections[alias].execute_wrappers) for alias in connections}


def line_of(text: str) -> int:
    """The line number in this file of the (unique) line containing ``text``."""
    with open(__file__) as source:
        lines = [n for n, line in enumerate(source, start=1) if text in line]
    assert len(lines) == 2, lines  # the line itself and the call to line_of()
    return lines[0]


@pytest.mark.django_db
def test_orm_query_is_recorded_with_shape_tables_and_call_site():
    Tag.objects.create(name="launch")
    with capture_queries() as log:
        tags = Tag.objects.filter(name__startswith="la").values_list("name", flat=True)
        names = list(tags)  # q1
    assert names == ["launch"]
    (record,) = log
    assert record.alias == "default"
    assert record.kind == "read"
    assert not record.is_write
    assert record.tables == ("publisher_tag",)
    assert record.params == ("la%",) or list(record.params) == ["la%"]
    assert "?" in record.shape and "la%" not in record.shape
    assert record.duration > 0
    assert record.call_site == f"{THIS_FILE}:{line_of('# q1')} in " + (
        "test_orm_query_is_recorded_with_shape_tables_and_call_site"
    )


@pytest.mark.django_db
def test_raw_cursor_queries_are_recorded():
    with capture_queries() as log, connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM publisher_tag WHERE name = 'x' OR id = 3")
        cursor.execute("SELECT name FROM publisher_tag WHERE name = %s", ["y"])
    assert [record.kind for record in log] == ["read", "read"]
    assert log[0].tables == ("publisher_tag",)
    assert log[0].shape == "SELECT COUNT(*) FROM publisher_tag WHERE name = ? OR id = ?"
    assert log[1].shape == "SELECT name FROM publisher_tag WHERE name = ?"
    assert log[0].params is None


@pytest.mark.django_db
def test_writes_are_recorded_with_the_tables_they_change():
    with capture_queries() as log:
        tags = Tag.objects.bulk_create([Tag(name="a"), Tag(name="b")])
        Tag.objects.filter(pk=tags[0].pk).update(name="c")
        Tag.objects.filter(name="b").delete()
    writes = log.writes
    assert len(writes) >= 3
    # Deleting a tag also deletes its rows in the posts' many-to-many table.
    assert {table for record in writes for table in record.written_tables} == {
        "publisher_tag",
        "publisher_post_tags",
    }
    table = connection.ops.quote_name("publisher_tag")
    assert writes[0].shape.startswith(f"INSERT INTO {table}")
    assert any(record.shape.startswith(f"UPDATE {table}") for record in writes)
    assert any(record.shape.startswith(f"DELETE FROM {table}") for record in writes)


@pytest.mark.django_db
def test_in_lists_of_any_length_share_one_shape():
    with capture_queries() as log:
        list(Tag.objects.filter(pk__in=[1, 2]))
        list(Tag.objects.filter(pk__in=[1, 2, 3, 4, 5]))
    assert log[0].shape == log[1].shape
    assert len(log.shapes()) == 1
    assert log.shapes()[0].count == 2


@pytest.mark.django_db(transaction=True)
def test_transactions_mark_queries_and_savepoints_are_not_reads_or_writes():
    with capture_queries() as log:
        Tag.objects.create(name="outside")
        with transaction.atomic():
            Tag.objects.create(name="inside")
            with transaction.atomic():
                Tag.objects.count()
    inserts = [record for record in log if record.is_write]
    assert [record.in_transaction for record in inserts] == [False, True]
    savepoints = [record for record in log if "SAVEPOINT" in record.sql]
    assert savepoints, "the nested atomic block issues a savepoint"
    assert {record.kind for record in savepoints} == {"other"}
    count = next(record for record in log if "COUNT" in record.sql)
    assert count.in_transaction


@pytest.mark.django_db(databases=["default", "other"])
def test_queries_on_two_databases_carry_their_alias():
    with capture_queries() as log:
        Tag.objects.create(name="here")
        Tag.objects.using("other").create(name="there")
        assert Tag.objects.using("other").count() == 1
    assert [record.alias for record in log if record.kind != "other"] == [
        "default",
        "other",
        "other",
    ]
    with capture_queries(using=["other"]) as only_other:
        Tag.objects.count()
        Tag.objects.using("other").count()
    assert [record.alias for record in only_other] == ["other"]


@pytest.mark.django_db
def test_nested_captures_record_each_query_once_into_every_open_log():
    with capture_queries() as outer:
        Tag.objects.count()
        with capture_queries() as inner:
            Tag.objects.count()
            assert connection.execute_wrappers.count(_record) == 1
        Tag.objects.count()
    assert len(outer) == 3
    assert len(inner) == 1
    assert inner[0] is outer[1]


@pytest.mark.django_db
def test_capture_leaves_django_exactly_as_it_was():
    before = wrappers()
    with capture_queries():
        assert all(_record in connections[alias].execute_wrappers for alias in connections)
    assert wrappers() == before

    def user_wrapper(execute, sql, params, many, context):
        return execute(sql, params, many, context)

    def fail_inside_a_capture():
        with capture_queries():
            Tag.objects.count()
            raise ZeroDivisionError

    with connection.execute_wrapper(user_wrapper):
        with pytest.raises(ZeroDivisionError):
            fail_inside_a_capture()
        assert connection.execute_wrappers == [*before[connection.alias], user_wrapper]
    assert wrappers() == before
    with capture_queries() as log:
        pass
    Tag.objects.count()
    assert len(log) == 0, "nothing is recorded after the capture closed"


@pytest.mark.django_db
def test_failed_queries_are_recorded_with_their_error():
    with capture_queries() as log, connection.cursor() as cursor, pytest.raises(DatabaseError):
        cursor.execute("SELECT * FROM no_such_table")
    assert log[-1].error is not None
    assert log[-1].tables == ("no_such_table",)


@pytest.mark.django_db
def test_executemany_with_a_generator_records_its_parameters():
    with capture_queries() as log, connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO publisher_tag (name) VALUES (%s)", ((name,) for name in "xyz")
        )
    (record,) = log
    assert record.many and record.params == [("x",), ("y",), ("z",)]
    assert Tag.objects.count() == 3, "the database still received every row"
    assert record.written_tables == ("publisher_tag",)


@pytest.mark.django_db(transaction=True)
def test_async_code_is_captured_with_its_own_call_site():
    Tag.objects.bulk_create([Tag(name="b"), Tag(name="a")])

    async def view_like():
        async with capture_queries() as log:
            count = await Tag.objects.acount()  # async-line
            names = [tag.name async for tag in Tag.objects.order_by("name")]
        return count, names, log

    count, names, log = async_to_sync(view_like)()
    assert (count, names) == (2, ["a", "b"])
    assert [record.tables for record in log] == [("publisher_tag",), ("publisher_tag",)]
    assert log[0].call_site == f"{THIS_FILE}:{line_of('# async-line')} in view_like"
    assert log[1].filename is not None and log[1].filename.endswith("test_capture.py")


def test_plain_with_inside_async_code_is_a_clear_error():
    async def misuse():
        with capture_queries():
            pass

    with pytest.raises(CaptureError, match="async with capture_queries"):
        asyncio.run(misuse())


@pytest.mark.django_db(transaction=True)
def test_async_view_through_the_middleware():
    Tag.objects.create(name="news")
    response = async_to_sync(AsyncClient().get)("/async/tags/")
    assert response.json() == {"names": ["news"], "count": 1}
    log = response.wsgi_request.dbtune_queries if hasattr(response, "wsgi_request") else None
    log = log or response.asgi_request.dbtune_queries
    tag_queries = [record for record in log if record.tables == ("publisher_tag",)]
    assert len(tag_queries) == 2
    assert {record.call_site.split(":")[0] for record in tag_queries} == {"tests/views.py"}


@pytest.mark.django_db
def test_other_threads_are_not_mixed_into_a_capture():
    def elsewhere():
        Tag.objects.using("default").exists()
        connections.close_all()

    with capture_queries() as log:
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
        Tag.objects.count()
    assert len(log) == 1


@pytest.mark.django_db
def test_call_sites_are_relative_to_the_configured_project_root(tmp_path):
    with override_settings(DBTUNE={"PROJECT_ROOT": str(tmp_path)}):
        with capture_queries() as log:
            Post.objects.count()
        assert log[0].call_site.startswith("/"), "outside the root, the path stays absolute"
    with capture_queries() as log:
        Business.objects.count()
    assert log[0].call_site.startswith(THIS_FILE)


@pytest.mark.django_db
def test_ignored_modules_are_skipped_when_finding_the_call_site():
    from tests import helpers

    with capture_queries() as log:
        helpers.count_tags()  # helper-call
    assert log[0].call_site.startswith("tests/helpers.py")
    with (
        override_settings(DBTUNE={"IGNORED_MODULES": ["tests.helpers"]}),
        capture_queries() as log,
    ):
        helpers.count_tags()  # ignored-helper-call
    assert log[0].call_site.startswith(f"{THIS_FILE}:{line_of('# ignored-helper-call')}")


@pytest.mark.django_db
def test_records_and_shapes_are_plain_json_data():
    import json

    with capture_queries() as log:
        Tag.objects.filter(name="x").exists()
    data = json.loads(json.dumps([record.as_dict() for record in log]))
    assert data[0]["tables"] == ["publisher_tag"] and data[0]["database"] == "default"
    assert json.loads(json.dumps([shape.as_dict() for shape in log.shapes()]))[0]["count"] == 1


@pytest.mark.django_db(transaction=True)
def test_two_captures_running_side_by_side_in_async_code_each_record_every_query():
    """Two requests served concurrently by one ASGI process share the thread their queries
    run on: the one that finishes first must not stop the other's recording."""
    Tag.objects.create(name="one")

    async def both():
        first_open, second_open, first_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def first():
            async with capture_queries() as log:
                first_open.set()
                await second_open.wait()
                await Tag.objects.acount()
            first_done.set()
            return log

        async def second():
            await first_open.wait()
            async with capture_queries() as log:
                second_open.set()
                await first_done.wait()
                await Tag.objects.filter(name="one").aexists()
            return log

        return await asyncio.gather(first(), second())

    first_log, second_log = async_to_sync(both)()
    assert len(first_log) == 1
    assert len(second_log) == 1, "the second capture kept recording after the first closed"
    assert all(_record not in wrappers for wrappers in wrappers().values())


def test_an_unknown_alias_is_an_error_that_leaves_every_connection_as_it_was():
    before = wrappers()
    with pytest.raises(ConnectionDoesNotExist), capture_queries(using=["default", "nope"]):
        pass
    assert wrappers() == before
    with capture_queries() as log:
        pass
    assert wrappers() == before, "a later capture takes its wrapper out again"
    assert list(log) == []
