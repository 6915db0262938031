"""Small, explicit builders of example-project rows for tests that need exact counts."""

from datetime import UTC, datetime
from decimal import Decimal

from django.contrib.auth import get_user_model

from crawler.models import CrawlJob, PageResult, Website
from marketplace.models import Job, UserProfile
from publisher.models import Business, Post, SocialAccount, Tag

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def user(name: str):
    return get_user_model().objects.create(username=name)


def profile(name: str, role: str = "freelancer") -> UserProfile:
    return UserProfile.objects.create(
        user=user(name),
        role=role,
        display_name=name.title(),
        country="FR",
        hourly_rate=Decimal("50"),
        rating=Decimal("4.5"),
        joined_at=WHEN,
    )


def page_results(n: int) -> None:
    owner = user(f"site-owner-{PageResult.objects.count()}")
    for i in range(n):
        website = Website.objects.create(
            owner=owner, name=f"Site {i}", domain=f"s{i}-{owner.pk}.test", created_at=WHEN
        )
        job = CrawlJob.objects.create(website=website, status="done", started_at=WHEN)
        PageResult.objects.create(
            crawl_job=job,
            url=f"https://{website.domain}/",
            status_code=200,
            score=90,
            title="Home",
            load_time_ms=120,
            word_count=300,
            crawled_at=WHEN,
        )


def businesses(n: int) -> None:
    owner = user(f"business-owner-{Business.objects.count()}")
    for i in range(n):
        business = Business.objects.create(
            owner=owner, name=f"B{i}", slug=f"b{i}-{owner.pk}", created_at=WHEN
        )
        SocialAccount.objects.create(
            business=business, platform="x", handle=f"b{i}", connected_at=WHEN
        )


def posts(n: int) -> None:
    businesses(1)
    account = SocialAccount.objects.latest("pk")
    tag, _ = Tag.objects.get_or_create(name="launch")
    for i in range(n):
        post = Post.objects.create(
            account=account, body=f"Post {i}", status="published", created_at=WHEN
        )
        post.tags.add(tag)


def open_jobs(n: int) -> None:
    for i in range(n):
        client = profile(f"client-{Job.objects.count()}-{i}", role="client")
        Job.objects.create(
            client=client,
            title=f"Job {i}",
            description="",
            category="design",
            budget=Decimal("100"),
            status="open",
            created_at=WHEN,
        )


def freelancers(n: int) -> None:
    start = UserProfile.objects.count()
    for i in range(n):
        profile(f"freelancer-{start + i}")
