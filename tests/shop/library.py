"""Stands for an installed library's view (a CMS listing): named in IGNORED_MODULES by the
test that requests it, so none of its lines is the project's."""

from django.http import HttpRequest, JsonResponse

from tests.shop.models import Book


def listing(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"rows": [f"{b.title} by {b.author.name}" for b in Book.objects.all()]})
