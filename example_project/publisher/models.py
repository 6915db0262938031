"""A social publisher: businesses, their social accounts, and published or scheduled posts."""

from django.conf import settings
from django.db import models


class Business(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="businesses"
    )
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    timezone = models.CharField(max_length=64, default="UTC")
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "businesses"

    def __str__(self) -> str:
        return self.name


class SocialAccount(models.Model):
    class Platform(models.TextChoices):
        FACEBOOK = "facebook"
        INSTAGRAM = "instagram"
        LINKEDIN = "linkedin"
        X = "x"
        TIKTOK = "tiktok"

    business = models.ForeignKey(
        Business, on_delete=models.CASCADE, related_name="social_accounts"
    )
    platform = models.CharField(max_length=20, choices=Platform)
    handle = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    connected_at = models.DateTimeField()

    class Meta:
        indexes = [
            # Slow spot: redundant, a prefix of the index below; it only costs writes.
            models.Index(fields=["platform"], name="publisher_account_platform_idx"),
            models.Index(fields=["platform", "is_active"], name="publisher_account_plat_act"),
        ]

    def __str__(self) -> str:
        return f"@{self.handle} on {self.platform}"


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    def __str__(self) -> str:
        return self.name


class Post(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        SCHEDULED = "scheduled"
        PUBLISHED = "published"
        FAILED = "failed"

    account = models.ForeignKey(SocialAccount, on_delete=models.CASCADE, related_name="posts")
    body = models.TextField()
    # Slow spot (with scheduled_for): the publishing queue filters on status and sorts by
    # scheduled_for, and no index covers the pair.
    status = models.CharField(max_length=20, choices=Status)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    like_count = models.PositiveIntegerField(default=0)
    tags = models.ManyToManyField(Tag, related_name="posts", blank=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.body[:40]
