"""Deterministic, realistic demo data for the example project, written with bulk_create.

Scale 1 writes about 13,000 rows (5,000 page results); page results grow as 5,000 x scale,
so scale 200 writes 1,000,000 of them. The same scale and seed always give the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.core.management.color import no_style
from django.db import connections, models, transaction

from crawler.models import CrawlJob, PageResult, Recommendation, Website
from marketplace.models import Application, Job, Payment, Review, UserProfile
from publisher.models import Business, Post, SocialAccount, Tag

BATCH_SIZE = 2000
START = datetime(2026, 1, 1, tzinfo=UTC)
USERNAME_PREFIX = "demo-"

DEMO_MODELS: list[type[models.Model]] = [
    Recommendation,
    PageResult,
    CrawlJob,
    Website,
    Post.tags.through,
    Post,
    Tag,
    SocialAccount,
    Business,
    Review,
    Payment,
    Application,
    Job,
    UserProfile,
]

WORDS = [
    "growth",
    "analytics",
    "cloud",
    "studio",
    "outdoor",
    "kitchen",
    "bright",
    "north",
    "river",
    "craft",
    "pixel",
    "urban",
    "green",
    "solar",
    "harbor",
    "summit",
    "maple",
    "atlas",
    "copper",
    "lumen",
    "orbit",
    "field",
    "stone",
    "coastal",
    "swift",
]
SECTIONS = ["blog", "products", "docs", "pricing", "careers", "help", "news", "about"]
TAGS = [
    "launch",
    "promo",
    "hiring",
    "tips",
    "howto",
    "behindthescenes",
    "event",
    "webinar",
    "casestudy",
    "update",
    "sale",
    "community",
    "product",
    "team",
    "culture",
    "seo",
    "design",
    "engineering",
    "marketing",
    "sustainability",
    "announcement",
    "newsletter",
    "giveaway",
    "holiday",
    "feature",
    "release",
    "partner",
    "story",
    "video",
    "live",
]
FIRST = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Guido",
    "Radia",
    "Tim",
    "Frances",
    "Dennis",
    "Sophie",
]
LAST = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Rossum",
    "Perlman",
    "Lee",
]
COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "NG", "PL", "ES", "CA", "AU", "JP"]
PLATFORMS = [choice.value for choice in SocialAccount.Platform]

T = TypeVar("T", bound=models.Model)


@dataclass(frozen=True)
class Plan:
    """How many rows of each kind one scale means."""

    users: int
    websites: int
    crawls_per_website: int
    pages_per_crawl: int
    businesses: int
    posts_per_account: int
    jobs: int

    @classmethod
    def for_scale(cls, scale: float) -> Plan:
        def n(base: int) -> int:
            return max(1, round(base * scale))

        return cls(
            users=max(4, n(200)),
            websites=n(50),
            crawls_per_website=4,
            pages_per_crawl=25,
            businesses=n(40),
            posts_per_account=10,
            jobs=n(300),
        )

    @property
    def page_results(self) -> int:
        return self.websites * self.crawls_per_website * self.pages_per_crawl

    @property
    def total(self) -> int:
        """The rows seed() writes, near enough for a progress bar."""
        posts = self.businesses * 3 * self.posts_per_account
        return (
            self.users * 2
            + self.websites * (1 + self.crawls_per_website)
            + self.page_results * 13 // 10
            + len(TAGS)
            + self.businesses * 4
            + posts * 5 // 2
            + self.jobs * 6
            + self.jobs // 2
        )


def has_demo_data(using: str = "default") -> bool:
    users = get_user_model().objects.using(using)
    return (
        users.filter(username__startswith=USERNAME_PREFIX).exists()
        or PageResult.objects.using(using).exists()
    )


def reset(using: str = "default") -> None:
    """Empty the demo tables with Django's own flush SQL (TRUNCATE on PostgreSQL). On
    MariaDB and MySQL, whose TRUNCATE commits the transaction it runs in, with DELETE: the
    ids go on from where they were."""
    connection = connections[using]
    tables = [model._meta.db_table for model in DEMO_MODELS]
    with transaction.atomic(using=using):
        # Deferred foreign key checks still pending in this transaction would block TRUNCATE.
        connection.check_constraints(table_names=tables)
        restart = connection.features.can_rollback_ddl  # TRUNCATE, and ids from 1 again
        sql = connection.ops.sql_flush(no_style(), tables, reset_sequences=restart)
        connection.ops.execute_sql_flush(sql)
        get_user_model().objects.using(using).filter(username__startswith=USERNAME_PREFIX).delete()


def seed(
    scale: float = 1.0,
    *,
    seed: int = 7,
    using: str = "default",
    progress: Callable[[int], Any] = lambda rows: None,
) -> dict[str, int]:
    """Write the demo data in one transaction; returns the row count per model."""
    plan = Plan.for_scale(scale)
    writer = _Writer(using, progress)
    rng = random.Random(seed)
    with transaction.atomic(using=using):
        profiles = _people(rng, plan, writer)
        _crawler(rng, plan, writer, [profile.user for profile in profiles])
        _publisher(rng, plan, writer, [profile.user for profile in profiles])
        _marketplace(rng, plan, writer, profiles)
    return writer.counts


class _Writer:
    def __init__(self, using: str, progress: Callable[[int], Any]) -> None:
        self.using = using
        self.progress = progress
        self.counts: dict[str, int] = {}

    def write(self, model: type[T], objects: Sequence[T]) -> list[T]:
        created: list[T] = []
        for start in range(0, len(objects), BATCH_SIZE):
            batch = objects[start : start + BATCH_SIZE]
            created.extend(model.objects.using(self.using).bulk_create(batch))
            self.progress(len(batch))
        label = model._meta.label
        self.counts[label] = self.counts.get(label, 0) + len(created)
        return created


def _at(rng: random.Random, days: float) -> datetime:
    return START + timedelta(seconds=rng.uniform(0, days * 86400))


def _people(rng: random.Random, plan: Plan, writer: _Writer) -> list[UserProfile]:
    User = get_user_model()
    users = writer.write(
        User,
        [
            User(
                username=f"{USERNAME_PREFIX}{i:06d}",
                email=f"user{i}@example.com",
                password="!",  # an unusable password, as set_unusable_password() writes
                first_name=rng.choice(FIRST),
                last_name=rng.choice(LAST),
                date_joined=_at(rng, 300),
            )
            for i in range(plan.users)
        ],
    )
    profiles = [
        UserProfile(
            user=user,
            role=UserProfile.Role.FREELANCER if rng.random() < 0.6 else UserProfile.Role.CLIENT,
            display_name=f"{user.first_name} {user.last_name}",
            country=rng.choice(COUNTRIES),
            hourly_rate=Decimal(rng.randrange(1500, 20000)) / 100,
            rating=Decimal(rng.randrange(250, 501)) / 100,
            joined_at=user.date_joined,
        )
        for user in users
    ]
    return writer.write(UserProfile, profiles)


def _weighted(rng: random.Random, choices: dict[Any, float]) -> Any:
    return rng.choices(list(choices), weights=list(choices.values()))[0]


def _crawler(rng: random.Random, plan: Plan, writer: _Writer, owners: list[Any]) -> None:
    websites = writer.write(
        Website,
        [
            Website(
                owner=rng.choice(owners),
                name=f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()}",
                domain=f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{i}.example.com",
                created_at=_at(rng, 30),
            )
            for i in range(plan.websites)
        ],
    )
    jobs = writer.write(
        CrawlJob,
        [
            CrawlJob(
                website=website,
                status=_weighted(
                    rng, {"done": 0.85, "failed": 0.07, "running": 0.05, "queued": 0.03}
                ),
                started_at=(started := _at(rng, 330)),
                finished_at=started + timedelta(minutes=rng.randrange(2, 90)),
                pages_crawled=plan.pages_per_crawl,
            )
            for website in websites
            for _ in range(plan.crawls_per_website)
        ],
    )
    # Page results are most of the rows: write them a slice of crawl jobs at a time.
    per_slice = max(1, BATCH_SIZE * 5 // plan.pages_per_crawl)
    for start in range(0, len(jobs), per_slice):
        batch = jobs[start : start + per_slice]
        pages = writer.write(PageResult, list(_pages(rng, plan, batch, start + 1)))
        writer.write(Recommendation, list(_recommendations(rng, pages)))


def _pages(
    rng: random.Random, plan: Plan, jobs: list[CrawlJob], first: int
) -> Iterator[PageResult]:
    """The pages of ``jobs``, the first of them crawl number ``first`` (its id on a fresh
    database; ids go on after a reset on MariaDB, the URLs stay the same)."""
    status_codes = {200: 0.86, 301: 0.05, 404: 0.04, 500: 0.01, 503: 0.01, 302: 0.03}
    for number, job in enumerate(jobs, first):
        domain = job.website.domain
        for n in range(plan.pages_per_crawl):
            status = _weighted(rng, status_codes)
            yield PageResult(
                crawl_job=job,
                url=f"https://{domain}/{rng.choice(SECTIONS)}/{rng.choice(WORDS)}-{number}-{n}",
                status_code=status,
                score=rng.randrange(0, 101) if status == 200 else rng.randrange(0, 30),
                title=f"{rng.choice(WORDS).title()} {rng.choice(WORDS)} {rng.choice(WORDS)}",
                load_time_ms=int(rng.lognormvariate(6.3, 0.6)),
                word_count=rng.randrange(40, 4000),
                crawled_at=job.started_at + timedelta(seconds=n * 3),
            )


def _recommendations(rng: random.Random, pages: list[PageResult]) -> Iterator[Recommendation]:
    statuses = {"open": 0.06, "in_progress": 0.10, "done": 0.70, "dismissed": 0.14}
    types = [choice.value for choice in Recommendation.Type]
    for page in pages:
        if rng.random() < 0.3:
            yield Recommendation(
                website_id=page.crawl_job.website_id,
                page=page,
                type=rng.choice(types),
                implementation_status=_weighted(rng, statuses),
                priority=rng.randrange(1, 101),
                created_at=page.crawled_at,
            )


def _publisher(rng: random.Random, plan: Plan, writer: _Writer, owners: list[Any]) -> None:
    tags = writer.write(Tag, [Tag(name=name) for name in TAGS])
    businesses = writer.write(
        Business,
        [
            Business(
                owner=rng.choice(owners),
                name=f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} Co",
                slug=f"business-{i}",
                timezone=rng.choice(["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"]),
                created_at=_at(rng, 60),
            )
            for i in range(plan.businesses)
        ],
    )
    accounts = writer.write(
        SocialAccount,
        [
            SocialAccount(
                business=business,
                platform=platform,
                handle=f"{business.slug}-{platform}",
                is_active=rng.random() < 0.9,
                connected_at=business.created_at,
            )
            for business in businesses
            for platform in rng.sample(PLATFORMS, 3)
        ],
    )
    statuses = {"published": 0.70, "draft": 0.15, "scheduled": 0.10, "failed": 0.05}
    posts = []
    for account in accounts:
        for _ in range(plan.posts_per_account):
            status = _weighted(rng, statuses)
            created = _at(rng, 300)
            posts.append(
                Post(
                    account=account,
                    body=" ".join(rng.choices(WORDS, k=rng.randrange(8, 30))).capitalize() + ".",
                    status=status,
                    scheduled_for=created + timedelta(days=rng.uniform(1, 60))
                    if status == "scheduled"
                    else None,
                    published_at=created if status == "published" else None,
                    like_count=rng.randrange(0, 500) if status == "published" else 0,
                    created_at=created,
                )
            )
    posts = writer.write(Post, posts)
    writer.write(
        Post.tags.through,
        [
            Post.tags.through(post_id=post.pk, tag_id=tag.pk)
            for post in posts
            for tag in rng.sample(tags, rng.randrange(0, 4))
        ],
    )


def _marketplace(
    rng: random.Random, plan: Plan, writer: _Writer, profiles: list[UserProfile]
) -> None:
    clients = [p for p in profiles if p.role == UserProfile.Role.CLIENT] or profiles
    freelancers = [p for p in profiles if p.role == UserProfile.Role.FREELANCER] or profiles
    jobs = writer.write(
        Job,
        [
            Job(
                client=rng.choice(clients),
                title=f"{rng.choice(['Build', 'Design', 'Write', 'Audit', 'Migrate'])} "
                f"{rng.choice(WORDS)} {rng.choice(['site', 'app', 'campaign', 'report'])}",
                description=" ".join(rng.choices(WORDS, k=40)).capitalize() + ".",
                category=rng.choice([choice.value for choice in Job.Category]),
                budget=Decimal(rng.randrange(100, 20000)),
                status=_weighted(rng, {"open": 0.3, "in_progress": 0.2, "closed": 0.5}),
                created_at=_at(rng, 330),
            )
            for _ in range(plan.jobs)
        ],
    )
    writer.write(
        Application,
        [
            Application(
                job=job,
                freelancer=freelancer,
                bid=job.budget * Decimal(rng.randrange(70, 121)) / 100,
                cover_letter=" ".join(rng.choices(WORDS, k=25)).capitalize() + ".",
                status=_weighted(rng, {"pending": 0.6, "accepted": 0.1, "rejected": 0.3}),
                created_at=job.created_at + timedelta(hours=rng.randrange(1, 200)),
            )
            for job in jobs
            for freelancer in rng.sample(freelancers, min(4, len(freelancers)))
        ],
    )
    statuses = {"completed": 0.85, "pending": 0.08, "failed": 0.04, "refunded": 0.03}
    writer.write(
        Payment,
        [
            Payment(
                job=job,
                payer=job.client,
                recipient=rng.choice(freelancers),
                amount=job.budget,
                status=_weighted(rng, statuses),
                created_at=job.created_at + timedelta(days=rng.randrange(1, 30)),
            )
            for job in jobs
        ],
    )
    writer.write(
        Review,
        [
            Review(
                job=job,
                reviewer=job.client,
                reviewee=rng.choice(freelancers),
                rating=rng.choices([1, 2, 3, 4, 5], weights=[2, 3, 10, 35, 50])[0],
                comment=" ".join(rng.choices(WORDS, k=15)).capitalize() + ".",
                created_at=job.created_at + timedelta(days=rng.randrange(5, 60)),
            )
            for job in jobs[: plan.jobs // 2]
        ],
    )
