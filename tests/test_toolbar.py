"""The django-debug-toolbar panels, in the toolbar's own style: a request through the
toolbar's panel chain, the stats as the store keeps them, each panel's content rendered."""

import html
import json
from contextlib import contextmanager
from html.parser import HTMLParser

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from django.http import HttpResponse
from django.test import AsyncRequestFactory, RequestFactory

pytest.importorskip(
    "debug_toolbar",
    reason="needs django-debug-toolbar: install it with pip install -e '.[toolbar]'",
)

from debug_toolbar.toolbar import DebugToolbar

from django_dbtune.cache import invalidate
from django_dbtune.toolbar import IndexesPanel, NPlusOnePanel, QueryCachePanel
from tests.shop.models import Author, Book

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def unhurried(monkeypatch):
    """The indexes panel's EXPLAIN budget, long enough that a busy machine leaves no read
    of these small pages unchecked (the budget's own test sets it back)."""
    from django_dbtune.advisor import request_reads

    monkeypatch.setattr(request_reads, "EXPLAIN_BUDGET", 30)


@pytest.fixture
def shop():
    for i in range(3):
        author = Author.objects.create(name=f"A{i}")
        Book.objects.create(title=f"B{i}", author=author)


def n_plus_one_view(request):
    titles = [f"{book.title} by {book.author.name}" for book in Book.objects.all()]
    return HttpResponse("<html><body>" + ", ".join(titles) + "</body></html>")


def run(panel_class, view, request=None):
    """The request through one panel of a toolbar, as DebugToolbarMiddleware runs it."""
    request = request or RequestFactory().get("/books/")
    toolbar = DebugToolbar(request, view)
    panel = panel_class(toolbar, view)
    panel.enable_instrumentation()
    try:
        response = panel.process_request(request)
    finally:
        panel.disable_instrumentation()
    panel.generate_stats(request, response)
    json.dumps(panel.get_stats())  # plain JSON: any store can keep it
    assert toolbar.store.panel(toolbar.request_id, panel.panel_id) == panel.get_stats()
    return panel


class _Balanced(HTMLParser):
    VOID = {"br", "hr", "img", "input", "meta", "link"}

    def __init__(self):
        super().__init__()
        self.open = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()


def valid_html(content):
    parser = _Balanced()
    parser.feed(content)
    parser.close()
    assert parser.open == [], f"unclosed: {parser.open}"
    return content


def test_the_n_plus_one_panel_names_the_relation_and_the_fix(shop):
    panel = run(NPlusOnePanel, n_plus_one_view)
    stats = panel.get_stats()
    assert stats["n_plus_one"] == 1 and stats["extra_queries"] == 3
    assert panel.nav_subtitle == "1 N+1"
    content = valid_html(panel.content)
    assert "shop.Book.author" in content
    assert ".select_related(&quot;author&quot;)" in content
    assert "tests/test_toolbar.py:" in content  # the line that triggered the loads
    assert "<style>" in content and "djdbtune-" in content  # styles ship with the panel


def test_the_n_plus_one_panel_proves_the_fix_by_running_the_request_again(shop):
    from django_dbtune.nplusone.proof import forget_proofs

    forget_proofs()
    panel = run(NPlusOnePanel, n_plus_one_view)
    [finding] = panel.get_stats()["findings"]
    assert finding["proof"]["verdict"] == "proven"
    assert "proven: re-run with the fix, 4 -&gt; 1 queries" in valid_html(panel.content)
    forget_proofs()


def unused_prefetch_view(request):
    authors = list(Author.objects.prefetch_related("books"))  # the books are never read
    return HttpResponse(", ".join(author.name for author in authors))


def test_an_unused_eager_load_adds_no_extra_query_and_its_note_follows_its_proof(shop):
    """It was counted as an extra query, and a proven removal kept the "Unproven" note
    beside "proven: re-run with the fix"."""
    from django_dbtune.nplusone.proof import PROVEN_UNUSED, forget_proofs

    forget_proofs()
    panel = run(NPlusOnePanel, unused_prefetch_view)
    stats = panel.get_stats()
    assert (stats["n_plus_one"], stats["unused"], stats["extra_queries"]) == (0, 1, 0)
    content = valid_html(panel.content)
    assert "0 N+1 findings, 1 unused eager load." in content
    [finding] = stats["findings"]
    assert finding["proof"]["verdict"] == "proven"
    assert finding["advice"] == PROVEN_UNUSED and "Unproven" not in content
    again = run(NPlusOnePanel, unused_prefetch_view)  # proven once per process: kept
    [finding] = again.get_stats()["findings"]
    assert finding["advice"] == PROVEN_UNUSED
    forget_proofs()


