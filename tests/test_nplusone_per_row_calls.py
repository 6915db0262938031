"""A count, an existence check or an aggregate run once per row, with conditions of its own:
the printed fix keeps them, so that pasting it gives each row what the per-row call gave."""

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from django.db import models
from django.db.models import Count, Exists, Max, OuterRef, Prefetch, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils.functional import SimpleLazyObject, empty

from django_dbtune.nplusone import detect
from django_dbtune.nplusone.proof import rerun
from tests.shop.models import Author, Book, Review, Tag

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


def good_reviews_page():
    return [good_reviews(book) for book in Book.objects.order_by("id")]


def detected_good_reviews():
    """The page's one finding, and what the page returned."""
    with detect() as report:
        expected = good_reviews_page()
    [finding] = report.findings
    return finding, expected


def with_call(finding, **changes):
    """The finding's fix with its per-row call changed."""
    [call] = finding.target.row_calls
    return replace(finding.target, row_calls=(replace(call, **changes),))


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
    finding, expected = detected_good_reviews()
    target = with_call(finding, module="not.imported")
    [judged] = rerun(
        [replace(finding, target=target)],
        lambda: 200 if good_reviews_page() == expected else 500,
    )
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
        '.annotate(review_set_count=Count("review", filter=Q(...), distinct=True))'
        " on the Book queryset"
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


# --- Fixes that would change what the page shows are never placed or proven -------------------


def reviewed_by_author(book):
    return Review.objects.filter(reviewer_id=book.author_id).count()


def good_and_all(b):
    return Review.objects.filter(book=b).count() + Review.objects.filter(book=b).exists()


def tagged_books(author):
    return Book.objects.filter(author=author, tags__name__startswith="t").distinct().count()


def with_text(book, text):
    return Review.objects.filter(book=book, text=text).count()


def good_reviews_for(book, user):
    return Review.objects.filter(book=book, text="good").count()


def counted_good(book):
    return Review.objects.filter(book=book, text="good").aggregate(Count("id"))["id__count"]


@pytest.mark.usefixtures("reviewed")
@pytest.mark.parametrize(
    "read",
    [
        good_and_all,  # two calls on one line: which one a query came from is not known
        lambda book: with_text(book, "good"),  # a parameter has no value where the fix goes
    ],
    ids=["two-calls", "a-parameter"],
)
def test_a_per_row_call_that_cannot_be_rewritten_for_sure_gets_no_placed_fix(read):
    with detect() as report:
        [read(book) for book in Book.objects.order_by("id")]
    assert report.findings, "the per-row queries are still reported"
    for finding in report.findings:
        assert finding.target is None, finding.fix
        assert "OuterRef" not in finding.fix and "text=text" not in finding.fix


def test_a_call_about_another_model_than_the_row_is_not_placed_on_the_rows(db):
    """The book is the watched row in the frame, but the call compares authors."""
    for i in range(3):
        author = Author.objects.create(name=f"A{i}")
        book = Book.objects.create(title=f"B{i}", author=author)
        Review.objects.create(book=book, reviewer=author)
    with detect() as report:
        [reviewed_by_author(book) for book in Book.objects.order_by("id")]
    [finding] = report.findings
    assert finding.relation == "shop.Review.reviewer"
    assert finding.target is None, finding.fix


def test_a_distinct_count_over_a_join_gets_no_grouped_count(db):
    author = Author.objects.create(name="A")
    tags = [Tag.objects.create(name=f"t{i}") for i in range(2)]
    for i in range(3):
        Book.objects.create(title=f"B{i}", author=author).tags.set(tags)
    Author.objects.create(name="B")
    with detect() as report:
        [tagged_books(author) for author in Author.objects.order_by("id")]
    [finding] = report.findings
    assert "Subquery" not in finding.fix and finding.target is None


