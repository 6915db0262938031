"""Production mode: a sample of the requests runs the N+1 detector and the query capture, and
what they find is stored, counted, for every process; never a value of the site's users, and
never a failed request because of it."""

import json
from io import StringIO

import django
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_dbtune.conf import conf
from django_dbtune.models import ProductionFinding
from django_dbtune.production.store import Record, write
from publisher.models import Tag
from tests.shop.models import Author, Book

SECRET = "Jane Secret-Doe"
DJANGO_61 = django.VERSION >= (6, 1)


@pytest.fixture
def production(settings):
    settings.MIDDLEWARE = ["django_dbtune.middleware.ProductionMiddleware"]
    settings.DBTUNE = {"PRODUCTION": {"SAMPLE_RATE": 1.0, "FLUSH_SECONDS": 0}}
    return settings


@pytest.fixture
def books(db):
    for i in range(3):
        author = Author.objects.create(name=f"{SECRET} {i}")
        Book.objects.create(title=f"{SECRET} book {i}", author=author)


def _stored():
    return list(ProductionFinding.objects.order_by("kind", "id"))


def _no_user_data(rows):
    for row in rows:
        text = json.dumps([row.route, row.message, row.fix, row.call_site, row.plan])
        assert "Secret" not in text, text


def test_an_n_plus_one_page_is_stored_with_its_route_line_and_fix(production, books, client):
    assert client.get("/shop/books/").status_code == 200
    assert client.get("/shop/books/").status_code == 200
    [row] = [row for row in _stored() if row.kind == "n_plus_one"]
    assert row.route == "GET /shop/books/"
    assert row.seen == 2 and row.cost == 2 * 3  # 3 extra queries, twice
    assert "shop.Book.author" in row.message
    assert row.fix == '.select_related("author")'
    assert row.call_site.startswith("tests/")
    _no_user_data(_stored())
    # A machine reading the command's JSON gets the relation without parsing the message,
    # and the fix has its place: where the queryset was built, not only the reading line.
    [listed] = [r for r in json.loads(_findings()) if r["kind"] == "n_plus_one"]
    assert listed["relations"] == ["shop.Book.author"]
    assert listed["queryset_site"].startswith("tests/") and " in " in listed["queryset_site"]
    out = StringIO()
    call_command("dbtune_findings", stdout=out)
    assert f"queryset built at {listed['queryset_site']}" in out.getvalue()


def test_one_n_plus_one_is_one_row_whatever_the_number_of_rows_a_request_loads(
    production, books, client
):
    client.get("/shop/books/")  # 3 books: 3 extra queries
    author = Author.objects.create(name=f"{SECRET} 9")
    Book.objects.bulk_create([Book(title=f"t{i}", author=author) for i in range(4)])
    client.get("/shop/books/")  # 7 books
    [row] = [row for row in _stored() if row.kind == "n_plus_one"]
    assert (row.seen, row.cost) == (2, 10.0)
    assert row.message == "N+1 on shop.Book.author"
    out = StringIO()
    call_command("dbtune_findings", stdout=out)
    assert "seen 2 times, 10 extra queries in all (5 per request; last " in out.getvalue()


