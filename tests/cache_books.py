"""One book read through the query cache, as the cache engine tests use it."""

from tests.shop.models import Author, Book, Publisher


def make_book() -> Book:
    author = Author.objects.create(name="A", publisher=Publisher.objects.create(name="P"))
    return Book.objects.create(title="before", author=author)


def title(pk: int) -> str:
    """The book's title, read through the cache."""
    return Book.cached_objects.cached().get(pk=pk).title