@pytest.mark.usefixtures("reviewed")
def test_an_aggregate_count_over_no_rows_is_zero_in_the_fix_too():
    def page():
        return [counted_good(book) for book in Book.objects.order_by("id")]

    with detect() as report:
        expected = page()
    assert expected[0] == 0
    [finding] = report.findings
    assert values(pasted(finding.fix), "id_count") == expected
    [proven] = rerun(report.findings, lambda: 200 if page() == expected else 500)
    assert proven.proof.verdict == "proven", proven.proof


@pytest.mark.usefixtures("reviewed")
def test_an_annotation_never_takes_a_name_the_model_has(monkeypatch):
    monkeypatch.setattr(Book, "review_set_count", property(lambda book: -1), raising=False)
    with detect() as report:
        expected = [good_reviews(book) for book in Book.objects.order_by("id")]
    [finding] = report.findings
    assert finding.fix.startswith(".annotate(review_set_count_2=")
    assert values(pasted(finding.fix), "review_set_count_2") == expected


@pytest.mark.usefixtures("reviewed")
def test_a_lazy_object_beside_a_per_row_call_is_never_evaluated():
    def boom():
        raise RuntimeError("evaluated")

    user = SimpleLazyObject(boom)
    with detect() as report:
        for book in Book.objects.order_by("id"):
            good_reviews_for(book, user)
    assert report.findings
    assert user._wrapped is empty


@pytest.mark.usefixtures("reviewed")
def test_a_fix_that_reads_other_values_than_the_call_is_not_proven():
    """The proof runs the call too, unrecorded, and compares: an annotation that forgot a
    condition is caught even when it saves the queries."""
    finding, expected = detected_good_reviews()
    [call] = finding.target.row_calls
    target = with_call(finding, expression=call.expression.replace(', text="good"', ""))
    [judged] = rerun(
        [replace(finding, target=target)],
        lambda: 200 if good_reviews_page() == expected else 500,
    )
    assert judged.proof.verdict == "unproven"
    line = line_of('Review.objects.filter(book=book, text="good").count()')
    assert judged.proof.reason.startswith(
        f"re-run with the fix, the call at {HERE}:{line} returned 0 where the fix gives 1"
    ), judged.proof.reason


@pytest.mark.usefixtures("reviewed")
def test_a_filtered_read_of_values_is_not_answered_with_rows():
    def page():
        return [
            list(book.review_set.filter(text="bad").values_list("text", flat=True))
            for book in Book.objects.order_by("id")
        ]

    with detect() as report:
        page()
    [finding] = report.findings
    # A page shows whatever it read, with status 200 either way.
    [judged] = rerun(report.findings, lambda: (page(), 200)[1])
    assert judged.proof.verdict == "unproven", finding.fix


@pytest.mark.usefixtures("reviewed")
@pytest.mark.django_db(transaction=True)
def test_a_proof_changes_nothing_for_a_request_in_another_thread():
    """The proof's changes are process-wide patches; another thread's request (watched by
    its own detection, as under the middleware) must run as written, and never fail."""
    from django_dbtune.nplusone.fix_in_place import applied

    finding, expected = detected_good_reviews()
    # Evaluating this annotation raises: if the other thread ran it, it would fail.
    broken = with_call(finding, module="not.imported")
    seen = []

    def other_request():
        try:
            with detect():
                seen.append(good_reviews_page())
        except Exception as exc:
            seen.append(exc)

    with detect(), applied(broken):
        thread = threading.Thread(target=other_request)
        thread.start()
        thread.join()
    assert seen == [expected]


@pytest.fixture
def two_reviewers(db):
    """6 books, each reviewed by R1; the even ones by R2 too (the others raise DoesNotExist)."""
    author = Author.objects.create(name="A")
    first, second = Author.objects.create(name="R1"), Author.objects.create(name="R2")
    for i in range(6):
        book = Book.objects.create(title=f"B{i}", author=author)
        Review.objects.create(book=book, reviewer=first, text=f"{i} by R1")
        if i % 2 == 0:
            Review.objects.create(book=book, reviewer=second, text=f"{i} by R2")