def test_a_proof_from_an_earlier_request_says_so(shop):
    """Proven once per process: on a later request with more rows the page's counts grew,
    and the old 4 -> 1 stood beside them as if measured now."""
    from django_dbtune.nplusone.proof import forget_proofs

    forget_proofs()
    first = labelled(run(NPlusOnePanel, n_plus_one_view).content).values["Proof"]
    assert "earlier request" not in first
    author = Author.objects.create(name="A9")
    Book.objects.create(title="B9", author=author)
    later = run(NPlusOnePanel, n_plus_one_view)
    assert later.get_stats()["extra_queries"] == 4
    proof = labelled(later.content).values["Proof"]
    assert proof.startswith("proven: re-run with the fix, 4 -> 1 queries")
    assert proof.endswith("(on an earlier request of this page: its counts)")
    forget_proofs()


def test_the_panels_chained_under_asgi(shop):
    async def view(request):
        return await sync_to_async(n_plus_one_view)(request)

    request = AsyncRequestFactory().get("/books/")
    toolbar = DebugToolbar(request, view)
    # Chained as the toolbar chains them: each panel's get_response is the next panel's
    # plain process_request, which returns a coroutine under ASGI.
    cache_panel = QueryCachePanel(toolbar, view)
    indexes = IndexesPanel(toolbar, cache_panel.process_request)
    panel = NPlusOnePanel(toolbar, indexes.process_request)

    async def through_the_panels():
        return await panel.process_request(request)

    response = async_to_sync(through_the_panels)()
    assert response.status_code == 200
    for each in (panel, indexes, cache_panel):
        each.generate_stats(request, response)
    assert panel.get_stats()["n_plus_one"] == 1
    assert indexes.get_stats()["checked"] >= 1


def test_the_indexes_panel_suggests_the_index_a_filter_lacks(shop):
    def view(request):
        list(Book.objects.filter(title="B1"))  # no index leads with title
        list(Book.objects.filter(author_id=1))  # the foreign key's index does
        return HttpResponse("ok")

    line = view.__code__.co_firstlineno + 1

    panel = run(IndexesPanel, view)
    stats = panel.get_stats()
    assert [q["fields"] for q in stats["queries"]] == [["title"]]
    assert stats["checked"] == 2
    query = stats["queries"][0]
    assert query["index"].startswith('models.Index(fields=["title"], name="shop_book_title_')
    assert query["call_sites"] == [f"tests/test_toolbar.py:{line} in view"]
    assert query["plan"]  # the EXPLAIN output, run after the response
    assert panel.nav_subtitle == "1 unindexed read"
    content = valid_html(panel.content)
    assert "no index leads with (title)" in content


def test_the_indexes_panel_says_how_many_rows_the_table_holds(shop, settings):
    def view(request):
        list(Book.objects.filter(title="B1"))
        return HttpResponse("ok")

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE shop_book")  # an estimate another test left must not count
    panel = run(IndexesPanel, view)
    [query] = panel.get_stats()["queries"]
    said = "about 3 rows (PostgreSQL's estimate)" if connection.vendor == "postgresql" else None
    assert (query["table_rows"], query["small"]) == (said or "3 rows (counted)", True)
    content = html.unescape(valid_html(panel.content))
    assert f"shop_book holds {query['table_rows']}: fewer rows than" in content
    settings.DBTUNE = {**settings.DBTUNE, "INDEX_SMALL_TABLE_ROWS": 0}
    [query] = run(IndexesPanel, view).get_stats()["queries"]
    assert (query["table_rows"], query["small"]) == (None, False)
    assert "INDEX_SMALL_TABLE_ROWS" not in valid_html(run(IndexesPanel, view).content)


def test_the_indexes_panel_reads_sorts_and_inherited_columns_without_failing(shop):
    from django.db.models import Count

    from tests.shop.models import Poster

    def view(request):
        list(Author.objects.annotate(n=Count("books")).order_by("-n", "name"))
        list(Poster.objects.filter(name="P").order_by("-kind"))  # Item's columns
        return HttpResponse("ok")

    stats = run(IndexesPanel, view).get_stats()
    assert stats["checked"] == 2
    assert all(q["table"] != "shop_poster" for q in stats["queries"]), stats["queries"]


