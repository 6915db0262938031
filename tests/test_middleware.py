import time

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client, override_settings

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


@pytest.mark.django_db
def test_a_workload_file_gets_the_last_requests_without_another_request(
    client, settings, tmp_path, monkeypatch
):
    """A burst of requests, then nothing: a timer writes what the burst left, so a server
    stopped without running exit handlers (SIGTERM to runserver) does not lose it."""
    from django_dbtune import workload

    Tag.objects.create(name="a")
    path = tmp_path / "site.jsonl"
    settings.DBTUNE = {"WORKLOAD_FILE": str(path)}
    monkeypatch.setattr(workload, "FLUSH_SECONDS", 0.3)
    workload._flushed_at = 0.0
    for _ in range(3):
        client.get("/sync/tags/")
    assert [s.calls for s in workload.read(path)] == [1]  # the first, at once
    deadline = time.monotonic() + 5
    while [s.calls for s in workload.read(path)] != [3] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [s.calls for s in workload.read(path)] == [3]  # the other two, by the timer


@pytest.mark.django_db
def test_a_workload_file_that_cannot_be_written_never_fails_a_request(
    client, settings, tmp_path, monkeypatch, caplog
):
    from django_dbtune import workload

    Tag.objects.create(name="a")
    blocker = tmp_path / "taken"
    blocker.write_text("a file where a folder should be")
    path = blocker / "site.jsonl"
    settings.DBTUNE = {"WORKLOAD_FILE": str(path)}
    monkeypatch.setattr(workload, "FLUSH_SECONDS", 0.0)  # every request flushes
    with caplog.at_level("ERROR", logger="django_dbtune.workload"):
        statuses = [client.get("/sync/tags/").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    [logged] = caplog.records  # once, not once per request
    assert str(path) in logged.getMessage() and "WORKLOAD_FILE" in logged.getMessage()
    # The shapes were kept: once the file can be written, nothing recorded is lost.
    blocker.unlink()
    workload.process_recorder().flush()
    (shape,) = workload.read(path)
    assert shape.calls == 3


def test_the_workload_recorder_works_where_there_is_no_fcntl(tmp_path):
    # Windows has no fcntl: the middleware must still import, and a flush still writes.
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import django; from django.conf import settings; settings.configure(); django.setup()\n"
        "import django_dbtune.middleware\n"
        "from django_dbtune.workload import Recorder, Shape\n"
        f"recorder = Recorder({str(tmp_path / 'w.jsonl')!r})\n"
        "recorder.shapes[('default', 'SELECT 1')] = Shape('default', 'sqlite', 'SELECT 1', "
        "'select', [], calls=1)\n"
        "print(recorder.flush())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert "SELECT 1" in (tmp_path / "w.jsonl").read_text()


def test_a_workload_path_python_refuses_is_logged_not_raised(tmp_path, caplog):
    from django_dbtune.workload import Recorder, Shape

    recorder = Recorder(str(tmp_path / "bad\x00name.jsonl"))
    recorder.shapes[("default", "SELECT 1")] = Shape("default", "sqlite", "SELECT 1", "select", [])
    with caplog.at_level("ERROR", logger="django_dbtune.workload"):
        assert recorder.flush_quietly() == 0
    assert len(caplog.records) == 1 and len(recorder.shapes) == 1


WRONG_SETTINGS = [{"ENABLED": 0}, {"NPLUSONE_THRESHOLD": 1}, [("ENABLED", True)]]


@pytest.mark.parametrize("wrong", WRONG_SETTINGS)
@pytest.mark.django_db(transaction=True)
def test_a_wrong_setting_lets_every_request_through_and_says_so_once(settings, wrong, caplog):
    """A server runs no system checks: with a wrong ENABLED, a DBTUNE that is not a dict, or
    an N+1 threshold of 1, every request answered 500 (with the threshold, after the view
    had run and committed its writes)."""
    settings.MIDDLEWARE = ["django_dbtune.middleware.NPlusOneMiddleware", *settings.MIDDLEWARE]
    Tag.objects.create(name="a")
    settings.DBTUNE = wrong
    with caplog.at_level("ERROR", logger="django_dbtune"):
        for _ in range(2):
            assert Client().get("/sync/tags/").json() == {"names": ["a"]}
            answered = async_to_sync(AsyncClient().get)("/async/tags/")
            assert answered.status_code == 200
    told = [r for r in caplog.records if "lets requests through" in r.getMessage()]
    assert len(told) == 1, [r.getMessage() for r in caplog.records]
