from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from publisher.models import Business, Post


def business_list(request: HttpRequest) -> HttpResponse:
    businesses = Business.objects.order_by("slug")[:50]
    rows = []
    for business in businesses:
        # N+1 (reverse foreign key): one query per business for its accounts.
        accounts = list(business.social_accounts.all())
        rows.append({"business": business, "accounts": accounts})
    return render(request, "publisher/business_list.html", {"rows": rows})


def post_list(request: HttpRequest) -> HttpResponse:
    posts = Post.objects.select_related("account__business").order_by("-id")[:50]
    # N+1 (many-to-many): the template reads post.tags.all for every post.
    return render(request, "publisher/post_list.html", {"posts": posts})


def post_detail(request: HttpRequest, pk: int) -> HttpResponse:
    post = get_object_or_404(Post.objects.select_related("account__business"), pk=pk)
    return render(request, "publisher/post_detail.html", {"post": post, "tags": post.tags.all()})


def publishing_queue(request: HttpRequest) -> HttpResponse:
    # Slow spot: equality on status, then sorted by scheduled_for; no index covers the pair.
    posts = Post.objects.filter(status="scheduled").order_by("scheduled_for")
    posts = posts.select_related("account__business")[:50]
    return render(request, "publisher/queue.html", {"posts": posts})