def test_the_indexes_panel_reads_a_table_a_proxy_shares(shop):
    from tests.testapp.models import Shelf

    def view(request):
        list(Shelf.objects.filter(label="L"))  # StaffShelf, a proxy, has this table too
        return HttpResponse("ok")

    stats = run(IndexesPanel, view).get_stats()
    assert [(q["model"], q["fields"]) for q in stats["queries"]] == [("testapp.Shelf", ["label"])]


@contextmanager
def made_by_hand(*statements):
    """Indexes only the database has, as a person or a RunSQL made them; dropped after
    (these tests commit)."""
    names = [sql.split()[2] for sql in statements]
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute(f"DROP INDEX {name}")


def unindexed(view):
    stats = run(IndexesPanel, view).get_stats()
    assert stats["left_out"] == 0
    return [(q["model"], q["fields"]) for q in stats["queries"]]


@pytest.mark.usefixtures("partial_indexes")
def test_the_indexes_panel_never_suggests_an_index_the_table_has(shop):
    """Partial ones included: the declared (sponsor) WHERE title = 'x' serves a read that
    compares title to 'x' (a parameter), and one made by hand with IS NULL serves a read
    whose SQL says IS NULL."""
    from tests.testapp.models import Book as Catalogued

    def view(request):
        list(Catalogued.objects.filter(sponsor_id=1, title="x"))
        list(Book.objects.filter(editor=None).order_by("title"))
        return HttpResponse("ok")

    with made_by_hand("CREATE INDEX book_unedited ON shop_book (title) WHERE editor_id IS NULL"):
        assert unindexed(view) == []


@pytest.mark.usefixtures("partial_indexes")
def test_the_indexes_panel_counts_a_partial_index_for_the_reads_it_holds_only(shop):
    from tests.testapp.models import Shelf

    def view(request):
        list(Book.objects.filter(title="B1"))  # any summary
        list(Shelf.objects.filter(is_public=True).order_by("label"))
        list(Shelf.objects.filter(is_public=False).order_by("label"))
        return HttpResponse("ok")

    with made_by_hand(
        "CREATE INDEX book_some_titles ON shop_book (title) WHERE summary = 'x'",
        "CREATE INDEX shelf_public_label ON testapp_shelf (label) WHERE is_public",
    ):
        assert unindexed(view) == [
            ("shop.Book", ["title"]),
            ("testapp.Shelf", ["is_public", "label"]),
        ]


def test_the_indexes_panel_gives_a_read_without_order_by_no_meta_ordering(db):
    """get() drops Meta.ordering: its SQL has no ORDER BY, and the index it needs is its
    filter alone; the list, sorted by Meta.ordering, gets the ordering's column too."""
    from tests.shop.models import Item

    Item.objects.create(name="n", kind="k")

    def view(request):
        Item.objects.get(name="n")
        list(Item.objects.filter(name="n"))
        return HttpResponse("ok")

    assert unindexed(view) == [("shop.Item", ["name"]), ("shop.Item", ["name", "kind"])]


def test_the_query_cache_panel_counts_hits_misses_and_invalidations(shop, settings):
    settings.DBTUNE = {"CACHE_ENABLED": True}

    def view(request):
        for _ in range(3):
            list(Book.cached_objects.cached())
        Book.objects.filter(title="B0").update(title="changed")
        list(Book.cached_objects.cached())
        invalidate(Author)
        return HttpResponse("ok")

    panel = run(QueryCachePanel, view)
    stats = panel.get_stats()
    assert (stats["hits"], stats["misses"], stats["stores"]) == (2, 2, 2)
    assert stats["bytes_stored"] > 0
    first, *by_hand = stats["invalidations"]
    assert first["tables"] == ["shop_book"]
    assert by_hand and all(i["tables"] == ["shop_author"] for i in by_hand)
    assert first["via"].startswith("UPDATE")
    assert panel.nav_subtitle == "2 hits, 2 misses"
    content = valid_html(panel.content)
    assert "shop.Book (rows)" in content and "invalidate()" in content


