"""Stands for a search library's results (django-haystack's ``SearchResult``): each result
loads its row by key when a template reads ``result.object``, through the library's own
queryset. Named in IGNORED_MODULES by the tests that use it, so none of its lines is the
project's: the line to show is the template's."""

from functools import cached_property

from django.db.models import Count

from tests.shop.models import Author, Book, Tag


class Result:
    def __init__(self, pk: int) -> None:
        self.pk = pk

    @cached_property
    def object(self) -> Book:
        # The library's read: its manager's condition, annotation and eager loads, then
        # the key.
        books = Book.objects.filter(summary__gt="").annotate(comments_count=Count("comments"))
        return books.prefetch_related("tags").get(pk=self.pk)

    @property
    def facet(self) -> str:
        # The same lookup, with the same values, for every result.
        return str(Tag.objects.order_by("id").first())


class Pair(Result):
    """A result that loads its book, then the book's author, each by key and nothing else,
    both read on the same template line."""

    @cached_property
    def book(self) -> Book:
        return Book.objects.get(pk=self.pk)

    @cached_property
    def writer(self) -> Author:
        return Author.objects.get(pk=self.book.author_id)