def review_by_each(book, reviewers):
    texts = []
    for reviewer in reviewers:
        try:
            texts.append(book.review_set.get(reviewer=reviewer).text)
        except Review.DoesNotExist:
            texts.append(None)
    return texts


def reviews_page():
    reviewers = list(Author.objects.filter(name__startswith="R").order_by("id"))
    return [review_by_each(book, reviewers) for book in Book.objects.order_by("id")]


def picked_from_list(fix: str, advice: str):
    """The page as a user changes it: the fix pasted, and the advice's pick in the loop."""
    pick = advice.split("pick from the list: ")[1].split(" (one row")[0]
    reviewers = list(Author.objects.filter(name__startswith="R").order_by("id"))
    page = []
    for book in pasted(fix):
        texts = []
        for reviewer in reviewers:
            rows = eval(pick, {"book": book, "reviewer": reviewer})
            texts.append(rows[0].text if rows else None)
        page.append(texts)
    return page


@pytest.mark.usefixtures("two_reviewers")
def test_a_read_that_picks_by_a_value_of_the_loop_is_proven_with_the_rows_in_a_list():
    """book.review_set.get(reviewer=reviewer) per book and reviewer: no queryset can hold
    the condition (it changes on every call), so the fix prefetches the rows without it,
    the advice picks from the list in Python, and the proof answers each call that way."""
    with detect() as report:
        expected = reviews_page()
    [finding] = report.findings
    assert finding.fix == (
        '.prefetch_related(Prefetch("review_set", queryset=Review.objects.all(), '
        'to_attr="review_set_list"))'
    )
    line = line_of("texts.append(book.review_set.get(reviewer=reviewer).text)")
    assert f"review_by_each ({HERE}:{line}) calls .review_set.get(...)" in finding.advice
    assert "[row for row in book.review_set_list if row.reviewer_id == reviewer.pk]" in (
        finding.advice
    )
    assert picked_from_list(finding.fix, finding.advice) == expected

    [proven] = rerun(report.findings, lambda: 200 if reviews_page() == expected else 500)
    assert proven.proof.verdict == "proven", proven.proof
    assert (proven.proof.before, proven.proof.after) == (2 + 6 * 2, 3)


@pytest.mark.usefixtures("two_reviewers")
def test_a_pick_that_gives_other_rows_than_the_call_is_not_proven():
    with detect() as report:
        expected = reviews_page()
    [finding] = report.findings
    # Compares the review's own id to the reviewer's: no row, so every call "raises".
    target = with_call(finding, picks=(("id", "reviewer", True),))
    [judged] = rerun(
        [replace(finding, target=target)], lambda: 200 if reviews_page() == expected else 500
    )
    assert judged.proof.verdict == "unproven"
    line = line_of("texts.append(book.review_set.get(reviewer=reviewer).text)")
    assert f"the call at {HERE}:{line} returned" in judged.proof.reason, judged.proof.reason


@pytest.mark.usefixtures("two_reviewers")
def test_a_pick_through_a_relation_gets_no_pick_of_its_own():
    """reviewer__name=name is a lookup the advice's comparison could not spell."""

    def page():
        names = ["R1", "R2"]
        return [
            [len(book.review_set.filter(reviewer__name=name)) for name in names]
            for book in Book.objects.order_by("id")
        ]

    with detect() as report:
        page()
    [finding] = report.findings
    assert finding.relation == "shop.Book.review_set"
    assert "pick from the list" not in finding.advice
    assert finding.target is None or not finding.target.row_calls


def review_by_each_reviewer(book):
    texts = []
    for reviewer in Author.objects.filter(name__startswith="R").order_by("id"):
        try:
            texts.append(book.review_set.get(reviewer=reviewer).text)
        except Review.DoesNotExist:
            texts.append(None)
    return texts