def test_panels_with_nothing_to_show_say_so(db):
    for panel_class, text in (
        (NPlusOnePanel, "No N+1 queries"),
        (IndexesPanel, "Every read of this request"),
        (QueryCachePanel, "was not used"),
    ):
        panel = run(panel_class, lambda request: HttpResponse("ok"))
        assert text in valid_html(panel.content)


def test_with_the_master_switch_off_the_panels_record_nothing_and_say_why(shop, settings):
    settings.DBTUNE = {"ENABLED": False, "CACHE_ENABLED": True}
    for panel_class in (NPlusOnePanel, IndexesPanel, QueryCachePanel):
        panel = run(panel_class, n_plus_one_view)
        assert panel.get_stats() == {"off": True}
        assert panel.nav_subtitle == "off"
        assert 'DBTUNE["ENABLED"]' in valid_html(panel.content).replace("&quot;", '"')


@pytest.fixture
def history_table(request):
    """The DatabaseStore's table: the toolbar hides its migration unless that store is
    configured at start-up, so the test makes the table itself."""
    if "DatabaseStore" not in request.node.callspec.params["store"]:
        yield
        return
    from debug_toolbar.models import HistoryEntry
    from django.db import connection

    with connection.schema_editor() as editor:
        editor.create_model(HistoryEntry)
    yield
    with connection.schema_editor() as editor:
        editor.delete_model(HistoryEntry)


@pytest.mark.parametrize(
    "store",
    [
        "debug_toolbar.store.MemoryStore",
        "debug_toolbar.store.DatabaseStore",
        "debug_toolbar.store.CacheStore",
    ],
)
def test_every_toolbar_store_keeps_what_the_panels_show(shop, settings, store, history_table):
    settings.DEBUG_TOOLBAR_CONFIG = {"TOOLBAR_STORE_CLASS": store}
    settings.DBTUNE = {"CACHE_ENABLED": True}

    def view(request):
        list(Book.cached_objects.cached())
        return n_plus_one_view(request)

    for panel_class in (NPlusOnePanel, IndexesPanel, QueryCachePanel):
        panel = run(panel_class, view)  # compares the store's copy with the panel's stats
        assert panel.toolbar.store.__name__ == store.rsplit(".", 1)[1]
        # As the history panel shows an earlier request: from the store alone.
        reloaded = DebugToolbar.fetch(panel.toolbar.request_id, panel.panel_id)
        again = reloaded.get_panel_by_id(panel.panel_id)
        assert again.from_store and again.nav_subtitle == panel.nav_subtitle
        assert valid_html(again.content) == valid_html(panel.content)


def test_under_an_outer_detection_the_panel_leaves_the_findings_to_it(shop):
    from django_dbtune.nplusone import detect

    with detect() as outer:
        panel = run(NPlusOnePanel, n_plus_one_view)
    assert [f.relation for f in outer.findings] == ["shop.Book.author"]
    assert panel.get_stats()["elsewhere"] is True
    assert "already surrounds this request" in valid_html(panel.content)


def test_past_its_time_budget_the_indexes_panel_counts_what_it_left(shop, monkeypatch):
    from django_dbtune.advisor import request_reads

    monkeypatch.setattr(request_reads, "EXPLAIN_BUDGET", -1)

    def view(request):
        list(Book.objects.filter(title="B1"))
        list(Author.objects.filter(name="A1"))
        return HttpResponse("ok")

    panel = run(IndexesPanel, view)
    assert panel.get_stats()["queries"] == [] and panel.get_stats()["left_out"] == 2
    assert "2 left unchecked" in valid_html(panel.content)


class _Labelled(HTMLParser):
    """A panel as a user reads it: each label (``<dt>``) with the value beside it
    (``<dd>``), and the code inside that value (``<code>``, ``<pre>``); each table's headers."""

    def __init__(self):
        super().__init__()
        self.values, self.code, self.headers = {}, {}, []
        self.label = self.where = None
        self.in_code = 0

    def handle_starttag(self, tag, attrs):
        if tag == "dt":
            self.where, self.label = "dt", ""
        elif tag == "dd":
            self.where = "dd"
            self.values[self.label] = self.code[self.label] = ""
        elif tag in ("code", "pre"):
            self.in_code += 1
        elif tag == "th":
            self.where = "th"
            self.headers.append("")

    def handle_endtag(self, tag):
        if tag in ("dt", "dd", "th"):
            self.where = None
        elif tag in ("code", "pre"):
            self.in_code -= 1

    def handle_data(self, data):
        if self.where == "dt":
            self.label += data
        elif self.where == "dd":
            self.values[self.label] += data
            if self.in_code:
                self.code[self.label] += data
        elif self.where == "th":
            self.headers[-1] += data


