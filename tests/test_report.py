"""manage.py dbtune_report: one self-contained HTML page with every finding."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.test_toolbar import valid_html

pytestmark = pytest.mark.django_db(transaction=True)

BENCHMARK = {
    "shapes": [
        {
            "shape": 'SELECT ... FROM "crawler_pageresult" WHERE status_code = %s',
            "index": "i",
            "before_ms": 58.68,
            "after_ms": 1.72,
        },
    ]
}


@pytest.fixture
def site():
    from dashboard import seed

    seed.seed(0.2, seed=7, using="default", progress=lambda n: None)


def report(tmp_path, *options):
    path = tmp_path / "report.html"
    call_command("dbtune_report", "crawler", "--output", str(path), *options, stdout=StringIO())
    return path


def test_the_report_shows_indexes_n_plus_one_health_and_the_benchmark(site, tmp_path):
    benchmark = tmp_path / "bench.json"
    benchmark.write_text(json.dumps(BENCHMARK))
    html = report(tmp_path, "--url", "/crawler/pages/", "--benchmark", str(benchmark)).read_text()
    valid_html(html.replace("<!DOCTYPE html>", ""))
    assert "crawler.PageResult" in html and "Meta.indexes: models.Index(" in html
    assert "crawler/views.py:" in html  # the evidence: the line that asks for the index
    assert "N+1 on crawler.PageResult.crawl_job" in html
    assert "select_related(&quot;crawl_job__website&quot;)" in html
    assert "proven: re-run with the fix, " in html  # the page ran again with the fix
    assert "Index health" in html
    assert "58.68 ms" in html and "34.1\u00d7 faster" in html
    assert "<link" not in html and "<script" not in html  # self-contained


def test_n_plus_one_findings_can_come_from_a_recorded_run(site, tmp_path):
    out = StringIO()
    call_command("dbtune_nplusone", "/crawler/pages/", "--format", "json", stdout=out)
    recorded = tmp_path / "nplusone.json"
    recorded.write_text(out.getvalue())
    html = report(tmp_path, "--nplusone", str(recorded)).read_text()
    assert "n_plus_one: crawler.PageResult.crawl_job" in html
    assert "proven: re-run with the fix, " in html
    assert f"recorded in {recorded}" in html


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--nplusone", "missing.json"], "Cannot read missing.json"),
        (["--benchmark", "BAD"], "is not the JSON of bench/workload_indexes.py"),
        (["--url", "crawler/pages/"], "is not a path"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, options, message):
    (tmp_path / "BAD").write_text("{not json")
    options = [str(tmp_path / o) if o == "BAD" else o for o in options]
    with pytest.raises(CommandError, match=message):
        report(tmp_path, *options)
    assert list(tmp_path.iterdir()) == [tmp_path / "BAD"]


def test_a_missing_output_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("dbtune_report", "--output", str(tmp_path / "no" / "report.html"))


def test_a_page_that_did_not_answer_2xx_is_shown_with_its_status(tmp_path):
    with pytest.raises(CommandError) as caught:
        report(tmp_path, "--url", "/no/such/page/")
    assert "/no/such/page/: 404" in str(caught.value)
    html = (tmp_path / "report.html").read_text()  # written all the same
    assert "GET /no/such/page/ answered 404" in html
    assert "No N+1 queries" not in html


def test_a_login_protected_page_needs_the_user_or_its_status_allowed(tmp_path):
    from django.contrib.auth import get_user_model

    from publisher.models import Business, SocialAccount

    owner = get_user_model().objects.create(username="owner")
    for i in range(3):
        business = Business.objects.create(
            owner=owner, name=f"B{i}", slug=f"b{i}", created_at="2026-01-01T00:00Z"
        )
        SocialAccount.objects.create(
            business=business, platform="x", handle=f"b{i}", connected_at="2026-01-01T00:00Z"
        )
    html = report(tmp_path, "--url", "/my/businesses/", "--allow-status", "302").read_text()
    assert (
        "GET /my/businesses/ answered 302 to /accounts/login/?next=/my/businesses/: "
        "log in with --user" in html
    )
    assert "No N+1 queries" not in html
    html = report(tmp_path, "--url", "/my/businesses/", "--user", "owner").read_text()
    assert "N+1 on publisher.Business.social_accounts" in html
    assert "answered 302" not in html


def test_an_unknown_user_is_a_clear_error_and_writes_nothing(tmp_path):
    existing = tmp_path / "report.html"
    existing.write_text("an earlier report")
    with pytest.raises(CommandError, match="no user whose username is 'ghost'"):
        report(tmp_path, "--url", "/my/businesses/", "--user", "ghost")
    assert existing.read_text() == "an earlier report"
    assert list(tmp_path.iterdir()) == [existing]


def test_a_sort_by_an_annotation_in_the_code_never_stops_the_report(tmp_path, settings):
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        "from django.db.models import Count\n"
        "from tests.testapp.models import Author, Shelf\n"
        'Author.objects.annotate(n=Count("books")).order_by("-n")\n'
        'Shelf.objects.filter(label="a").order_by("built", "-popularity")\n'
    )
    path = tmp_path / "report.html"
    call_command("dbtune_report", "testapp", "--output", str(path), stdout=StringIO())
    content = valid_html(path.read_text())
    assert "label, built" in content
