import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.test_dbtune_capture_command import businesses  # noqa: F401  (fixture)


def run(*args):
    out = StringIO()
    call_command("dbtune_nplusone", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_text_names_the_relation_the_lines_and_the_fix():
    text = run("/publisher/businesses/", "/publisher/queue/")
    assert "GET /publisher/businesses/  ->  200, 1 finding(s)" in text
    assert "N+1 on publisher.Business.social_accounts: 6 extra queries" in text
    assert "triggered at example_project/publisher/views.py:12 in business_list" in text
    assert "queryset built at example_project/publisher/views.py:8 in business_list" in text
    assert 'fix: .prefetch_related("social_accounts")' in text
    assert "GET /publisher/queue/  ->  200, 0 finding(s)" in text


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_with_the_middleware_installed_the_command_alone_reports(settings, caplog):
    # The documented development setup: the middleware's detection runs inside the command's,
    # which reports (proven); the middleware logs nothing of its own for those requests.
    settings.MIDDLEWARE = ["django_dbtune.middleware.NPlusOneMiddleware", *settings.MIDDLEWARE]
    with caplog.at_level("WARNING", logger="django_dbtune.nplusone"):
        text = run("/publisher/businesses/")
    assert 'fix: .prefetch_related("social_accounts")' in text
    assert "proven: re-run with the fix" in text
    assert [r.getMessage() for r in caplog.records if r.name == "django_dbtune.nplusone"] == []


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_json_and_check():
    (page,) = json.loads(run("/publisher/businesses/", "--format", "json"))
    assert page["url"] == "/publisher/businesses/"
    [finding] = page["findings"]
    assert finding["relation"] == "publisher.Business.social_accounts"
    assert finding["count"] == 6
    assert finding["url"] == "/publisher/businesses/"
    with pytest.raises(CommandError, match="N\\+1 queries") as caught:
        run("/publisher/businesses/", "--check")
    assert caught.value.returncode == 1
    run("/publisher/queue/", "--check")  # nothing found: no error


@pytest.mark.django_db
def test_bad_input_is_a_clear_error():
    with pytest.raises(CommandError, match="is not a path"):
        run("publisher/businesses/")
    with pytest.raises(CommandError, match="--threshold must be 2 or more"):
        run("/", "--threshold", "1")


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_a_login_protected_page_is_no_all_clear():
    with pytest.raises(CommandError) as caught:
        run("/my/businesses/", "--check")
    assert caught.value.returncode == 1
    assert (
        "/my/businesses/: 302 to /accounts/login/?next=/my/businesses/: log in with --user"
        in str(caught.value)
    )
    # Without --check too: the page was not checked at all, as with an error status.
    with pytest.raises(CommandError, match="did not answer 2xx"):
        run("/my/businesses/")


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_with_user_the_page_is_checked_as_that_user_sees_it():
    text = run("/my/businesses/", "--user", "owner")
    assert "GET /my/businesses/  ->  200, 1 finding(s)" in text
    assert "N+1 on publisher.Business.social_accounts: 6 extra queries" in text
    assert "triggered at tests/views.py:" in text
    with pytest.raises(CommandError, match="N\\+1 queries"):
        run("/my/businesses/", "--user", "owner", "--check")


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_an_allowed_status_is_shown_and_accepted():
    text = run("/my/businesses/", "--allow-status", "302", "--check")
    assert (
        "GET /my/businesses/  ->  302 to /accounts/login/?next=/my/businesses/, 0 finding(s)"
        in text
    )
    (page,) = json.loads(run("/my/businesses/", "--allow-status", "302", "--format", "json"))
    assert page["status"] == 302
    assert page["location"] == "/accounts/login/?next=/my/businesses/"
    assert page["findings"] == []
    with pytest.raises(CommandError, match="/no/such/page/: 404"):
        run("/my/businesses/", "/no/such/page/", "--allow-status", "302")
    run("/no/such/page/", "--allow-status", "302", "404")


@pytest.mark.django_db
def test_an_api_that_refuses_an_anonymous_request_says_to_log_in(django_user_model):
    """REST framework's session authentication answers 403, with no redirect: the command
    said "403" and nothing of --user."""
    with pytest.raises(CommandError) as caught:
        run("/shop/api/private-books/")
    assert "/shop/api/private-books/: 403: log in with --user" in str(caught.value)
    django_user_model.objects.create(username="reader")
    text = run("/shop/api/private-books/", "--user", "reader")
    assert "GET /shop/api/private-books/  ->  200" in text


@pytest.mark.django_db
def test_the_admin_login_page_is_recognised_by_its_next_parameter(django_user_model):
    with pytest.raises(CommandError) as caught:
        run("/admin/auth/user/")
    assert "302 to /admin/login/?next=/admin/auth/user/: log in with --user" in str(caught.value)
    django_user_model.objects.create(username="clerk")  # not staff
    with pytest.raises(CommandError) as caught:
        run("/admin/auth/user/", "--user", "clerk")
    assert "302 to /admin/login/?next=/admin/auth/user/: the user 'clerk' may not see it" in str(
        caught.value
    )
    django_user_model.objects.create(username="boss", is_staff=True, is_superuser=True)
    assert "GET /admin/auth/user/  ->  200" in run("/admin/auth/user/", "--user", "boss")


@pytest.mark.django_db
@pytest.mark.usefixtures("businesses")
def test_the_login_page_exists():
    from django.test import Client

    assert Client().get("/accounts/login/").status_code == 200


@pytest.mark.django_db
def test_an_unknown_user_or_status_is_a_clear_error():
    with pytest.raises(CommandError) as caught:
        run("/my/businesses/", "--user", "ghost")
    assert str(caught.value) == (
        "--user: there is no user whose username is 'ghost' "
        "(auth.User.USERNAME_FIELD is 'username')."
    )
    assert caught.value.returncode == 1
    with pytest.raises(CommandError, match="'abc' is not an HTTP status"):
        run("/", "--allow-status", "abc")
    with pytest.raises(CommandError, match="'42' is not an HTTP status"):
        run("/", "--allow-status", "42")


def _manage(tmp_path, *args):
    """``manage.py dbtune_nplusone ARGS`` in a process of its own, on a database of its own
    (a SQLite file that exists): nothing may touch the test databases from a second process,
    and Django's system checks connect to a MariaDB database before any command runs."""
    (tmp_path / "own_settings.py").write_text(
        "from tests.settings import *\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3',"
        f" 'NAME': {str(tmp_path / 'db.sqlite3')!r}}}}}\n"
    )
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "example_project/manage.py", "dbtune_nplusone", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)]),
            "DJANGO_SETTINGS_MODULE": "own_settings",
        },
    )


@pytest.mark.slow
def test_command_line_exit_status_of_a_login_protected_page(tmp_path):
    # The page redirects before any query.
    result = _manage(tmp_path, "/my/businesses/")
    assert result.returncode == 1, result.stderr
    assert "302 to /accounts/login/?next=/my/businesses/: log in with --user" in result.stderr
    assert "GET /my/businesses/  ->  302" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_command_line_exit_status(tmp_path):
    result = _manage(tmp_path, "nope")
    assert result.returncode == 1
    assert "is not a path" in result.stderr
    assert "Traceback" not in result.stderr
