"""Stands for an installed library's view (a CMS listing): named in IGNORED_MODULES by the
test that requests it, so none of its lines is the project's."""

from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.views.generic import ListView, View

from tests.shop.models import Book


def listing(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"rows": [f"{b.title} by {b.author.name}" for b in Book.objects.all()]})


class Listing(ListView):
    """A library's class-based listing (a CMS's index view): it builds the queryset and
    reads each row's author itself."""

    model = Book

    def get(self, request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
        rows = [f"{book.title} by {book.author.name}" for book in self.get_queryset()]
        return JsonResponse({"rows": rows})


class Shelf(View):
    """A library's listing that builds its queryset in a method of its own and returns a
    TemplateResponse, rendered (and the queryset run) after the view has returned."""

    def get_base_queryset(self):
        return Book.objects.order_by("id")

    def get(self, request: HttpRequest) -> TemplateResponse:
        books = self.get_base_queryset()
        return TemplateResponse(request, "shop/book_list.html", {"books": books})
