"""Stands for an installed library's view (a CMS listing): named in IGNORED_MODULES by the
test that requests it, so none of its lines is the project's."""

from django.http import HttpRequest, JsonResponse
from django.views.generic import ListView

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
