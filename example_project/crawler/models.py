"""An SEO crawler: customers' websites, crawl jobs, the pages each job fetched, and advice."""

from django.conf import settings
from django.db import models


class Website(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="websites"
    )
    name = models.CharField(max_length=200)
    domain = models.CharField(max_length=253, unique=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.domain


class CrawlJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    website = models.ForeignKey(Website, on_delete=models.CASCADE, related_name="crawl_jobs")
    status = models.CharField(max_length=20, choices=Status)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    pages_crawled = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"crawl #{self.pk} of {self.website_id}"


class PageResult(models.Model):
    crawl_job = models.ForeignKey(CrawlJob, on_delete=models.CASCADE, related_name="pages")
    # Slow spot: searched with url__startswith, and no index covers it.
    url = models.CharField(max_length=2000)
    # Slow spot: the broken-pages report filters on it, newest first; no index covers it.
    status_code = models.PositiveSmallIntegerField()
    score = models.PositiveSmallIntegerField()
    title = models.CharField(max_length=300)
    load_time_ms = models.PositiveIntegerField()
    word_count = models.PositiveIntegerField()
    crawled_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.url


class Recommendation(models.Model):
    class Type(models.TextChoices):
        MISSING_TITLE = "missing_title"
        MISSING_META = "missing_meta_description"
        SLOW_PAGE = "slow_page"
        BROKEN_LINK = "broken_link"
        THIN_CONTENT = "thin_content"

    class Status(models.TextChoices):
        OPEN = "open"
        IN_PROGRESS = "in_progress"
        DONE = "done"
        DISMISSED = "dismissed"

    # Slow spot: a foreign key without an index (db_index=False), yet filtered on.
    website = models.ForeignKey(
        Website, on_delete=models.CASCADE, related_name="recommendations", db_index=False
    )
    page = models.ForeignKey(PageResult, on_delete=models.CASCADE, related_name="recommendations")
    type = models.CharField(max_length=40, choices=Type)
    # Slow spot: the to-do list filters on the constant "open" (a few percent of rows).
    implementation_status = models.CharField(max_length=20, choices=Status, default=Status.OPEN)
    priority = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.get_type_display()} on {self.page_id}"