@pytest.mark.usefixtures("two_reviewers")
def test_the_fixes_of_one_loop_are_also_proven_together():
    """The reviewers read again per book and each review picked per reviewer: one edit of
    the function fixes both, and each proof says what the two reach together."""

    def page():
        return [review_by_each_reviewer(book) for book in Book.objects.order_by("id")]

    with detect() as report:
        expected = page()
    proven = rerun(report.findings, lambda: 200 if page() == expected else 500)
    by_relation = {finding.relation: finding for finding in proven}
    assert set(by_relation) == {"shop.Author", "shop.Book.review_set"}
    reused, picked = by_relation["shop.Author"], by_relation["shop.Book.review_set"]
    assert (reused.proof.before, reused.proof.after) == (1 + 6 + 12, 1 + 1 + 12)
    assert (picked.proof.before, picked.proof.after) == (1 + 6 + 12, 1 + 6 + 1)
    assert reused.proof.together == picked.proof.together == 3
    assert picked.proof.together_with == (reused.call_site,)
    assert f"with the fix for {reused.call_site} too: 19 -> 3 queries" in picked.message


def reviewers():
    return list(Author.objects.filter(name__startswith="R").order_by("id"))


def texts_by(book, people):
    texts = []
    for row in people:  # a loop variable named like the advice's own
        try:
            texts.append(book.review_set.get(reviewer=row).text)
        except Review.DoesNotExist:
            texts.append(None)
    return texts


def texts_by_key(book, keys):
    texts = []
    for reviewer_id in keys:
        try:
            texts.append(book.review_set.get(reviewer_id=reviewer_id).text)
        except Review.DoesNotExist:
            texts.append(None)
    return texts


def pasted_pick(finding, **names):
    """Each book's rows as the advice's pick gives them, with the loop's values in ``names``."""
    pick = finding.advice.split("pick from the list: ")[1].split(" (one row")[0]
    name, values = next(iter(names.items()))
    return [
        [[r.text for r in eval(pick, {"book": book, name: value})] for value in values]
        for book in pasted(finding.fix)
    ]


@pytest.mark.usefixtures("two_reviewers")
@pytest.mark.parametrize(
    ("read", "name", "values"),
    [
        (texts_by, "row", lambda: reviewers()),
        (texts_by_key, "reviewer_id", lambda: [r.pk for r in reviewers()]),
    ],
)
def test_the_pick_pasted_as_written_gives_what_the_call_gave(read, name, values):
    """The advice's own loop variable never hides the code's (``row``), and a key compared
    by its ``_id`` name is compared as it is, not through ``.pk``."""

    def page():
        return [read(book, values()) for book in Book.objects.order_by("id")]

    with detect() as report:
        expected = page()
    [finding] = [f for f in report.findings if f.relation == "shop.Book.review_set"]
    picked = pasted_pick(finding, **{name: values()})
    assert [[texts[0] if texts else None for texts in book] for book in picked] == expected
    [proven] = rerun([finding], lambda: 200 if page() == expected else 500)
    assert proven.proof.verdict == "proven", proven.proof


@pytest.mark.usefixtures("two_reviewers")
def test_a_filtered_read_that_goes_on_after_the_pick_gets_no_pick():
    """.filter(reviewer=r).order_by("-id").first() is one row in an order: a list is not it."""

    def page():
        return [
            [book.review_set.filter(reviewer=r).order_by("-id").first() for r in reviewers()]
            for book in Book.objects.order_by("id")
        ]

    with detect() as report:
        page()
    [finding] = [f for f in report.findings if f.relation == "shop.Book.review_set"]
    assert "pick from the list" not in (finding.advice or "")
    assert finding.target is None or not finding.target.row_calls


class ReviewTexts:
    def texts(self, book, people):
        return [
            [review.text for review in book.review_set.filter(reviewer=person)]
            for person in people
        ]


class TagNames:
    def texts(self, book):
        return [[tag.name for tag in Tag.objects.order_by("id")] for _ in range(1)]


