"""Production mode's findings for staff, in the Django admin: the database store's table, or
what the cache store holds."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from django_dbtune.conf import conf
from django_dbtune.management.production_findings import (
    LOGIN_NOTE,
    fix_label,
    reproduce_command,
)
from django_dbtune.models import ProductionFinding
from django_dbtune.production.store import stored


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
        "suggested_fix",
        "reproduce",
        "relations",
        "call_site",
        "queryset_site",
        "plan",
        "seen",
        "cost",
        "first_seen",
        "last_seen",
    )
    exclude = ("key", "fix")

    @admin.display(description="Suggested fix (not tried)")
    def suggested_fix(self, obj: ProductionFinding) -> str:
        """Production never runs the page again with it: ``manage.py dbtune_findings``
        gives the command that proves it locally."""
        return obj.fix

    @admin.display(description="Reproduce and prove it locally")
    def reproduce(self, obj: ProductionFinding) -> str:
        command = reproduce_command(obj)
        return f"{command}  {LOGIN_NOTE}" if command else ""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The table's rows; with the cache store, what the cache holds instead."""
        try:
            settings = conf.PRODUCTION
        except ImproperlyConfigured:  # manage.py check names it; the page shows the table
            settings = None
        if settings is None or settings.STORE != "cache":
            return super().changelist_view(request, extra_context)
        problem, rows = "", []
        try:
            rows = sorted(stored(settings), key=lambda row: -row.cost)
        except Exception as error:  # a page for staff: say what failed, never a 500
            problem = f"The cache could not be read: {error}"
        context = {
            **self.admin_site.each_context(request),
            "rows": [(row, fix_label(row)) for row in rows],
            "problem": problem,
            "cache_alias": settings.CACHE,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "django_dbtune/admin/production_findings.html", context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
