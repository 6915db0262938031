from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from crawler.models import PageResult
from dashboard import seed
from publisher.models import Post


def run(*args):
    out = StringIO()
    call_command("seed_demo", *args, "--verbosity", "0", stdout=out)
    return out.getvalue()


def fingerprint():
    return list(
        PageResult.objects.order_by("pk").values_list("url", "status_code", "score")
    ), list(Post.objects.order_by("pk").values_list("body", "status", "tags__name"))


@pytest.mark.django_db
def test_same_scale_and_seed_write_the_same_rows():
    run("--scale", "0.05")
    first = fingerprint()
    run("--scale", "0.05", "--reset")
    assert fingerprint() == first
    run("--scale", "0.05", "--reset", "--seed", "8")
    assert fingerprint() != first


@pytest.mark.slow
@pytest.mark.django_db
def test_scale_one_writes_about_ten_thousand_rows():
    counts = seed.seed(1)
    assert counts["crawler.PageResult"] == 5000
    assert 10_000 <= sum(counts.values()) <= 15_000
    assert seed.Plan.for_scale(200).page_results == 1_000_000


@pytest.mark.django_db
def test_existing_data_is_kept_unless_reset_is_asked_for():
    run("--scale", "0.02")
    before = PageResult.objects.count()
    with pytest.raises(CommandError, match="--reset"):
        run("--scale", "0.04")
    assert PageResult.objects.count() == before


@pytest.mark.django_db
@pytest.mark.parametrize("scale", ["0", "-1", "20000"])
def test_a_bad_scale_is_refused(scale):
    with pytest.raises(CommandError, match="--scale"):
        run("--scale", scale)
    assert not PageResult.objects.exists()


@pytest.mark.django_db
def test_an_unknown_database_is_refused():
    with pytest.raises(CommandError, match="no database 'nope'"):
        run("--database", "nope")
