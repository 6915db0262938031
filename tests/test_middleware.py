import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, override_settings

from publisher.models import Tag


@pytest.mark.django_db
def test_each_request_gets_its_own_log(client):
    Tag.objects.create(name="a")
    first = client.get("/sync/tags/")
    second = client.get("/sync/tags/")
    assert first.json() == {"names": ["a"]}
    first_log = first.wsgi_request.dbtune_queries
    second_log = second.wsgi_request.dbtune_queries
    assert first_log is not second_log
    tag_queries = [record for record in first_log if record.tables == ("publisher_tag",)]
    assert len(tag_queries) == 1
    assert tag_queries[0].call_site.startswith("tests/views.py:")


@pytest.mark.django_db
def test_disabled_middleware_leaves_requests_alone(client):
    with override_settings(DBTUNE={"ENABLED": False}):
        response = client.get("/sync/tags/")
    assert not hasattr(response.wsgi_request, "dbtune_queries")


@pytest.mark.django_db(transaction=True)
def test_disabled_middleware_under_asgi():
    with override_settings(DBTUNE={"ENABLED": False}):
        response = async_to_sync(AsyncClient().get)("/async/tags/")
    assert response.status_code == 200
    assert not hasattr(response.asgi_request, "dbtune_queries")


@pytest.mark.django_db
def test_a_workload_file_records_every_request(client, settings, tmp_path):
    from django_dbtune import workload

    Tag.objects.create(name="a")
    path = tmp_path / "site.jsonl"
    settings.DBTUNE = {"WORKLOAD_FILE": str(path)}
    workload._flushed_at = 0.0  # the first request flushes at once
    client.get("/sync/tags/")
    assert [s.calls for s in workload.read(path)] == [1]
    client.get("/sync/tags/")
    workload.process_recorder().flush()  # as at exit
    (shape,) = workload.read(path)
    assert shape.calls == 2 and shape.orm.model == "publisher.Tag"
    assert list(shape.call_sites) == ["tests/views.py:15 in sync_tags"]
