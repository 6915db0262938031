"""A freelance marketplace: profiles, jobs, applications, payments and reviews."""

from django.conf import settings
from django.db import models


class UserProfile(models.Model):
    class Role(models.TextChoices):
        CLIENT = "client"
        FREELANCER = "freelancer"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    # Slow spot (with rating): the freelancer directory filters on role and sorts by rating.
    role = models.CharField(max_length=20, choices=Role)
    display_name = models.CharField(max_length=100)
    country = models.CharField(max_length=2)
    hourly_rate = models.DecimalField(max_digits=8, decimal_places=2)
    rating = models.DecimalField(max_digits=3, decimal_places=2)
    joined_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.display_name


class Job(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        IN_PROGRESS = "in_progress"
        CLOSED = "closed"

    class Category(models.TextChoices):
        DEVELOPMENT = "development"
        DESIGN = "design"
        WRITING = "writing"
        MARKETING = "marketing"
        DATA = "data"

    client = models.ForeignKey(UserProfile, on_delete=models.CASCADE, related_name="jobs_posted")
    title = models.CharField(max_length=200)
    description = models.TextField()
    category = models.CharField(max_length=20, choices=Category)
    budget = models.DecimalField(max_digits=10, decimal_places=2)
    # Slow spot (with Meta.ordering): the job board filters on status, newest first.
    status = models.CharField(max_length=20, choices=Status)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class Application(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="applications")
    freelancer = models.ForeignKey(
        UserProfile, on_delete=models.CASCADE, related_name="applications"
    )
    bid = models.DecimalField(max_digits=10, decimal_places=2)
    cover_letter = models.TextField()
    status = models.CharField(max_length=20, choices=Status, default=Status.PENDING)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"application #{self.pk} to job {self.job_id}"


class Payment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        COMPLETED = "completed"
        FAILED = "failed"
        REFUNDED = "refunded"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="payments")
    payer = models.ForeignKey(UserProfile, on_delete=models.CASCADE, related_name="payments_made")
    recipient = models.ForeignKey(
        UserProfile, on_delete=models.CASCADE, related_name="payments_received"
    )
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    # Slow spot: the payments desk filters on status, and no index covers it.
    status = models.CharField(max_length=20, choices=Status)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"payment #{self.pk}: {self.amount} ({self.status})"


class Review(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        UserProfile, on_delete=models.CASCADE, related_name="reviews_written"
    )
    reviewee = models.ForeignKey(
        UserProfile, on_delete=models.CASCADE, related_name="reviews_received"
    )
    rating = models.PositiveSmallIntegerField()
    comment = models.TextField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.rating}/5 for job {self.job_id}"