@pytest.mark.skipif(
    DJANGO_61,
    reason="needs Django 5.2 (6.1's admin joins nullable foreign keys): run with "
    "DBTUNE_PYTHON=python3.11",
)
def test_an_n_plus_ones_own_queries_are_not_also_a_repeated_query(production, db, client):
    """The admin's per-row loads of a nullable key come from Django's code (no line of the
    project's): the same editor on every row repeats one statement, which is the N+1."""
    from django.contrib.auth.models import User

    from tests.shop.models import Publisher

    publisher = Publisher.objects.create(name="P")
    editor = Author.objects.create(name=f"{SECRET} editor")
    author = Author.objects.create(name=f"{SECRET} author", publisher=publisher)
    Book.objects.bulk_create([Book(title=f"t{i}", author=author, editor=editor) for i in range(8)])
    production.ROOT_URLCONF = "config.urls"
    production.MIDDLEWARE = [
        "django_dbtune.middleware.ProductionMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    client.force_login(User.objects.create_superuser("staff", "staff@example.com", "pw"))
    assert client.get("/admin/shop/book/").status_code == 200
    kinds = [row.kind for row in _stored()]
    assert "n_plus_one" in kinds
    assert "repeated_query" not in kinds, [(r.kind, r.message, r.call_site) for r in _stored()]
    assert not [row for row in _stored() if row.call_site.startswith(":0")]


def test_a_cms_page_on_a_catch_all_pattern_is_named_by_its_template(production, books, client):
    # The first candidate, shop/Jane-Secret-Doe.html, does not exist: the one rendered is named.
    assert client.get("/pages/Jane-Secret-Doe/").status_code == 200
    [row] = [row for row in _stored() if row.kind == "n_plus_one"]
    assert row.route == r"GET /^pages/((?:[\w\-]+/)*)$ [shop/book_list.html]"
    # A template named after the path is not named: the path may be a user's.
    ProductionFinding.objects.all().delete()
    assert client.get("/pages/book_list/").status_code == 200
    [row] = [row for row in _stored() if row.kind == "n_plus_one"]
    assert row.route == r"GET /^pages/((?:[\w\-]+/)*)$"
    write([Record("n_plus_one", "GET /a/<int:pk>/", "N+1 on shop.Book.author", cost=1)])
    out = StringIO()
    call_command("dbtune_findings", stdout=out)
    text = out.getvalue()
    assert r"dbtune_nplusone <a path matching /^pages/((?:[\w\-]+/)*)$>" in text
    assert "dbtune_nplusone <a path of /a/<int:pk>/>" in text
    _no_user_data(_stored())


def test_a_route_that_is_not_a_catch_all_names_no_template(production, books, client):
    client.get("/shop/books/generic/")  # a ListView: a TemplateResponse on a plain pattern
    assert {row.route for row in _stored()} == {"GET /shop/books/generic/"}


def test_repeated_and_slow_queries_keep_shapes_never_values(production, db, client, caplog):
    production.DBTUNE = {
        "PRODUCTION": {
            "SAMPLE_RATE": 1.0,
            "FLUSH_SECONDS": 0,
            "SLOW_QUERY_MS": 0.001,
            "REPEATED_QUERIES": 3,
        }
    }
    caplog.set_level("INFO", logger="django_dbtune.production")
    Tag.objects.create(name=SECRET)
    response = client.get(f"/tags/{SECRET}/count/")
    assert response.status_code == 200
    rows = _stored()
    [repeated] = [row for row in rows if row.kind == "repeated_query"]
    assert repeated.route == "GET /tags/<str:name>/count/"  # the pattern, not the path
    assert "ran several times with the same values" in repeated.message
    assert "publisher_tag" in repeated.message and "?" in repeated.message
    assert repeated.cost == 2
    slow = [row for row in rows if row.kind == "slow_query"]
    assert slow and all("publisher_tag" in row.plan for row in slow)
    _no_user_data(rows)
    # One JSON object per finding, on a logger the site can route.
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("production")]
    assert {"repeated_query", "slow_query"} <= {entry["kind"] for entry in logged}
    assert not any(SECRET in r.getMessage() for r in caplog.records)


def test_a_slow_query_is_one_finding_whatever_it_took(production, db, client):
    production.DBTUNE = {"PRODUCTION": {**production.DBTUNE["PRODUCTION"], "SLOW_QUERY_MS": 1e-6}}
    Tag.objects.create(name=SECRET)
    client.get(f"/tags/{SECRET}/count/")
    once = {row.message: row.cost for row in _stored() if row.kind == "slow_query"}
    client.get(f"/tags/{SECRET}/count/")  # the same queries, other durations
    twice = [row for row in _stored() if row.kind == "slow_query"]
    assert once and {row.message for row in twice} == set(once)
    assert all(row.seen == 2 and row.cost > once[row.message] for row in twice)


