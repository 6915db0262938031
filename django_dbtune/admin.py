"""Production mode's findings for staff, in the Django admin (the database store's table)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from django_dbtune.models import ProductionFinding


@admin.register(ProductionFinding)
class ProductionFindingAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only: the processes write them, ``manage.py dbtune_findings`` ranks them."""

    list_display = ("kind", "route", "seen", "cost", "last_seen", "message")
    list_filter = ("kind",)
    search_fields = ("route", "message", "call_site")
    ordering = ("-cost",)
    readonly_fields = (
        "kind",
        "route",
        "message",
        "fix",
        "call_site",
        "plan",
        "seen",
        "cost",
        "first_seen",
        "last_seen",
    )
    exclude = ("key",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
