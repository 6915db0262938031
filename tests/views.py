"""Views only the tests request."""

from django.http import HttpRequest, JsonResponse

from publisher.models import Tag


async def async_tags(request: HttpRequest) -> JsonResponse:
    names = [tag.name async for tag in Tag.objects.order_by("name")]
    count = await Tag.objects.acount()
    return JsonResponse({"names": names, "count": count})


def sync_tags(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"names": [tag.name for tag in Tag.objects.order_by("name")]})