def test_unsampled_requests_run_nothing(production, books, client):
    production.DBTUNE = {"PRODUCTION": {"SAMPLE_RATE": 0.0, "FLUSH_SECONDS": 0}}
    client.get("/shop/books/")
    assert _stored() == []
    with override_settings(DBTUNE={}):  # off by default
        client.get("/shop/books/")
    assert _stored() == []


class _Nowhere:
    """A router sending the findings' table to a database that does not exist."""

    def db_for_write(self, model, **hints):
        return "nowhere" if model is ProductionFinding else None


def test_a_store_that_fails_never_fails_the_request(production, books, client, caplog):
    production.DATABASE_ROUTERS = [_Nowhere()]
    assert client.get("/shop/books/").status_code == 200
    assert client.get("/shop/books/").status_code == 200
    failures = [r for r in caplog.records if "Production mode failed (" in r.message]
    assert len(failures) == 1  # logged once, not per request
    assert "left a batch unrecorded" in failures[0].message
    assert "N+1 detector" not in failures[0].message  # (the store failed, not the detector)


def test_a_wrong_setting_turns_production_mode_off_and_never_fails_a_request(
    production, books, client, caplog
):
    """gunicorn runs no system checks: the first the site hears of a mistake in
    DBTUNE["PRODUCTION"] is a request, which must still be served."""
    production.DBTUNE = {"PRODUCTION": {"SAMPLE_RATE": 1.0, "SLOW_QUERY_MS": 0}}
    assert client.get("/shop/books/").status_code == 200
    assert client.get("/shop/books/").status_code == 200
    failures = [r for r in caplog.records if "Production mode failed (" in r.message]
    assert len(failures) == 1  # logged once, not per request
    assert "SLOW_QUERY_MS" in failures[0].message
    assert "is off until DBTUNE is fixed" in failures[0].message
    assert not ProductionFinding.objects.exists()


def test_reproducing_a_page_locally_adds_nothing_to_productions_counts(production, books):
    """The reproduce command runs the page inside its own detection, with the site's
    settings: production mode leaves that request to it."""
    call_command("dbtune_nplusone", "/shop/books/", stdout=StringIO(), stderr=StringIO())
    assert not ProductionFinding.objects.exists()


def test_a_full_batch_drops_and_says_how_many(production, books, client, caplog):
    production.DBTUNE = {
        "PRODUCTION": {
            "SAMPLE_RATE": 1.0,
            "FLUSH_SECONDS": 3600,
            "BATCH": 1,
            "SLOW_QUERY_MS": 0.001,
        }
    }
    client.get("/shop/books/")  # an N+1 and slow queries: the first kept, the rest dropped
    [row] = _stored()  # a full batch is written at once
    assert row.kind == "n_plus_one"
    assert any("dropped" in r.getMessage() and "BATCH" in r.getMessage() for r in caplog.records)


def test_two_processes_add_up_in_one_row(db):
    record = Record(kind="n_plus_one", route="GET /x/", message="N+1 on a.B.c", cost=4.0)
    write([record])
    write([record])  # another process's batch: the same finding
    [row] = _stored()
    assert (row.seen, row.cost) == (2, 8.0)


def test_the_command_lists_them_most_costly_first(db):
    write([Record("slow_query", "GET /a/", "A query over SLOW_QUERY_MS: SELECT ?", cost=900)])
    write([Record("n_plus_one", "GET /b/", "N+1 on shop.Book.author", fix="f", cost=3)] * 1)
    out = StringIO()
    call_command("dbtune_findings", stdout=out)
    text = out.getvalue()
    assert text.index("slow_query on GET /a/") < text.index("n_plus_one on GET /b/")
    # A command to paste as it is; whether the page needs a login is said beside it.
    reproduce = "reproduce: manage.py dbtune_nplusone /b/  (add --user USERNAME for a page"
    assert reproduce in text
    out = StringIO()
    call_command("dbtune_findings", "--format", "json", "--kind", "n_plus_one", stdout=out)
    [entry] = json.loads(out.getvalue())
    assert entry["kind"] == "n_plus_one" and entry["seen"] == 1
    assert entry["reproduce"] == "manage.py dbtune_nplusone /b/"
    with pytest.raises(SystemExit) as exit:
        call_command("dbtune_findings", "--check", stdout=StringIO())
    assert exit.value.code == 1