@pytest.mark.usefixtures("two_reviewers")
def test_fixes_in_two_functions_of_one_name_are_not_proven_together():
    """Two comprehensions (Python 3.11 names both <listcomp>) in two methods of one file are
    two functions: their fixes are two edits."""
    Tag.objects.create(name="t")

    def page():
        people = reviewers()
        return [
            (ReviewTexts().texts(book, people), TagNames().texts(book))
            for book in Book.objects.order_by("id")
        ]

    with detect() as report:
        expected = page()
    proven = rerun(report.findings, lambda: 200 if page() == expected else 500)
    assert {f.relation for f in proven} >= {"shop.Book.review_set", "shop.Tag"}
    assert all(f.proof.verdict == "proven" for f in proven), [f.proof for f in proven]
    assert all(f.proof.together is None for f in proven), [(f.call_site, f.proof) for f in proven]


@pytest.fixture
def summarized(db):
    """3 authors with 2 books each, one with a summary; each book's editor is the next
    author."""
    authors = [Author.objects.create(name=f"A{i}") for i in range(3)]
    for i, author in enumerate(authors):
        editor = authors[(i + 1) % 3]
        Book.objects.create(title=f"{author.name} plain", author=author, editor=editor)
        Book.objects.create(title=f"{author.name} told", summary="s", author=author, editor=editor)
    return [author.pk for author in authors]


def summarized_page(pks):
    """Each author fetched on its own (a detail page's row), its books read through a method
    that looks for a prefetch attribute first, as django-oscar's product pages do."""
    shown = []
    for pk in pks:
        author = Author.objects.prefetch_related("books").get(pk=pk)  # rows fetched here
        books = author.summarized_books()
        if isinstance(books, models.QuerySet):
            books = books.select_related("editor")
        shown.append([(book.title, book.editor.name) for book in books])
    return shown


def test_a_read_the_model_answers_from_its_own_prefetch_attribute_gets_that_prefetch(summarized):
    """The method reads self._prefetched_summarized_books when it is set: the fix is that
    Prefetch (keeping the read's own eager loads) in place of the plain "books" prefetch,
    which that method never reads. Proven by the re-run; --write leaves it to a person."""
    from django_dbtune.nplusone.codemod import plan

    with detect() as report:
        expected = summarized_page(summarized)
    [finding] = [f for f in report.findings if f.relation == "shop.Book.author"]
    assert finding.fix == (
        'Prefetch("books", queryset=Book.objects.summarized().select_related("editor"), '
        'to_attr="_prefetched_summarized_books") in place of "books" in .prefetch_related(...)'
    )
    assert finding.queryset_site == f"{HERE}:{line_of('# rows fetched here')}"
    assert "Author.summarized_books()" in finding.advice
    [proven] = rerun([finding], lambda: 200 if summarized_page(summarized) == expected else 500)
    assert proven.proof.verdict == "proven", proven.proof
    assert (proven.proof.before, proven.proof.after) == (9, 6)
    [(_, reason)] = plan([proven], since=0).skipped
    assert "to_attr" in reason


def test_a_guarded_read_with_arguments_gets_no_prefetch_of_its_own(db):
    """Publisher.named_authors() goes on after .all() with exclude(name=""): a Prefetch of
    Author.objects.all() would hold other rows (and its proof, counting queries only, would
    pass), so none is offered."""
    from tests.shop.models import Publisher

    pks = []
    for i in range(3):
        publisher = Publisher.objects.create(name=f"P{i}")
        Author.objects.create(name=f"A{i}", publisher=publisher)
        Author.objects.create(name="", publisher=publisher)
        pks.append(publisher.pk)
    with detect() as report:
        for pk in pks:
            publisher = Publisher.objects.prefetch_related("authors").get(pk=pk)
            [author.name for author in publisher.named_authors()]
    [finding] = [f for f in report.findings if f.relation == "shop.Author.publisher"]
    assert "Prefetch(" not in finding.fix
    assert finding.proof is not None and finding.proof.verdict == "unproven"
