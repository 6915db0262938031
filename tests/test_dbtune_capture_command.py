import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from publisher.models import Business, SocialAccount


@pytest.fixture
def businesses(django_user_model):
    owner = django_user_model.objects.create(username="owner")
    for i in range(6):
        business = Business.objects.create(
            owner=owner, name=f"B{i}", slug=f"b{i}", created_at="2026-01-01T00:00Z"
        )
        SocialAccount.objects.create(
            business=business, platform="x", handle=f"b{i}", connected_at="2026-01-01T00:00Z"
        )


def run(*args):
    out = StringIO()
    call_command("dbtune_capture", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_text_output_shows_the_repeated_shape_and_the_line_that_ran_it():
    text = run("/publisher/businesses/")
    assert "GET /publisher/businesses/  ->  200, 7 queries" in text
    quote = connection.ops.quote_name
    assert "6x" in text and f"SELECT {quote('publisher_socialaccount')}.{quote('id')}" in text
    assert "from example_project/publisher/views.py:" in text


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_the_shapes_left_out_are_counted_in_good_english():
    assert "  ... and 1 more shape\n" in run("/publisher/businesses/", "--top", "1")


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_json_output_is_machine_readable():
    (page,) = json.loads(run("/publisher/businesses/", "--format", "json"))
    assert page["status"] == 200 and page["queries"] == 7
    # The page's query time, under the name every page command gives it.
    shapes_ms = sum(shape["duration_ms"] for shape in page["shapes"])
    assert page["query_ms"] == pytest.approx(shapes_ms, abs=0.01) and page["query_ms"] > 0
    assert "duration_ms" not in page
    top = page["shapes"][0]
    assert top["count"] == 6 and top["tables"] == ["publisher_socialaccount"]
    assert top["call_sites"][0]["call_site"].startswith("example_project/publisher/views.py:")


@pytest.mark.django_db
def test_an_error_page_is_reported_and_fails_the_command():
    with pytest.raises(CommandError, match="/no/such/page/: 404"):
        run("/no/such/page/")


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_a_login_protected_page_fails_unless_logged_in_or_allowed():
    with pytest.raises(CommandError) as caught:
        run("/my/businesses/")
    assert caught.value.returncode == 1
    assert (
        "/my/businesses/: 302 to /accounts/login/?next=/my/businesses/: log in with --user"
        in str(caught.value)
    )
    text = run("/my/businesses/", "--user", "owner")
    assert "GET /my/businesses/  ->  200" in text
    assert "6x" in text and "from tests/views.py:" in text
    (page,) = json.loads(run("/my/businesses/", "--allow-status", "302", "--format", "json"))
    assert page["status"] == 302
    assert page["location"] == "/accounts/login/?next=/my/businesses/"


@pytest.mark.django_db
def test_an_unknown_user_is_a_clear_error_and_records_nothing(tmp_path):
    record = tmp_path / "workload.jsonl"
    with pytest.raises(CommandError, match="no user whose username is 'ghost'"):
        run("/my/businesses/", "--user", "ghost", "--record", str(record))
    assert not record.exists()


def test_a_url_that_is_not_a_path_is_refused():
    with pytest.raises(CommandError, match="is not a path"):
        run("publisher/")
