"""Stands for an installed library's view (a CMS listing): named in IGNORED_MODULES by the
test that requests it, so none of its lines is the project's."""

from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.views.generic import ListView, TemplateView, View

from tests.shop.models import Author, Book


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


class Dashboard(TemplateView):
    """A library's page that builds a queryset in get_context_data: no method of it returns
    the queryset, so no subclass can override one to fix it."""

    template_name = "shop/book_list.html"

    def get_context_data(self, **kwargs: object) -> dict[str, object]:
        return {**super().get_context_data(**kwargs), "books": Book.objects.order_by("id")}


class AuthorIndex(ListView):
    """A library's author listing that also reads a list of books: the view's queryset is
    not that list's."""

    model = Author

    def shelf(self):
        return Book.objects.order_by("id")

    def get(self, request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
        names = [author.name for author in self.get_queryset()]
        titles = [f"{book.title} by {book.author.name}" for book in self.shelf()]
        return JsonResponse({"authors": names, "books": titles})
