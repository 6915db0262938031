"""A count, an existence check or an aggregate run once per row, with conditions of its own:
the printed fix keeps them, so that pasting it gives each row what the per-row call gave."""

from dataclasses import replace
from pathlib import Path

import pytest
from django.db import models
from django.db.models import Count, Exists, Max, OuterRef, Prefetch, Q, Subquery, Sum
from django.db.models.functions import Coalesce

from django_dbtune.nplusone import detect
from django_dbtune.nplusone.proof import rerun
from tests.shop.models import Author, Book, Review

# What a user has imported when pasting a fix.
NAMES = {
    "Count": Count,
    "Exists": Exists,
    "Max": Max,
    "OuterRef": OuterRef,
    "Prefetch": Prefetch,
    "Q": Q,
    "Subquery": Subquery,
    "Sum": Sum,
    "Coalesce": Coalesce,
    "models": models,
    "Review": Review,
    "Book": Book,
}


HERE = "tests/test_nplusone_per_row_calls.py"


def line_of(text: str) -> int:
    lines = Path(__file__).read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


@pytest.fixture
def reviewed(db):
    """6 books; book i has i "good" reviews and one "bad" one, so a count that forgets the
    condition is off by one on every row."""
    author = Author.objects.create(name="A")
    for i in range(6):
        book = Book.objects.create(title=f"B{i}", author=author)
        Review.objects.create(book=book, text="bad")
        for _ in range(i):
            Review.objects.create(book=book, text="good")


def good_reviews(book):
    return Review.objects.filter(book=book, text="good").count()


def has_good_review(book):
    return Review.objects.filter(book=book).filter(text="good").exists()


def last_review(book):
    return Review.objects.filter(book=book).aggregate(Max("id"))["id__max"]


def good_texts(book):
    return [review.text for review in book.review_set.filter(text="good").order_by("id")]


def pasted(fix: str):
    """``Book.objects`` with the finding's change, as a user would paste it."""
    change = fix.split(" on the ")[0]
    return eval("Book.objects" + change + '.order_by("id")', NAMES)


def values(queryset, name):
    return [getattr(book, name) for book in queryset]


@pytest.mark.usefixtures("reviewed")
@pytest.mark.parametrize(
    ("read", "name"),
    [
        (good_reviews, "review_set_count"),
        (has_good_review, "has_review_set"),
        (last_review, "id_max"),
    ],
)
def test_a_per_row_call_written_by_hand_gets_a_proven_fix_that_keeps_its_conditions(read, name):
    def page():
        return [read(book) for book in Book.objects.order_by("id")]

    with detect() as report:
        expected = page()
    [finding] = report.findings
    assert finding.queryset_site == f"{HERE}:{line_of('return [read(book)')} in page"
    assert finding.fix.startswith(f".annotate({name}="), finding.fix
    assert values(pasted(finding.fix), name) == expected
    assert f"{read.__name__} ({HERE}:" in finding.advice

    [proven] = rerun(report.findings, lambda: 200 if page() == expected else 500)
    assert proven.proof.verdict == "proven", proven.proof
    assert (proven.proof.before, proven.proof.after) == (1 + 6, 1)


@pytest.mark.usefixtures("reviewed")
def test_a_fix_whose_annotation_cannot_be_built_is_not_offered_as_proven():
    """The chain is evaluated where the call was written; when that fails (here: its module
    is not one Python imported), the re-run raises and the fix stays unproven."""

    def page():
        return [good_reviews(book) for book in Book.objects.order_by("id")]

    with detect() as report:
        expected = page()
    [finding] = report.findings
    [call] = finding.target.row_calls
    target = replace(finding.target, row_calls=(replace(call, module="not.imported"),))
    [judged] = rerun([replace(finding, target=target)], lambda: 200 if page() == expected else 500)
    assert judged.proof.verdict == "unproven"
    assert judged.proof.reason.startswith("re-run with the fix, the code raised LookupError")


@pytest.mark.usefixtures("reviewed")
def test_a_filtered_count_through_a_related_manager_gets_a_fix_that_keeps_its_filter():
    with detect() as report:
        expected = [book.review_set.filter(text="good").count() for book in Book.objects.all()]
    [finding] = report.findings
    assert values(pasted(finding.fix), "review_set_count") == expected
    assert "per row" in finding.advice


@pytest.mark.usefixtures("reviewed")
def test_an_aggregate_through_a_related_manager_gets_a_fix_that_runs():
    with detect() as report:
        expected = [book.review_set.aggregate(Max("id"))["id__max"] for book in Book.objects.all()]
    [finding] = report.findings
    assert values(pasted(finding.fix), "id_max") == expected


@pytest.mark.usefixtures("reviewed")
def test_a_call_whose_source_cannot_be_read_says_the_conditions_must_be_kept():
    """No line to read (a lookup built at run time): the fix says what it cannot spell."""
    lookups = {"book": None, "text": "good"}
    with detect() as report:
        for book in Book.objects.all():
            lookups["book"] = book
            Review.objects.filter(**lookups).count()
    [finding] = report.findings
    assert finding.fix == (
        '.annotate(review_set_count=Count("review", filter=Q(...))) on the Book queryset'
    )


@pytest.mark.usefixtures("reviewed")
def test_a_filtered_read_on_a_project_line_is_proven_with_a_prefetch_to_a_list():
    """book.review_set.filter(...) per row queries even after a plain prefetch: the fix
    prefetches that very queryset to a list, and the proof reads the list at that line."""

    def page():
        return [good_texts(book) for book in Book.objects.order_by("id")]

    with detect() as report:
        expected = page()
    [finding] = report.findings
    assert finding.fix == (
        '.prefetch_related(Prefetch("review_set", queryset=Review.objects.filter(text="good")'
        '.order_by("id"), to_attr="review_set_list"))'
    )
    assert f"good_texts ({HERE}:{line_of('return [review.text')})" in finding.advice
    listed = [[review.text for review in book.review_set_list] for book in pasted(finding.fix)]
    assert listed == expected

    [proven] = rerun(report.findings, lambda: 200 if page() == expected else 500)
    assert proven.proof.verdict == "proven", proven.proof
    assert (proven.proof.before, proven.proof.after) == (1 + 6, 2)


FIRST = ["B0", "B1", "B2"]


@pytest.mark.usefixtures("reviewed")
def test_a_per_row_call_for_the_rows_of_two_querysets_is_fixed_and_proven_on_both():
    """A dashboard lists tickets three ways, and each row counts the same way."""

    def page():
        first = [good_reviews(book) for book in Book.objects.filter(title__in=FIRST)]
        return first + [good_reviews(book) for book in Book.objects.exclude(title__in=FIRST)]

    with detect() as report:
        expected = page()
    [finding] = report.findings
    first, second = (f"{HERE}:{line_of(text)} in page" for text in ("first = [", "return first"))
    assert finding.queryset_site == f"{first} and {second}"
    [proven] = rerun(report.findings, lambda: 200 if page() == expected else 500)
    assert proven.proof.verdict == "proven", proven.proof
    assert (proven.proof.before, proven.proof.after) == (2 + 6, 2)
