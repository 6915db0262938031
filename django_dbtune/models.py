"""The one table django-dbtune keeps: production mode's findings, from every process."""

from __future__ import annotations

from django.db import models


class ProductionFinding(models.Model):
    """One thing production mode found on one route, counted over every sampled request of
    every process that found it. Never a parameter value, a SQL literal or a request path:
    the route is the URL pattern."""

    key = models.CharField(max_length=64, unique=True)
    """What identifies it (a hash of kind, route, call site and what was found)."""
    kind = models.CharField(max_length=40)
    route = models.CharField(max_length=255)
    message = models.TextField()
    fix = models.TextField(blank=True)
    call_site = models.CharField(max_length=255, blank=True)
    """The line that ran it (for an N+1, the line whose per-row reads triggered the loads)."""
    queryset_site = models.CharField(max_length=255, blank=True)
    """For an N+1 or unused eager load: where the queryset the fix goes on was built (a line,
    or the class Django builds it for)."""
    plan = models.TextField(blank=True)
    """A slow query's plan, as the accesses it makes (plain EXPLAIN; no values)."""
    relations = models.JSONField(default=list, blank=True)
    """The relations an N+1 or unused eager load is on (``["shop.Book.author"]``; one fix
    can cover several); empty for repeated statements and slow queries."""
    seen = models.PositiveBigIntegerField(default=0)
    """Sampled requests that had it."""
    cost = models.FloatField(default=0)
    """What it cost in all: extra queries (N+1, repeated statements) or milliseconds (slow)."""
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        db_table = "dbtune_production_finding"

    def __str__(self) -> str:
        return f"{self.kind} on {self.route}"
