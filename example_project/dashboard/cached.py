"""CACHE-1, fixed: the dashboard's numbers from django-dbtune's query cache.

``views.index`` recomputes eight whole-table aggregates on every visit. Here they are
computed once, then served from the cache until one of their tables is written, by anyone
and in any way (a save, a bulk update, raw SQL). ``/cached/`` renders the same page.
"""

from django.db.models import Avg, Count, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from crawler.models import PageResult, Recommendation, Website
from django_dbtune.cache import cached
from marketplace.models import Job, Payment
from publisher.models import Post


@cached(depends_on=[Website, PageResult, Recommendation, Post, Job, Payment])
def dashboard_numbers() -> dict[str, object]:
    return {
        "websites": Website.objects.count(),
        "pages": PageResult.objects.aggregate(count=Count("id"), score=Avg("score")),
        "status_codes": list(
            PageResult.objects.values("status_code")
            .annotate(count=Count("id"))
            .order_by("status_code")
        ),
        "open_recommendations": Recommendation.objects.filter(
            implementation_status="open"
        ).count(),
        "posts_by_status": list(
            Post.objects.values("status").annotate(count=Count("id")).order_by("status")
        ),
        "likes": Post.objects.aggregate(total=Sum("like_count")),
        "jobs_by_status": list(
            Job.objects.values("status").annotate(count=Count("id")).order_by("status")
        ),
        "revenue": Payment.objects.filter(status=Payment.Status.COMPLETED).aggregate(
            total=Sum("amount"), count=Count("id")
        ),
    }


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/index.html", dashboard_numbers())
