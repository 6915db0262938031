from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from crawler.models import PageResult, Recommendation, Website

PER_PAGE = 50


def website_list(request: HttpRequest) -> HttpResponse:
    websites = Website.objects.select_related("owner").order_by("domain")
    page = Paginator(websites, PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "crawler/website_list.html", {"page": page})


def website_detail(request: HttpRequest, pk: int) -> HttpResponse:
    website = get_object_or_404(Website.objects.select_related("owner"), pk=pk)
    crawl_jobs = website.crawl_jobs.order_by("-started_at")[:10]
    # Slow spot: Recommendation.website has no index, so this scans every recommendation.
    recommendations = website.recommendations.select_related("page").order_by("-priority")[:20]
    context = {"website": website, "crawl_jobs": crawl_jobs, "recommendations": recommendations}
    return render(request, "crawler/website_detail.html", context)


def page_list(request: HttpRequest) -> HttpResponse:
    pages = PageResult.objects.order_by("id")
    prefix = request.GET.get("url", "")
    if prefix:
        # Slow spot: a prefix search on an unindexed URL column.
        pages = pages.filter(url__startswith=prefix).order_by("url")
    page = Paginator(pages, PER_PAGE).get_page(request.GET.get("page"))
    # N+1: the template reads page.crawl_job.website for every row (see the template).
    return render(request, "crawler/page_list.html", {"page": page, "prefix": prefix})


def broken_pages(request: HttpRequest) -> HttpResponse:
    # Slow spot: equality on status_code, newest first; no index covers them.
    pages = PageResult.objects.filter(status_code=404).select_related("crawl_job__website")
    page = Paginator(pages.order_by("-crawled_at"), PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "crawler/broken_pages.html", {"page": page})


def recommendation_list(request: HttpRequest) -> HttpResponse:
    # Slow spot: a constant status filter (a few percent of rows), suited to a partial index.
    recommendations = Recommendation.objects.filter(implementation_status="open")
    recommendations = recommendations.select_related("website", "page").order_by("-priority")
    page = Paginator(recommendations, PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "crawler/recommendation_list.html", {"page": page})