def test_a_fix_production_never_tried_is_called_a_suggestion_everywhere(db, client, tmp_path):
    from django.contrib.auth.models import User

    fix = '.select_related("author")'
    write([Record("n_plus_one", "GET /b/", "N+1 on shop.Book.author", fix=fix, cost=3)])
    write([Record("n_plus_one", "POST /c/", "N+1 on shop.Book.author", fix=fix, cost=2)])
    out = StringIO()
    call_command("dbtune_findings", stdout=out)
    text = out.getvalue()
    assert "  fix:" not in text
    assert f"suggested fix (not tried: the reproduce command proves it): {fix}" in text
    assert f"suggested fix (not tried): {fix}" in text  # a POST: nothing to reproduce
    out = StringIO()
    call_command("dbtune_findings", "--format", "json", stdout=out)
    assert {entry["fix_proven"] for entry in json.loads(out.getvalue())} == {False}
    output = tmp_path / "report.html"
    call_command("dbtune_report", "shop", "--output", str(output), "--findings", stdout=StringIO())
    html = output.read_text()
    assert "Suggested fix (not tried: the reproduce command proves it)" in html
    assert ">Fix:" not in html
    with override_settings(ROOT_URLCONF="config.urls"):
        client.force_login(User.objects.create_superuser("staff", "staff@example.com", "pw"))
        row = ProductionFinding.objects.get(route="GET /b/")
        page = client.get(f"/admin/django_dbtune/productionfinding/{row.pk}/change/")
    assert "Suggested fix (not tried)" in page.content.decode()


def test_an_unsampled_request_runs_with_djangos_objects_as_they_are(production, books, client):
    from django_dbtune.nplusone import patches

    client.get("/shop/books/")  # sampled
    assert not patches.installed()
    production.DBTUNE = {"PRODUCTION": {"SAMPLE_RATE": 0.0}}
    client.get("/shop/books/")
    assert not patches.installed()


def _django_redis():
    from django.core.cache import cache

    if not hasattr(cache, "iter_keys"):
        pytest.skip("needs django-redis as the default cache: run with DBTUNE_CACHE=redis")
    cache.delete_pattern("dbtune:production:*")
    return cache


def test_in_the_cache_every_process_adds_to_the_same_finding(production, books, client):
    cache = _django_redis()
    store = {"SAMPLE_RATE": 1.0, "FLUSH_SECONDS": 0, "STORE": "cache", "CACHE": "default"}
    production.DBTUNE = {"PRODUCTION": store}
    try:
        client.get("/shop/books/")
        client.get("/shop/books/")
        # Another process's batch of the same finding: its counts add up in the same keys.
        [row] = [r for r in json.loads(_findings()) if r["kind"] == "n_plus_one"]
        other = Record(
            kind="n_plus_one",
            route=row["route"],
            message=row["message"],
            fix=row["fix"],
            call_site=row["call_site"],
            cost=3.0,
        )
        write([other], conf.PRODUCTION)
        [row] = [r for r in json.loads(_findings()) if r["kind"] == "n_plus_one"]
        assert (row["seen"], row["cost"]) == (3, 9.0)
        assert row["fix"] == '.select_related("author")'
        assert row["relations"] == ["shop.Book.author"]
        assert not ProductionFinding.objects.exists()  # nothing went to the table
    finally:
        cache.delete_pattern("dbtune:production:*")


def _findings():
    out = StringIO()
    call_command("dbtune_findings", "--format", "json", stdout=out)
    return out.getvalue()


