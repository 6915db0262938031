"""The two pages bench/nplusone_overhead.py requests: 200 rows each, with their relations
prefetched (4 queries) or loaded lazily, one foreign key per row (201 queries)."""

from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.urls import path

from crawler.models import PageResult

ROWS = 200
PREFETCHED = Template(
    "{% for page in pages %}{{ page.url }} {{ page.crawl_job.status }} "
    "{{ page.crawl_job.website.domain }}"
    "{% for advice in page.recommendations.all %} {{ advice.type }}{% endfor %}\n{% endfor %}"
)
LAZY = Template("{% for page in pages %}{{ page.url }} {{ page.crawl_job.status }}\n{% endfor %}")


def prefetched(request: HttpRequest) -> HttpResponse:
    pages = PageResult.objects.prefetch_related("crawl_job__website", "recommendations")
    return HttpResponse(PREFETCHED.render(Context({"pages": pages.order_by("id")[:ROWS]})))


def n_plus_one(request: HttpRequest) -> HttpResponse:
    pages = PageResult.objects.order_by("id")[:ROWS]
    return HttpResponse(LAZY.render(Context({"pages": pages})))


urlpatterns = [path("prefetched/", prefetched), path("n-plus-one/", n_plus_one)]
