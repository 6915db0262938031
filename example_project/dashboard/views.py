from django.db.models import Avg, Count, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from crawler.models import PageResult, Recommendation, Website
from marketplace.models import Job, Payment
from publisher.models import Post


def index(request: HttpRequest) -> HttpResponse:
    # Worth caching: whole-table aggregates on every visit, over data that changes slowly.
    context = {
        "websites": Website.objects.count(),
        "pages": PageResult.objects.aggregate(count=Count("id"), score=Avg("score")),
        "status_codes": PageResult.objects.values("status_code")
        .annotate(count=Count("id"))
        .order_by("status_code"),
        "open_recommendations": Recommendation.objects.filter(
            implementation_status="open"
        ).count(),
        "posts_by_status": Post.objects.values("status")
        .annotate(count=Count("id"))
        .order_by("status"),
        "likes": Post.objects.aggregate(total=Sum("like_count")),
        "jobs_by_status": Job.objects.values("status")
        .annotate(count=Count("id"))
        .order_by("status"),
        "revenue": Payment.objects.filter(status=Payment.Status.COMPLETED).aggregate(
            total=Sum("amount"), count=Count("id")
        ),
    }
    return render(request, "dashboard/index.html", context)