def test_a_cache_that_cannot_list_its_keys_is_a_clear_error(settings):
    settings.CACHES = {
        **settings.CACHES,
        "plain": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    settings.DBTUNE = {"PRODUCTION": {"STORE": "cache", "CACHE": "plain"}}
    with pytest.raises(CommandError, match=r"cannot list its keys.*django-redis"):
        call_command("dbtune_findings", stdout=StringIO())


def test_a_task_or_command_is_sampled_under_its_own_name(production, books):
    from django_dbtune.production.sampler import production_sample

    @production_sample("task list books")
    def list_books():
        return [book.author.name for book in Book.objects.order_by("id")]

    assert len(list_books()) == 3
    assert len(list_books()) == 3
    [row] = [row for row in _stored() if row.kind == "n_plus_one"]
    assert (row.route, row.seen, row.fix) == ("task list books", 2, '.select_related("author")')
    _no_user_data(_stored())


def test_staff_see_them_in_the_admin(db, client, settings):
    from django.contrib.auth.models import User

    settings.ROOT_URLCONF = "config.urls"  # the example project's, with the admin
    write([Record("n_plus_one", "GET /b/", "N+1 on shop.Book.author", fix="f", cost=3)])
    client.force_login(User.objects.create_superuser("staff", "staff@example.com", "pw"))
    page = client.get("/admin/django_dbtune/productionfinding/")
    assert page.status_code == 200
    assert "N+1 on shop.Book.author" in page.content.decode()
    assert client.get("/admin/django_dbtune/productionfinding/add/").status_code == 403
    [row] = ProductionFinding.objects.all()
    detail = client.get(f"/admin/django_dbtune/productionfinding/{row.pk}/change/")
    assert "manage.py dbtune_nplusone /b/" in detail.content.decode()
    # A mistake in the setting (which gunicorn runs no check for) is no 500 for staff.
    settings.DBTUNE = {"PRODUCTION": {"STORE": "redis"}}
    page = client.get("/admin/django_dbtune/productionfinding/")
    assert page.status_code == 200 and "N+1 on shop.Book.author" in page.content.decode()


def test_each_finding_is_an_event_of_the_current_opentelemetry_span(production, books, client):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    with provider.get_tracer("tests").start_as_current_span("GET /shop/books/"):
        client.get("/shop/books/")
    [span] = exported.get_finished_spans()
    [event] = [e for e in span.events if e.attributes["dbtune.kind"] == "n_plus_one"]
    assert event.name == "dbtune.finding"
    assert event.attributes["dbtune.fix"] == '.select_related("author")'
    assert tuple(event.attributes["dbtune.relations"]) == ("shop.Book.author",)
    assert event.attributes["dbtune.route"] == "GET /shop/books/"


def test_the_report_adds_them(db, tmp_path):
    write([Record("n_plus_one", "GET /b/", "N+1 on shop.Book.author", fix=".x()", cost=3)])
    output = tmp_path / "report.html"
    call_command("dbtune_report", "shop", "--output", str(output), "--findings", stdout=StringIO())
    html = output.read_text()
    assert "Found in production" in html and "N+1 on shop.Book.author" in html
    assert "<code>manage.py dbtune_nplusone /b/</code> (add --user USERNAME" in html


@pytest.mark.django_db(transaction=True)
def test_an_async_request_is_sampled_under_asgi(production):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    for i in range(3):
        Book.objects.create(title=f"t{i}", author=Author.objects.create(name=f"{SECRET} {i}"))
    response = async_to_sync(AsyncClient().get)("/shop/books/async/")
    assert response.status_code == 200
    [row] = [row for row in _stored() if row.kind == "n_plus_one"]
    assert row.route == "GET /shop/books/async/"
    assert row.call_site.startswith("tests/shop/views.py:")
    _no_user_data(_stored())


def test_staff_see_the_cache_stores_findings_in_the_admin(db, client, settings):
    from django.contrib.auth.models import User

    cache = _django_redis()
    settings.ROOT_URLCONF = "config.urls"
    settings.DBTUNE = {"PRODUCTION": {"STORE": "cache"}}
    try:
        write(
            [Record("slow_query", "GET /a/", "A query over SLOW_QUERY_MS: SELECT 1", cost=900)],
            conf.PRODUCTION,
        )
        client.force_login(User.objects.create_superuser("staff", "staff@example.com", "pw"))
        page = client.get("/admin/django_dbtune/productionfinding/")
        assert page.status_code == 200
        assert "A query over SLOW_QUERY_MS: SELECT 1" in page.content.decode()
    finally:
        cache.delete_pattern("dbtune:production:*")
