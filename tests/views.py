"""Views only the tests request."""

from django.http import HttpRequest, JsonResponse

from publisher.models import Business, Tag


async def async_tags(request: HttpRequest) -> JsonResponse:
    names = [tag.name async for tag in Tag.objects.order_by("name")]
    count = await Tag.objects.acount()
    return JsonResponse({"names": names, "count": count})


def sync_tags(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"names": [tag.name for tag in Tag.objects.order_by("name")]})


def tag_count(request: HttpRequest, name: str) -> JsonResponse:
    """The same count, run again from three places (the name: a user's own data)."""
    first = Tag.objects.filter(name=name).count()
    again = Tag.objects.filter(name=name).count()
    still = Tag.objects.filter(name=name).count()
    return JsonResponse({"count": first, "same": first == again == still})


def my_businesses(request: HttpRequest) -> JsonResponse:
    # N+1 (reverse foreign key), behind login_required (in tests/urls.py) as real list
    # pages are.
    businesses = Business.objects.order_by("slug")
    return JsonResponse({b.slug: [a.handle for a in b.social_accounts.all()] for b in businesses})
