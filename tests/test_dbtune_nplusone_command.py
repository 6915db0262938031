import json
import subprocess
import sys
from io import StringIO

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


@pytest.mark.slow
def test_command_line_exit_status():
    result = subprocess.run(
        [sys.executable, "example_project/manage.py", "dbtune_nplusone", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "is not a path" in result.stderr
    assert "Traceback" not in result.stderr
