"""The two pages bench/nplusone_overhead.py requests: 200 rows, lazy or eagerly loaded."""

from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.urls import path

from crawler.models import PageResult

ROWS = 200
TEMPLATE = Template(
    "{% for page in pages %}{{ page.url }} {{ page.crawl_job.status }} "
    "{{ page.crawl_job.website.domain }}\n{% endfor %}"
)


def n_plus_one(request: HttpRequest) -> HttpResponse:
    pages = PageResult.objects.order_by("id")[:ROWS]
    return HttpResponse(TEMPLATE.render(Context({"pages": pages})))


def eager(request: HttpRequest) -> HttpResponse:
    pages = PageResult.objects.select_related("crawl_job__website").order_by("id")[:ROWS]
    return HttpResponse(TEMPLATE.render(Context({"pages": pages})))


urlpatterns = [path("n-plus-one/", n_plus_one), path("eager/", eager)]