def labelled(content):
    parser = _Labelled()
    parser.feed(valid_html(content))
    return parser


def test_the_n_plus_one_panel_sets_each_label_apart_from_its_value(shop):
    read = labelled(run(NPlusOnePanel, n_plus_one_view).content)
    assert read.values["Relation"] == "shop.Book.author"
    assert read.values["Triggered at"].startswith("tests/test_toolbar.py:")
    assert read.code["Fix"] == '.select_related("author")'  # the fix is code, in monospace
    assert read.values["Proof"].startswith("proven: re-run with the fix")


def test_the_indexes_panel_sets_each_label_apart_from_its_value(shop):
    def view(request):
        list(Book.objects.filter(title="B1"))
        return HttpResponse("ok")

    read = labelled(run(IndexesPanel, view).content)
    ran = read.values["Ran"]
    assert ran.startswith("1 time, ") and " ms, from tests/test_toolbar.py:" in ran
    assert read.code["Add to Meta.indexes"].startswith('models.Index(fields=["title"]')
    assert read.code["SQL"].startswith("SELECT")
    assert read.code["Plan"]


def test_the_query_cache_panel_says_what_each_time_measures(shop, settings):
    settings.DBTUNE = {"CACHE_ENABLED": True}

    def view(request):
        for _ in range(2):
            list(Book.cached_objects.cached())
        return HttpResponse("ok")

    read = labelled(run(QueryCachePanel, view).content)
    assert "ms" not in read.headers  # a bare unit says nothing of what was timed
    assert "Time saved (ms)" in read.headers
    assert "Time the read took (ms)" in read.headers


def test_the_middleware_behind_the_toolbar_still_logs_and_raises(shop, settings, caplog):
    from django_dbtune import NPlusOneError

    # MIDDLEWARE = [DebugToolbarMiddleware, NPlusOneMiddleware, ...], as the toolbar's own
    # installation puts it first: the panel's detection wraps the middleware's.
    from django_dbtune.middleware import NPlusOneMiddleware

    behind = NPlusOneMiddleware(n_plus_one_view)
    with caplog.at_level("WARNING", logger="django_dbtune.nplusone"):
        panel = run(NPlusOnePanel, behind)
    assert [f["relation"] for f in panel.get_stats()["findings"]] == ["shop.Book.author"]
    # The middleware proves nothing unless asked (NPLUSONE_PROVE): not called a fix.
    assert labelled(panel.content).code["Suggested fix (not tried)"] == '.select_related("author")'

    logged = [r.getMessage() for r in caplog.records if r.name == "django_dbtune.nplusone"]
    assert len(logged) == 1 and "N+1 on shop.Book.author" in logged[0]
    settings.DBTUNE = {"NPLUSONE_RAISE": True}
    with pytest.raises(NPlusOneError):
        run(NPlusOnePanel, NPlusOneMiddleware(n_plus_one_view))


def test_a_query_keeps_its_line_while_the_toolbars_sql_panel_records_it(shop):
    """The toolbar's SQL panel wraps every cursor: that wrapper only hands the query on, so
    capture (and with it workloads, dbtune_capture and the Indexes panel) still names the
    project's line, not "(unknown)"."""
    from debug_toolbar.panels.sql import SQLPanel

    from django_dbtune.capture import capture_queries

    seen = []

    def view(request):
        with capture_queries() as log:
            list(Book.objects.filter(title="B1"))
        seen.extend(record.call_site for record in log)
        return HttpResponse("ok")

    line = view.__code__.co_firstlineno + 2
    request = RequestFactory().get("/books/")
    sql = SQLPanel(DebugToolbar(request, view), view)  # run() checks a store it does not use
    sql.enable_instrumentation()
    try:
        response = sql.process_request(request)
    finally:
        sql.disable_instrumentation()
    sql.generate_stats(request, response)
    assert len(sql.get_stats()["queries"]) == 1  # the toolbar did record it
    assert seen == [f"tests/test_toolbar.py:{line} in view"]
