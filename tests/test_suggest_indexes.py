import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("suggest_indexes", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def findings(*args):
    return json.loads(run(*args, "--format", "json")[0])


@pytest.mark.django_db
def test_the_example_projects_model_level_slow_spots_are_found_and_nothing_else():
    found = findings("crawler", "publisher", "marketplace")
    assert [(f["kind"], f["model"], f["fields"]) for f in found] == [
        ("missing_fk_index", "crawler.Recommendation", ["website"]),  # IDX-3
        ("redundant_index", "publisher.SocialAccount", ["platform"]),  # IDX-9
    ]
    fk, redundant = found
    assert fk["severity"] == "high"
    assert fk["index"]["fields"] == ["website"]
    assert len(fk["index"]["name"]) <= 30
    assert fk["evidence"] == [
        {
            "file": "example_project/crawler/models.py",
            "line": 67,
            "code": "website = models.ForeignKey(",
        }
    ]
    assert "ticket #34417" in fk["advice"]
    assert redundant["index"] is None
    assert "publisher_account_plat_act" in redundant["message"]
    assert redundant["evidence"][0]["code"].startswith('models.Index(fields=["platform"]')


@pytest.mark.django_db
def test_every_coverage_form_is_respected():
    found = findings("testapp")
    reported = {(f["kind"], f["model"], tuple(f["fields"])) for f in found}
    assert reported == {
        ("missing_fk_index", "testapp.Book", ("reviewer",)),
        ("missing_fk_index", "testapp.Book", ("sponsor",)),
        ("duplicate_index", "testapp.Shelf", ("code",)),
        ("redundant_index", "testapp.Shelf", ("room",)),
    }
    reviewer = next(f for f in found if f["fields"] == ["reviewer"])
    assert "non-leading column of index book_title_reviewer" in reviewer["message"]


@pytest.mark.django_db
def test_text_output_groups_by_app_and_model_and_shows_the_index_to_add():
    text, _ = run("crawler")
    assert text.splitlines()[:2] == ["crawler", "  crawler.Recommendation"]
    assert 'add to Meta.indexes: models.Index(fields=["website"], name="crawler_rec_' in text
    assert text.rstrip().endswith("1 finding(s).")


@pytest.mark.django_db
def test_check_fails_only_at_or_above_the_minimum_severity():
    with pytest.raises(SystemExit) as exited:
        run("publisher", "--check")
    assert exited.value.code == 1
    text, _ = run("publisher", "--check", "--min-severity", "medium")
    assert text.strip() == "No findings."


@pytest.mark.django_db
def test_without_app_labels_the_projects_own_apps_are_checked():
    found = findings()
    assert {f["model"].split(".")[0] for f in found} >= {"crawler", "publisher", "testapp"}
    assert not any(f["model"].startswith(("auth.", "admin.", "sessions.")) for f in found)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "No installed app with label 'nope'"),
        (["django_dbtune"], "App 'django_dbtune' has no models"),
        (["--database", "replica"], "no database 'replica'"),
    ],
)
def test_bad_input_is_a_clear_error(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_an_unreachable_database_leaves_the_model_rules_running():
    env = {**os.environ, "DBTUNE_DB": "postgres", "DBTUNE_PG_PORT": "1"}
    result = subprocess.run(
        [sys.executable, "manage.py", "suggest_indexes", "crawler"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("warning: database 'default' is unreachable")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "missing_fk_index" in result.stdout
